-- Command executions and agent interactions are inserted, with their rolling aggregates
-- (0003), by these functions: the write paths call them inside their one statement, so rows and
-- aggregates commit or fail together, and PostgreSQL keeps the plans of the statements below
-- per connection. The request path sends only unnamed statements (no session state, for RDS
-- Proxy and PgBouncer), so without functions the aggregates' upserts were parsed and planned
-- again on every request, which cost more than running them.
--
-- Counted once: only the rows the insert actually inserted are counted (an id already stored,
-- as in a redelivered batch, counts nothing). They are folded per aggregate key (GROUP BY) and
-- each key is upserted once, in key order; with the ids inserted in id order too, two writers
-- of the same ids or keys wait for each other instead of deadlocking. Commands are always
-- written before agents within a statement (see sql.rs), and the four tables below in the same
-- order by every writer (one statement, one plan shape), so all take their locks in one order.

-- Adds freshly inserted metrics of one kind ('command' or 'agent') and one user to the hourly
-- and daily totals and latency buckets (one statement: cheaper than four). The arrays are
-- parallel, one element per metric.
CREATE OR REPLACE FUNCTION {schema}.count_in_aggregates(
    metric_kind text, metric_user text, stamps timestamptz[], names text[], failures boolean[],
    durations double precision[], inputs bigint[], outputs bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH metrics AS (
        SELECT m.stamp, m.name, m.failed, m.ms, coalesce(m.tokens_in, 0) AS tokens_in, coalesce(m.tokens_out, 0) AS tokens_out
        FROM unnest(stamps, names, failures, durations, inputs, outputs) AS m(stamp, name, failed, ms, tokens_in, tokens_out)),
    hourly AS (
        INSERT INTO {schema}.hourly_aggregates AS agg (hour, user_id, kind, name, count, error_count, total_ms, tokens_in, tokens_out)
        SELECT date_trunc('hour', stamp, 'UTC'), metric_user, metric_kind, name, count(*), count(*) FILTER (WHERE failed), sum(ms), sum(tokens_in), sum(tokens_out)
        FROM metrics GROUP BY 1, 4 ORDER BY 1, 4
        ON CONFLICT (hour, user_id, kind, name) DO UPDATE SET count = agg.count + excluded.count,
            error_count = agg.error_count + excluded.error_count, total_ms = agg.total_ms + excluded.total_ms,
            tokens_in = agg.tokens_in + excluded.tokens_in, tokens_out = agg.tokens_out + excluded.tokens_out),
    hourly_latency AS (
        INSERT INTO {schema}.hourly_latency AS lat (hour, user_id, kind, name, bucket, count)
        SELECT date_trunc('hour', stamp, 'UTC'), metric_user, metric_kind, name, {schema}.latency_bucket(ms), count(*)
        FROM metrics GROUP BY 1, 4, 5 ORDER BY 1, 4, 5
        ON CONFLICT (hour, user_id, kind, name, bucket) DO UPDATE SET count = lat.count + excluded.count),
    daily AS (
        INSERT INTO {schema}.daily_aggregates AS agg (day, user_id, kind, name, count, error_count, total_ms, tokens_in, tokens_out)
        SELECT date_trunc('day', stamp, 'UTC'), metric_user, metric_kind, name, count(*), count(*) FILTER (WHERE failed), sum(ms), sum(tokens_in), sum(tokens_out)
        FROM metrics GROUP BY 1, 4 ORDER BY 1, 4
        ON CONFLICT (day, user_id, kind, name) DO UPDATE SET count = agg.count + excluded.count,
            error_count = agg.error_count + excluded.error_count, total_ms = agg.total_ms + excluded.total_ms,
            tokens_in = agg.tokens_in + excluded.tokens_in, tokens_out = agg.tokens_out + excluded.tokens_out)
    INSERT INTO {schema}.daily_latency AS lat (day, user_id, kind, name, bucket, count)
    SELECT date_trunc('day', stamp, 'UTC'), metric_user, metric_kind, name, {schema}.latency_bucket(ms), count(*)
    FROM metrics GROUP BY 1, 4, 5 ORDER BY 1, 4, 5
    ON CONFLICT (day, user_id, kind, name, bucket) DO UPDATE SET count = lat.count + excluded.count;
END
$$;

-- Inserts one user's command executions (parallel arrays; a missing timestamp is `received`),
-- skipping ids already stored, counts the inserted ones in the aggregates, and returns them.
CREATE OR REPLACE FUNCTION {schema}.insert_command_executions(
    organization text, metric_user text, received timestamptz, ids uuid[], names text[], args jsonb[],
    durations double precision[], statuses text[], errors text[], contexts jsonb[], stamps timestamptz[])
RETURNS TABLE (stored_id uuid, stored_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    new_ids uuid[];
    new_created timestamptz[];
    new_stamps timestamptz[];
    new_names text[];
    new_failures boolean[];
    new_durations double precision[];
BEGIN
    WITH inserted AS (
        INSERT INTO {schema}.command_executions AS c (id, organization_id, user_id, command_name, command_args,
            execution_time_ms, status, error_message, context, "timestamp")
        SELECT r.id, organization, metric_user, r.name, r.args, r.ms, r.status, r.error, r.context,
               coalesce(r.stamp, received)
        FROM unnest(ids, names, args, durations, statuses, errors, contexts, stamps)
            AS r(id, name, args, ms, status, error, context, stamp)
        ORDER BY r.id
        ON CONFLICT (id) DO NOTHING
        RETURNING c.id, c.created_at, c."timestamp", c.command_name, c.status <> 'success' AS failed,
            c.execution_time_ms)
    SELECT array_agg(i.id), array_agg(i.created_at), array_agg(i."timestamp"), array_agg(i.command_name),
           array_agg(i.failed), array_agg(i.execution_time_ms)
    INTO new_ids, new_created, new_stamps, new_names, new_failures, new_durations
    FROM inserted AS i;
    IF new_ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM {schema}.count_in_aggregates('command', metric_user, new_stamps, new_names, new_failures,
        new_durations, NULL, NULL);
    RETURN QUERY SELECT * FROM unnest(new_ids, new_created);
END
$$;

-- The same for agent interactions.
CREATE OR REPLACE FUNCTION {schema}.insert_agent_interactions(
    organization text, metric_user text, received timestamptz, ids uuid[], names text[], interaction_types text[],
    inputs bigint[], outputs bigint[], durations double precision[], successes boolean[], metadata_values jsonb[],
    stamps timestamptz[])
RETURNS TABLE (stored_id uuid, stored_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    new_ids uuid[];
    new_created timestamptz[];
    new_stamps timestamptz[];
    new_names text[];
    new_failures boolean[];
    new_durations double precision[];
    new_inputs bigint[];
    new_outputs bigint[];
BEGIN
    WITH inserted AS (
        INSERT INTO {schema}.agent_interactions AS a (id, organization_id, user_id, agent_name, interaction_type,
            input_tokens, output_tokens, processing_time_ms, success, metadata, "timestamp")
        SELECT r.id, organization, metric_user, r.name, r.interaction_type, r.tokens_in, r.tokens_out, r.ms,
               r.success, r.metadata, coalesce(r.stamp, received)
        FROM unnest(ids, names, interaction_types, inputs, outputs, durations, successes, metadata_values, stamps)
            AS r(id, name, interaction_type, tokens_in, tokens_out, ms, success, metadata, stamp)
        ORDER BY r.id
        ON CONFLICT (id) DO NOTHING
        RETURNING a.id, a.created_at, a."timestamp", a.agent_name, NOT a.success AS failed,
            a.processing_time_ms, a.input_tokens, a.output_tokens)
    SELECT array_agg(i.id), array_agg(i.created_at), array_agg(i."timestamp"), array_agg(i.agent_name),
           array_agg(i.failed), array_agg(i.processing_time_ms), array_agg(i.input_tokens), array_agg(i.output_tokens)
    INTO new_ids, new_created, new_stamps, new_names, new_failures, new_durations, new_inputs, new_outputs
    FROM inserted AS i;
    IF new_ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM {schema}.count_in_aggregates('agent', metric_user, new_stamps, new_names, new_failures,
        new_durations, new_inputs, new_outputs);
    RETURN QUERY SELECT * FROM unnest(new_ids, new_created);
END
$$;
