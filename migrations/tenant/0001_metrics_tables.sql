-- The four metric tables of the specification, in one organization's schema.
-- {schema} is replaced by the quoted schema name (e.g. "org_acme") when applied.

CREATE TABLE IF NOT EXISTS {schema}.command_executions (
    id                uuid PRIMARY KEY,
    organization_id   text NOT NULL,
    user_id           text NOT NULL,
    command_name      varchar(100) NOT NULL,
    command_args      jsonb NOT NULL DEFAULT '{}'::jsonb,
    execution_time_ms double precision NOT NULL CHECK (execution_time_ms BETWEEN 0 AND 300000),
    status            text NOT NULL CHECK (status IN ('success', 'error', 'timeout', 'cancelled')),
    error_message     text,
    context           jsonb NOT NULL DEFAULT '{}'::jsonb,
    "timestamp"       timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_cmd_exec_org_user_time
    ON {schema}.command_executions (organization_id, user_id, created_at);

CREATE TABLE IF NOT EXISTS {schema}.agent_interactions (
    id                 uuid PRIMARY KEY,
    organization_id    text NOT NULL,
    user_id            text NOT NULL,
    agent_name         text NOT NULL,
    interaction_type   text NOT NULL CHECK (interaction_type IN ('tool_call', 'delegation', 'response')),
    input_tokens       bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens      bigint NOT NULL CHECK (output_tokens >= 0),
    processing_time_ms double precision NOT NULL CHECK (processing_time_ms >= 0),
    success            boolean NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
    "timestamp"        timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_agent_int_org_agent_time
    ON {schema}.agent_interactions (organization_id, agent_name, created_at);

CREATE TABLE IF NOT EXISTS {schema}.user_sessions (
    id                 uuid PRIMARY KEY,
    organization_id    text NOT NULL,
    user_id            text NOT NULL,
    session_start      timestamptz NOT NULL,
    session_end        timestamptz,
    total_duration_ms  bigint CHECK (total_duration_ms >= 0),
    commands_executed  integer NOT NULL DEFAULT 0 CHECK (commands_executed >= 0),
    agents_used        text[] NOT NULL DEFAULT '{}',
    productivity_score double precision,
    context            jsonb NOT NULL DEFAULT '{}'::jsonb,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'abandoned')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_sessions_org_user_active
    ON {schema}.user_sessions (organization_id, user_id, status);
CREATE INDEX IF NOT EXISTS idx_sessions_active
    ON {schema}.user_sessions (organization_id, user_id) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS {schema}.productivity_metrics (
    id              uuid PRIMARY KEY,
    organization_id text NOT NULL,
    user_id         text NOT NULL,
    metric_type     text NOT NULL CHECK (metric_type IN ('completion_rate', 'error_rate', 'efficiency_score')),
    value           double precision NOT NULL,
    unit            text NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL CHECK (period_end > period_start),
    dimensions      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_productivity_org_type_period
    ON {schema}.productivity_metrics (organization_id, metric_type, period_start);
