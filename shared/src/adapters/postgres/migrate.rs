//! The project's migrator. `migrations/public` is applied once per database (by the `migrate`
//! step operators run after a deploy, the local stack at start-up and the tests);
//! `migrations/tenant` is applied to each organization's schema, when the organization is first
//! seen and again whenever a newer tenant migration exists.
//!
//! Both run under PostgreSQL advisory locks, inside transactions, so any number of Lambda
//! instances may race: one applies, the others wait and find the work done.

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use crate::domain::ids::OrgId;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Advisory-lock namespace of this service (first key of the two-key form).
pub const LOCK_NAMESPACE: i32 = 0x6d65_7472; // "metr"
/// Second key for the public-schema migration lock; tenants use `hashtext(organization_id)`.
const PUBLIC_LOCK: i32 = 0;

/// The newest tenant migration: a tenant at this version needs nothing.
pub fn latest_tenant_version() -> i32 {
    TENANT.last().map_or(0, |m| m.version)
}

/// Quotes a PostgreSQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies pending public migrations; returns how many were applied.
pub async fn migrate_public(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_NAMESPACE, &PUBLIC_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS public.schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM public.schema_migrations", &[])
        .await?
        .get(0);
    let mut applied = 0;
    for migration in PUBLIC.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO public.schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}

/// The tenant's schema version, or `None` when the organization is not registered yet.
/// One round trip, no prepared statement.
pub async fn tenant_version(client: &Client, org: &OrgId) -> Result<Option<i32>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT schema_version FROM public.tenants WHERE organization_id = $1",
            &[(&org.as_str(), Type::TEXT)],
        )
        .await?;
    Ok(rows.first().map(|row| row.get(0)))
}

/// Takes the organization's lock until `tx` ends: provisioning, dropping and creating its
/// functions wait for one another.
async fn lock_tenant(tx: &Transaction<'_>, org: &OrgId) -> Result<(), tokio_postgres::Error> {
    tx.query_typed(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[(&LOCK_NAMESPACE, Type::INT4), (&org.as_str(), Type::TEXT)],
    )
    .await
    .map(drop)
}

/// Creates a function of the organization's schema from `definition` unless `signature` (its
/// name and parameter types) names one already, under the tenant's migration lock: of the
/// containers that find it missing at once, the first creates it and the others find it made.
pub async fn create_tenant_function(
    client: &mut Client,
    org: &OrgId,
    signature: &str,
    definition: &str,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    lock_tenant(&tx, org).await?;
    let missing: bool = tx
        .query_typed("SELECT to_regprocedure($1) IS NULL", &[(&signature, Type::TEXT)])
        .await?[0]
        .get(0);
    if missing {
        tx.batch_execute(definition).await?;
    }
    tx.commit().await
}

/// Registers the organization and brings its schema to the latest tenant migration.
/// Safe under concurrency: the first caller does the work, the others wait for it and find
/// nothing left to do. Returns whether anything was applied.
pub async fn provision_tenant(client: &mut Client, org: &OrgId) -> Result<bool, tokio_postgres::Error> {
    provision_tenant_with(client, org, TENANT).await
}

/// [`provision_tenant`] with a given list of tenant migrations (tests add one).
pub async fn provision_tenant_with(
    client: &mut Client,
    org: &OrgId,
    migrations: &[Migration],
) -> Result<bool, tokio_postgres::Error> {
    let latest = migrations.last().map_or(0, |m| m.version);
    if tenant_version(client, org).await? >= Some(latest) {
        return Ok(false);
    }
    let schema = quote_ident(&org.schema_name());
    let tx = client.transaction().await?;
    lock_tenant(&tx, org).await?;
    let current: Option<i32> = tx
        .query_opt(
            "SELECT schema_version FROM public.tenants WHERE organization_id = $1",
            &[&org.as_str()],
        )
        .await?
        .map(|row| row.get(0));
    let current = match current {
        Some(version) => version,
        None => {
            tx.execute(
                "INSERT INTO public.tenants (organization_id, schema_name) VALUES ($1, $2)",
                &[&org.as_str(), &org.schema_name()],
            )
            .await?;
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
            0
        }
    };
    if current >= latest {
        return Ok(false);
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        tx.batch_execute(&migration.sql.replace("{schema}", &schema)).await?;
    }
    tx.execute(
        "UPDATE public.tenants SET schema_version = $2, updated_at = now() WHERE organization_id = $1",
        &[&org.as_str(), &latest],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Deletes an organization's schema (`DROP SCHEMA … CASCADE`) and its registry row, in one
/// transaction under the tenant's provisioning lock (a concurrent first write waits, then
/// provisions it anew). Returns whether the organization was registered.
pub async fn drop_tenant(client: &mut Client, org: &OrgId) -> Result<bool, tokio_postgres::Error> {
    let schema = quote_ident(&org.schema_name());
    let tx = client.transaction().await?;
    lock_tenant(&tx, org).await?;
    tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    let removed = tx
        .execute(
            "DELETE FROM public.tenants WHERE organization_id = $1",
            &[&org.as_str()],
        )
        .await?;
    tx.commit().await?;
    Ok(removed > 0)
}

/// What a migration run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    pub public_migrations_applied: usize,
    pub tenants_upgraded: usize,
    pub tenant_schema_version: i32,
}

/// The whole migration: the public schema, then every existing tenant. What the `migrate`
/// function runs after a deploy, and what the local stack and the tests run.
pub async fn migrate_database(client: &mut Client) -> Result<MigrationReport, tokio_postgres::Error> {
    Ok(MigrationReport {
        public_migrations_applied: migrate_public(client).await?,
        tenants_upgraded: migrate_all_tenants(client).await?,
        tenant_schema_version: latest_tenant_version(),
    })
}

/// Brings every registered tenant to the latest tenant migration; returns how many changed.
pub async fn migrate_all_tenants(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    migrate_all_tenants_with(client, TENANT).await
}

/// [`migrate_all_tenants`] with a given list of tenant migrations (tests add one).
pub async fn migrate_all_tenants_with(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<usize, tokio_postgres::Error> {
    let latest = migrations.last().map_or(0, |m| m.version);
    let rows = client
        .query(
            "SELECT organization_id FROM public.tenants WHERE schema_version < $1 ORDER BY organization_id",
            &[&latest],
        )
        .await?;
    let mut changed = 0;
    for row in rows {
        let raw: String = row.get(0);
        // The registry's CHECK constraint guarantees the shape; parse anyway before building SQL.
        let Ok(org) = OrgId::parse(&raw) else {
            tracing::error!(organization_id = raw, "skipping tenant with an invalid id");
            continue;
        };
        if provision_tenant_with(client, &org, migrations).await? {
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_embedded_in_order() {
        assert!(!PUBLIC.is_empty() && !TENANT.is_empty());
        for (i, m) in PUBLIC.iter().chain(TENANT.iter()).enumerate() {
            assert!(m.version >= 1, "{i}");
        }
        assert!(TENANT.iter().all(|m| m.sql.contains("{schema}")));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("org_acme"), "\"org_acme\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
