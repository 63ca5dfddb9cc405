use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use deadpool_postgres::Object;
use tokio_postgres::types::{ToSql, Type};

use super::migrate::{provision_tenant, quote_ident};
use super::{Database, with_client};
use crate::ids::{Caller, OrgId};
use crate::metrics::CommandExecution;
use crate::store::{MetricStore, StoreError, Stored};

/// The request-path statements of one tenant, with its quoted schema name filled in once.
struct TenantSql {
    command_execution: InsertSql,
}

/// An idempotent insert, and the read that finds the stored row when the id existed.
struct InsertSql {
    insert: String,
    select_existing: String,
}

impl TenantSql {
    fn new(org: &OrgId) -> Self {
        let schema = quote_ident(&org.schema_name());
        Self {
            command_execution: InsertSql::new(
                &format!("{schema}.command_executions"),
                "id, organization_id, user_id, command_name, command_args, execution_time_ms, status, \
                 error_message, context, \"timestamp\"",
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now())",
            ),
        }
    }
}

impl InsertSql {
    /// The insert ignores an existing id and returns the stored row's id and creation time
    /// either way, in one statement; `$1` must be the id.
    fn new(table: &str, columns: &str, values: &str) -> Self {
        let select_existing = format!("SELECT id, created_at FROM {table} WHERE id = $1");
        Self {
            insert: format!(
                "WITH inserted AS ( \
                    INSERT INTO {table} ({columns}) VALUES ({values}) \
                    ON CONFLICT (id) DO NOTHING RETURNING id, created_at) \
                 SELECT id, created_at FROM inserted \
                 UNION ALL \
                 {select_existing} AND NOT EXISTS (SELECT 1 FROM inserted)"
            ),
            select_existing,
        }
    }
}

/// Metrics in PostgreSQL, one schema per organization, provisioned on first use.
pub struct PgStore {
    db: Database,
    /// Organizations whose schema is known to be current in this container.
    tenants: RwLock<HashMap<OrgId, Arc<TenantSql>>>,
}

impl PgStore {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The tenant's statements, provisioning its schema first if this container has not seen it.
    async fn tenant(
        &self,
        client: &mut Object,
        org: &OrgId,
    ) -> Result<Arc<TenantSql>, tokio_postgres::Error> {
        if let Some(sql) = self.cached(org) {
            return Ok(sql);
        }
        if provision_tenant(client, org).await? {
            tracing::info!(org = %org, "provisioned tenant schema");
        }
        let sql = Arc::new(TenantSql::new(org));
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(org.clone(), sql.clone());
        Ok(sql)
    }

    fn cached(&self, org: &OrgId) -> Option<Arc<TenantSql>> {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(org)
            .cloned()
    }

    /// Runs one of the tenant's idempotent inserts; `params[0]` must be the id.
    async fn insert(
        &self,
        org: &OrgId,
        statement: impl Fn(&TenantSql) -> &InsertSql,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Stored, StoreError> {
        let rows = with_client!(&self.db, |client| {
            self.insert_on(&mut client, org, &statement, params).await
        })?;
        rows.first()
            .map(|row| Stored {
                id: row.get(0),
                created_at: row.get(1),
            })
            .ok_or_else(|| StoreError::Internal("insert returned no row".into()))
    }

    async fn insert_on(
        &self,
        client: &mut Object,
        org: &OrgId,
        statement: &impl Fn(&TenantSql) -> &InsertSql,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let tenant = self.tenant(client, org).await?;
        let sql = statement(&tenant);
        let rows = client.query_typed(&sql.insert, params).await?;
        if !rows.is_empty() {
            return Ok(rows);
        }
        // A concurrent insert of the same id committed after our snapshot: read it now.
        client.query_typed(&sql.select_existing, &params[..1]).await
    }
}

#[async_trait]
impl MetricStore for PgStore {
    async fn insert_command_execution(
        &self,
        caller: &Caller,
        m: &CommandExecution,
    ) -> Result<Stored, StoreError> {
        let id =
            m.id.ok_or_else(|| StoreError::Internal("metric without id".into()))?;
        let status = crate::validation::Choice::as_str(m.status);
        self.insert(
            &caller.org,
            |sql| &sql.command_execution,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&m.command_name, Type::TEXT),
                (&m.command_args, Type::JSONB),
                (&m.execution_time_ms, Type::FLOAT8),
                (&status, Type::TEXT),
                (&m.error_message, Type::TEXT),
                (&m.context, Type::JSONB),
                (&m.timestamp, Type::TIMESTAMPTZ),
            ],
        )
        .await
    }
}
