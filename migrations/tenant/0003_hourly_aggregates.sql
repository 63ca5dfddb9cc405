-- Rolling aggregates, kept up to date by the write paths in the statement that inserts the
-- metric (only for rows actually inserted, so redeliveries count once): per UTC hour, user, kind
-- ('command' or 'agent') and name. Reads (GET /api/v1/metrics/summary) never scan raw rows.
--
-- Latency histogram: 124 buckets, four per doubling, from 0.1 ms to past 24 hours. Bucket 1 holds values under
-- 0.1 ms; bucket k >= 2 holds [2^((k-2)/4), 2^((k-1)/4)) tenths of a millisecond (the last one
-- everything above). shared/src/summary.rs reads p95 from it as the upper edge of its bucket.

CREATE OR REPLACE FUNCTION {schema}.latency_bucket(ms double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN ms * 10 < 1 THEN 1
                ELSE LEAST(124, 2 + floor(4 * ln(ms * 10) / ln(2))::integer) END;

CREATE OR REPLACE FUNCTION {schema}.latency_histogram(ms double precision) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(SELECT (i = {schema}.latency_bucket(ms))::integer::bigint FROM generate_series(1, 124) AS i);

CREATE OR REPLACE FUNCTION {schema}.histogram_add(a bigint[], b bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a
                ELSE ARRAY(SELECT x + y FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i) ORDER BY i) END;

CREATE OR REPLACE AGGREGATE {schema}.histogram_sum(bigint[]) (
    SFUNC = {schema}.histogram_add,
    STYPE = bigint[]
);

CREATE TABLE IF NOT EXISTS {schema}.hourly_aggregates (
    hour        timestamptz NOT NULL,
    user_id     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('command', 'agent')),
    name        text NOT NULL,
    count       bigint NOT NULL,
    error_count bigint NOT NULL,
    total_ms    double precision NOT NULL,
    tokens_in   bigint NOT NULL,
    tokens_out  bigint NOT NULL,
    histogram   bigint[] NOT NULL,
    PRIMARY KEY (hour, user_id, kind, name)
);

-- Metrics stored before this migration (it runs under the tenant's provisioning lock).
INSERT INTO {schema}.hourly_aggregates
SELECT date_trunc('hour', "timestamp", 'UTC'), user_id, 'command', command_name, count(*),
       count(*) FILTER (WHERE status <> 'success'), sum(execution_time_ms), 0, 0,
       {schema}.histogram_sum({schema}.latency_histogram(execution_time_ms))
FROM {schema}.command_executions GROUP BY 1, 2, 4
ON CONFLICT DO NOTHING;

INSERT INTO {schema}.hourly_aggregates
SELECT date_trunc('hour', "timestamp", 'UTC'), user_id, 'agent', agent_name, count(*),
       count(*) FILTER (WHERE NOT success), sum(processing_time_ms), sum(input_tokens), sum(output_tokens),
       {schema}.histogram_sum({schema}.latency_histogram(processing_time_ms))
FROM {schema}.agent_interactions GROUP BY 1, 2, 4
ON CONFLICT DO NOTHING;
