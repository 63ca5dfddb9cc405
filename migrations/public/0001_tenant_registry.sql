-- Registry of tenants: one row per organization, naming its schema and the last tenant
-- migration applied to it. Rows are created by the service the first time an organization is
-- seen (see shared/src/adapters/postgres/migrate.rs), under an advisory lock.
CREATE TABLE IF NOT EXISTS public.tenants (
    organization_id text PRIMARY KEY CHECK (organization_id ~ '^[A-Za-z0-9_-]{1,48}$'),
    schema_name     text NOT NULL UNIQUE,
    schema_version  integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
