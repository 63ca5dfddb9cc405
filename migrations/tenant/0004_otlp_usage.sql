-- Claude Code's own OpenTelemetry export (POST /otlp/v1/metrics and /otlp/v1/logs): the data
-- points and events kept, each once per deterministic id (an exporter's retry stores nothing
-- twice), the last point of each cumulative series (so cumulative totals become deltas), and
-- the rolling usage aggregates per UTC hour and day, user and model, kept up to date by the
-- statement that stores the points and events (only rows actually inserted are counted).
-- shared/src/domain/usage.rs names the usage columns (UsageField).

CREATE TABLE IF NOT EXISTS {schema}.otlp_points (
    id                uuid PRIMARY KEY,
    organization_id   text NOT NULL,
    user_id           text NOT NULL,
    series            uuid NOT NULL,
    metric            text NOT NULL,
    session_id        uuid,
    claude_session_id text,
    model             text NOT NULL,
    point_type        text NOT NULL,
    usage_field       text,
    cumulative        boolean NOT NULL,
    start_time        timestamptz,
    "time"            timestamptz NOT NULL,
    -- As sent (a running total for cumulative points), and what it added.
    value             double precision NOT NULL,
    delta             double precision NOT NULL,
    labels            jsonb NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS otlp_points_user_time ON {schema}.otlp_points (user_id, "time");
CREATE INDEX IF NOT EXISTS otlp_points_session ON {schema}.otlp_points (session_id);

CREATE TABLE IF NOT EXISTS {schema}.otlp_series (
    series     uuid PRIMARY KEY,
    start_ns   bigint NOT NULL,
    last_ns    bigint NOT NULL,
    last_value double precision NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.otlp_events (
    id                uuid PRIMARY KEY,
    organization_id   text NOT NULL,
    user_id           text NOT NULL,
    event_name        text NOT NULL,
    session_id        uuid,
    claude_session_id text,
    prompt_id         text,
    sequence          bigint,
    model             text NOT NULL,
    usage_field       text,
    "timestamp"       timestamptz NOT NULL,
    attributes        jsonb NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS otlp_events_user_time ON {schema}.otlp_events (user_id, "timestamp");
CREATE INDEX IF NOT EXISTS otlp_events_session ON {schema}.otlp_events (session_id);

-- Figures that are not per model (lines, commits, active time) have model ''.
CREATE TABLE IF NOT EXISTS {schema}.hourly_usage (
    hour                  timestamptz NOT NULL,
    user_id               text NOT NULL,
    model                 text NOT NULL,
    input_tokens          double precision NOT NULL DEFAULT 0,
    output_tokens         double precision NOT NULL DEFAULT 0,
    cache_read_tokens     double precision NOT NULL DEFAULT 0,
    cache_creation_tokens double precision NOT NULL DEFAULT 0,
    cost_usd              double precision NOT NULL DEFAULT 0,
    lines_added           double precision NOT NULL DEFAULT 0,
    lines_removed         double precision NOT NULL DEFAULT 0,
    commits               double precision NOT NULL DEFAULT 0,
    pull_requests         double precision NOT NULL DEFAULT 0,
    active_time_s         double precision NOT NULL DEFAULT 0,
    api_requests          double precision NOT NULL DEFAULT 0,
    api_errors            double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, user_id, model)
);
CREATE TABLE IF NOT EXISTS {schema}.daily_usage (LIKE {schema}.hourly_usage INCLUDING ALL);
ALTER TABLE {schema}.daily_usage RENAME COLUMN hour TO day;
