-- One command execution or agent interaction at a time, as the single routes send them: what
-- insert_<kind>s (0007) does for a one-element batch, in scalar statements. The grouped upserts
-- over arrays cost a single metric about 0.18 ms more at p95 than these (pgbench, durable server,
-- one client, unnamed statements, interleaved: 1.05 against 0.87 ms, p50 0.72 against 0.65; the
-- plain insert 0.60), and a single metric is the most common request.
--
-- The aggregates get exactly what count_in_aggregates (0007) gives them for one metric
-- (tests/tests/it/summary.rs compares each path's aggregates with the raw rows), and in the
-- order in which its statement takes the rows' locks: daily latency, daily totals, hourly
-- latency, hourly totals (its main statement first, then its WITH clauses from the last). A
-- single metric and a batch of the same user then never wait for each other's rows in opposite
-- orders.

-- Adds one freshly inserted metric of one kind ('command' or 'agent') to the daily and hourly
-- latency buckets and totals.
CREATE OR REPLACE FUNCTION {schema}.count_one_in_aggregates(
    metric_kind text, metric_user text, metric_at timestamptz, metric_name text, metric_failed boolean,
    metric_ms double precision, metric_tokens_in bigint, metric_tokens_out bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    metric_hour timestamptz := date_trunc('hour', metric_at, 'UTC');
    metric_day timestamptz := date_trunc('day', metric_at, 'UTC');
    metric_bucket smallint := {schema}.latency_bucket(metric_ms);
    metric_errors bigint := CASE WHEN metric_failed THEN 1 ELSE 0 END;
BEGIN
    INSERT INTO {schema}.daily_latency AS lat (day, user_id, kind, name, bucket, count)
    VALUES (metric_day, metric_user, metric_kind, metric_name, metric_bucket, 1)
    ON CONFLICT (day, user_id, kind, name, bucket) DO UPDATE SET count = lat.count + excluded.count;
    INSERT INTO {schema}.daily_aggregates AS agg (day, user_id, kind, name, count, error_count, total_ms, tokens_in, tokens_out)
    VALUES (metric_day, metric_user, metric_kind, metric_name, 1, metric_errors, metric_ms,
            coalesce(metric_tokens_in, 0), coalesce(metric_tokens_out, 0))
    ON CONFLICT (day, user_id, kind, name) DO UPDATE SET count = agg.count + excluded.count,
        error_count = agg.error_count + excluded.error_count, total_ms = agg.total_ms + excluded.total_ms,
        tokens_in = agg.tokens_in + excluded.tokens_in, tokens_out = agg.tokens_out + excluded.tokens_out;
    INSERT INTO {schema}.hourly_latency AS lat (hour, user_id, kind, name, bucket, count)
    VALUES (metric_hour, metric_user, metric_kind, metric_name, metric_bucket, 1)
    ON CONFLICT (hour, user_id, kind, name, bucket) DO UPDATE SET count = lat.count + excluded.count;
    INSERT INTO {schema}.hourly_aggregates AS agg (hour, user_id, kind, name, count, error_count, total_ms, tokens_in, tokens_out)
    VALUES (metric_hour, metric_user, metric_kind, metric_name, 1, metric_errors, metric_ms,
            coalesce(metric_tokens_in, 0), coalesce(metric_tokens_out, 0))
    ON CONFLICT (hour, user_id, kind, name) DO UPDATE SET count = agg.count + excluded.count,
        error_count = agg.error_count + excluded.error_count, total_ms = agg.total_ms + excluded.total_ms,
        tokens_in = agg.tokens_in + excluded.tokens_in, tokens_out = agg.tokens_out + excluded.tokens_out;
END
$$;

-- Inserts one command execution (a missing timestamp is `received`) unless its id is stored
-- already, counts it in the aggregates if it was inserted, and returns it (no row if it was not).
CREATE OR REPLACE FUNCTION {schema}.insert_command_execution(
    organization text, metric_user text, received timestamptz, new_id uuid, new_name text, new_args jsonb,
    new_ms double precision, new_status text, new_error text, new_context jsonb, new_at timestamptz)
RETURNS TABLE (stored_id uuid, stored_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    created timestamptz;
    stamped timestamptz;
BEGIN
    INSERT INTO {schema}.command_executions AS c (id, organization_id, user_id, command_name, command_args,
        execution_time_ms, status, error_message, context, "timestamp")
    VALUES (new_id, organization, metric_user, new_name, new_args, new_ms, new_status, new_error, new_context,
            coalesce(new_at, received))
    ON CONFLICT (id) DO NOTHING
    RETURNING c.created_at, c."timestamp" INTO created, stamped;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM {schema}.count_one_in_aggregates('command', metric_user, stamped, new_name, new_status <> 'success',
        new_ms, NULL, NULL);
    stored_id := new_id;
    stored_at := created;
    RETURN NEXT;
END
$$;

-- The same for one agent interaction.
CREATE OR REPLACE FUNCTION {schema}.insert_agent_interaction(
    organization text, metric_user text, received timestamptz, new_id uuid, new_name text, new_type text,
    new_tokens_in bigint, new_tokens_out bigint, new_ms double precision, new_success boolean, new_metadata jsonb,
    new_at timestamptz)
RETURNS TABLE (stored_id uuid, stored_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    created timestamptz;
    stamped timestamptz;
BEGIN
    INSERT INTO {schema}.agent_interactions AS a (id, organization_id, user_id, agent_name, interaction_type,
        input_tokens, output_tokens, processing_time_ms, success, metadata, "timestamp")
    VALUES (new_id, organization, metric_user, new_name, new_type, new_tokens_in, new_tokens_out, new_ms,
            new_success, new_metadata, coalesce(new_at, received))
    ON CONFLICT (id) DO NOTHING
    RETURNING a.created_at, a."timestamp" INTO created, stamped;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM {schema}.count_one_in_aggregates('agent', metric_user, stamped, new_name, NOT new_success, new_ms,
        new_tokens_in, new_tokens_out);
    stored_id := new_id;
    stored_at := created;
    RETURN NEXT;
END
$$;
