-- Alerts (functions/alerts): each run stores the organization's current counters (the current
-- and previous hours of hourly_aggregates and hourly_latency, summed) and diffs them against the
-- snapshot of about five minutes before; snapshots older than a few windows are deleted by the
-- same run. One row per condition holds whether it fires and whether the webhook has been told
-- of its last change, so a change is never lost when a delivery fails (the next run retries it).

CREATE TABLE IF NOT EXISTS {schema}.alert_snapshots (
    taken_at timestamptz PRIMARY KEY,
    counters jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.alert_state (
    condition       text PRIMARY KEY CHECK (condition IN ('high_error_rate', 'slow_response')),
    firing          boolean NOT NULL DEFAULT false,
    -- false: a message for the last change is owed to the webhook.
    delivered       boolean NOT NULL DEFAULT true,
    changed_at      timestamptz,
    -- The reading that caused the last change: observed, threshold, samples, window_seconds.
    reading         jsonb,
    -- A run sending the owed message holds it until then, so overlapping runs send it once.
    sending_until   timestamptz,
    last_sent_at    timestamptz,
    failed_attempts integer NOT NULL DEFAULT 0,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
