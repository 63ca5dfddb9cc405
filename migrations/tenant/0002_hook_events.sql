-- Claude Code hook events as received (redacted and truncated), once per deterministic id.
-- The metrics derived from them live in the four metric tables; these rows keep every event,
-- including events this version does not interpret, and time the Pre/Post pairs.

CREATE TABLE IF NOT EXISTS {schema}.hook_events (
    id              uuid PRIMARY KEY,
    organization_id text NOT NULL,
    user_id         text NOT NULL,
    session_id      text NOT NULL,
    event_name      text NOT NULL,
    correlation_id  text,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS idx_hook_events_session
    ON {schema}.hook_events (session_id, event_name);
