-- Retention (functions/retention) deletes each kind's rows older than the organization's
-- retention in small chunks: each chunk finds its rows through an index on the time column the
-- retention is measured by, so a chunk reads only the rows it deletes, however large the table.
-- The aggregate tables need none (their primary keys start with the hour or day).
--
-- A plain CREATE INDEX blocks writes to its table while it builds. For a tenant with many rows,
-- build them beforehand with CREATE INDEX CONCURRENTLY under these names; IF NOT EXISTS then
-- skips them here (see docs/operations.md, "Retention").

CREATE INDEX IF NOT EXISTS idx_cmd_exec_timestamp ON {schema}.command_executions ("timestamp");
CREATE INDEX IF NOT EXISTS idx_agent_int_timestamp ON {schema}.agent_interactions ("timestamp");
CREATE INDEX IF NOT EXISTS idx_sessions_start ON {schema}.user_sessions (session_start);
CREATE INDEX IF NOT EXISTS idx_productivity_period_end ON {schema}.productivity_metrics (period_end);
CREATE INDEX IF NOT EXISTS idx_hook_events_received ON {schema}.hook_events (received_at);
CREATE INDEX IF NOT EXISTS otlp_points_time ON {schema}.otlp_points ("time");
CREATE INDEX IF NOT EXISTS otlp_events_time ON {schema}.otlp_events ("timestamp");
CREATE INDEX IF NOT EXISTS otlp_series_last ON {schema}.otlp_series (last_ns);
