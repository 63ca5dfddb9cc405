-- Rolling aggregates, kept up to date by the write paths in the statement that inserts the
-- metric (only for rows actually inserted, so redeliveries count once): per UTC hour and per UTC
-- day, user, kind ('command' or 'agent') and name. Reads (GET /api/v1/metrics/summary) never scan
-- raw rows. Only native arithmetic on the write path: the latency histogram is a row per bucket.
--
-- Latency buckets: four per doubling from 0.1 ms. Bucket 1 holds values under 0.1 ms; bucket
-- k >= 2 holds [2^((k-2)/4), 2^((k-1)/4)) tenths of a millisecond; bucket 124 everything above.
-- shared/src/domain/summary.rs mirrors this and reads p95 as the upper edge of its bucket.

CREATE OR REPLACE FUNCTION {schema}.latency_bucket(ms double precision) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN ms * 10 < 1 THEN 1
                ELSE LEAST(124, 2 + floor(4 * ln(ms * 10) / ln(2))::integer) END;

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
    PRIMARY KEY (hour, user_id, kind, name)
);

CREATE TABLE IF NOT EXISTS {schema}.hourly_latency (
    hour    timestamptz NOT NULL,
    user_id text NOT NULL,
    kind    text NOT NULL CHECK (kind IN ('command', 'agent')),
    name    text NOT NULL,
    bucket  smallint NOT NULL,
    count   bigint NOT NULL,
    PRIMARY KEY (hour, user_id, kind, name, bucket)
);

-- The same per UTC day, so summaries over long spans read a row per day, not per hour.
CREATE TABLE IF NOT EXISTS {schema}.daily_aggregates (LIKE {schema}.hourly_aggregates INCLUDING ALL);
ALTER TABLE {schema}.daily_aggregates RENAME COLUMN hour TO day;
CREATE TABLE IF NOT EXISTS {schema}.daily_latency (LIKE {schema}.hourly_latency INCLUDING ALL);
ALTER TABLE {schema}.daily_latency RENAME COLUMN hour TO day;

-- Metrics stored before this migration (it runs under the tenant's provisioning lock).
CREATE TEMPORARY VIEW existing_metrics AS
    SELECT "timestamp", user_id, 'command' AS kind, command_name AS name, status <> 'success' AS failed,
           execution_time_ms AS ms, 0::bigint AS tokens_in, 0::bigint AS tokens_out
    FROM {schema}.command_executions
    UNION ALL
    SELECT "timestamp", user_id, 'agent', agent_name, NOT success, processing_time_ms, input_tokens, output_tokens
    FROM {schema}.agent_interactions;

INSERT INTO {schema}.hourly_aggregates
SELECT date_trunc('hour', "timestamp", 'UTC'), user_id, kind, name, count(*), count(*) FILTER (WHERE failed),
       sum(ms), sum(tokens_in), sum(tokens_out)
FROM existing_metrics GROUP BY 1, 2, 3, 4;
INSERT INTO {schema}.daily_aggregates
SELECT date_trunc('day', "timestamp", 'UTC'), user_id, kind, name, count(*), count(*) FILTER (WHERE failed),
       sum(ms), sum(tokens_in), sum(tokens_out)
FROM existing_metrics GROUP BY 1, 2, 3, 4;
INSERT INTO {schema}.hourly_latency
SELECT date_trunc('hour', "timestamp", 'UTC'), user_id, kind, name, {schema}.latency_bucket(ms), count(*)
FROM existing_metrics GROUP BY 1, 2, 3, 4, 5;
INSERT INTO {schema}.daily_latency
SELECT date_trunc('day', "timestamp", 'UTC'), user_id, kind, name, {schema}.latency_bucket(ms), count(*)
FROM existing_metrics GROUP BY 1, 2, 3, 4, 5;

DROP VIEW existing_metrics;
