use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Object;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::migrate::{provision_tenant, quote_ident};
use super::{Database, with_client};
use crate::ids::{Caller, OrgId};
use crate::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::sessions::{
    MAX_AGENTS, SessionAction, SessionActivity, SessionChange, SessionEnd, SessionRecord,
    SessionStart, SessionStatus,
};
use crate::store::{MetricStore, StoreError, Stored};
use crate::validation::Choice;

/// The request-path statements of one tenant, with its quoted schema name filled in once.
struct TenantSql {
    command_execution: InsertSql,
    agent_interaction: InsertSql,
    productivity_metric: InsertSql,
    session_start: InsertSql,
    session_update: String,
    session_end: String,
    abandon_idle: String,
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
            agent_interaction: InsertSql::new(
                &format!("{schema}.agent_interactions"),
                "id, organization_id, user_id, agent_name, interaction_type, input_tokens, output_tokens, \
                 processing_time_ms, success, metadata, \"timestamp\"",
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now())",
            ),
            productivity_metric: InsertSql::new(
                &format!("{schema}.productivity_metrics"),
                "id, organization_id, user_id, metric_type, value, unit, period_start, period_end, dimensions",
                "$1, $2, $3, $4, $5, $6, $7, $8, $9",
            ),
            session_start: InsertSql::new(
                &format!("{schema}.user_sessions"),
                "id, organization_id, user_id, session_start, context",
                "$1, $2, $3, coalesce($4, now()), $5",
            ),
            session_update: session_change(&schema, SessionAction::Update, ""),
            session_end: session_change(
                &schema,
                SessionAction::End,
                ", status = 'completed', session_end = now(), \
                 total_duration_ms = GREATEST(0, floor(extract(epoch FROM now() - session_start) * 1000))::bigint, \
                 productivity_score = coalesce($6, productivity_score)",
            ),
            abandon_idle: format!(
                "UPDATE {schema}.user_sessions SET status = 'abandoned', session_end = updated_at, \
                 total_duration_ms = GREATEST(0, floor(extract(epoch FROM updated_at - session_start) * 1000))::bigint, \
                 updated_at = now() \
                 WHERE status = 'active' AND updated_at < now() - make_interval(secs => $1) RETURNING id"
            ),
        }
    }
}

/// An idempotent insert, and the read that finds the stored row when the id existed.
struct InsertSql {
    insert: String,
    select_existing: String,
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

const SESSION_COLUMNS: &str = "id, status, session_start, session_end, total_duration_ms, commands_executed, \
                               agents_used, productivity_score, context, updated_at";

/// One statement that applies `action` to session `$1` of user `$2` when its status allows,
/// merging the activity (`$3` commands, `$4` agents, `$5` context) and `extra_set`, and says
/// what happened: `changed` with the record, the session's status when refused, `other_user`,
/// or no row for an unknown session.
fn session_change(schema: &str, action: SessionAction, extra_set: &str) -> String {
    let table = format!("{schema}.user_sessions");
    let allowed = [
        SessionStatus::Active,
        SessionStatus::Completed,
        SessionStatus::Abandoned,
    ]
    .into_iter()
    .filter(|status| action.allowed_from(*status))
    .map(|status| format!("'{}'", status.as_str()))
    .collect::<Vec<_>>()
    .join(", ");
    format!(
        "WITH target AS (SELECT user_id, status FROM {table} WHERE id = $1), \
         changed AS ( \
            UPDATE {table} SET \
                commands_executed = GREATEST(commands_executed, coalesce($3, commands_executed)), \
                agents_used = (SELECT coalesce(array_agg(agent ORDER BY first_seen), '{{}}') FROM ( \
                    SELECT agent, min(n) AS first_seen \
                    FROM unnest(agents_used || coalesce($4, '{{}}'::text[])) WITH ORDINALITY AS u(agent, n) \
                    GROUP BY agent ORDER BY first_seen LIMIT {MAX_AGENTS}) AS merged), \
                context = context || coalesce($5, '{{}}'::jsonb), \
                updated_at = now(){extra_set} \
            WHERE id = $1 AND user_id = $2 AND status IN ({allowed}) \
            RETURNING {SESSION_COLUMNS}) \
         SELECT 'changed', to_jsonb(changed) FROM changed \
         UNION ALL \
         SELECT CASE WHEN target.user_id <> $2 THEN 'other_user' ELSE target.status END, NULL::jsonb \
         FROM target WHERE NOT EXISTS (SELECT 1 FROM changed)"
    )
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

    /// Runs a statement built by [`session_change`] and interprets its answer.
    async fn change_session(
        &self,
        org: &OrgId,
        statement: impl Fn(&TenantSql) -> &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<SessionChange, StoreError> {
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, org).await {
                Ok(tenant) => client.query_typed(statement(&tenant), params).await,
                Err(err) => Err(err),
            }
        })?;
        let Some(row) = rows.first() else {
            return Ok(SessionChange::NotFound);
        };
        let outcome: String = row.get(0);
        Ok(match outcome.as_str() {
            "changed" => {
                let record: serde_json::Value = row.get(1);
                SessionChange::Changed(
                    serde_json::from_value::<SessionRecord>(record)
                        .map_err(|e| StoreError::Internal(format!("session record: {e}")))?,
                )
            }
            "other_user" => SessionChange::OtherUser,
            status => SessionChange::Refused(
                serde_json::from_value(serde_json::Value::String(status.to_owned()))
                    .map_err(|e| StoreError::Internal(format!("session status {status:?}: {e}")))?,
            ),
        })
    }

    /// Organizations in the registry.
    async fn registered_tenants(&self) -> Result<Vec<OrgId>, StoreError> {
        let rows = with_client!(&self.db, |client| {
            client
                .query_typed(
                    "SELECT organization_id FROM public.tenants ORDER BY organization_id",
                    &[],
                )
                .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|row| OrgId::parse(row.get::<_, &str>(0)).ok())
            .collect())
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
        let status = m.status.as_str();
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

    async fn insert_agent_interaction(
        &self,
        caller: &Caller,
        m: &AgentInteraction,
    ) -> Result<Stored, StoreError> {
        let id =
            m.id.ok_or_else(|| StoreError::Internal("metric without id".into()))?;
        let kind = m.interaction_type.as_str();
        self.insert(
            &caller.org,
            |sql| &sql.agent_interaction,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&m.agent_name, Type::TEXT),
                (&kind, Type::TEXT),
                (&m.input_tokens, Type::INT8),
                (&m.output_tokens, Type::INT8),
                (&m.processing_time_ms, Type::FLOAT8),
                (&m.success, Type::BOOL),
                (&m.metadata, Type::JSONB),
                (&m.timestamp, Type::TIMESTAMPTZ),
            ],
        )
        .await
    }

    async fn insert_productivity_metric(
        &self,
        caller: &Caller,
        m: &ProductivityMetric,
    ) -> Result<Stored, StoreError> {
        let id =
            m.id.ok_or_else(|| StoreError::Internal("metric without id".into()))?;
        let kind = m.metric_type.as_str();
        self.insert(
            &caller.org,
            |sql| &sql.productivity_metric,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&kind, Type::TEXT),
                (&m.value, Type::FLOAT8),
                (&m.unit, Type::TEXT),
                (&m.period_start, Type::TIMESTAMPTZ),
                (&m.period_end, Type::TIMESTAMPTZ),
                (&m.dimensions, Type::JSONB),
            ],
        )
        .await
    }

    async fn start_session(
        &self,
        caller: &Caller,
        start: &SessionStart,
    ) -> Result<Stored, StoreError> {
        let id = start
            .id
            .ok_or_else(|| StoreError::Internal("session without id".into()))?;
        self.insert(
            &caller.org,
            |sql| &sql.session_start,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&start.session_start, Type::TIMESTAMPTZ),
                (&start.context, Type::JSONB),
            ],
        )
        .await
    }

    async fn update_session(
        &self,
        caller: &Caller,
        id: Uuid,
        a: &SessionActivity,
    ) -> Result<SessionChange, StoreError> {
        self.change_session(
            &caller.org,
            |sql| &sql.session_update,
            &[
                (&id, Type::UUID),
                (&caller.user.as_str(), Type::TEXT),
                (&a.commands_executed, Type::INT8),
                (&a.agents_used, Type::TEXT_ARRAY),
                (&a.context, Type::JSONB),
            ],
        )
        .await
    }

    async fn end_session(
        &self,
        caller: &Caller,
        end: &SessionEnd,
    ) -> Result<SessionChange, StoreError> {
        let a = &end.activity;
        self.change_session(
            &caller.org,
            |sql| &sql.session_end,
            &[
                (&end.session_id, Type::UUID),
                (&caller.user.as_str(), Type::TEXT),
                (&a.commands_executed, Type::INT8),
                (&a.agents_used, Type::TEXT_ARRAY),
                (&a.context, Type::JSONB),
                (&end.productivity_score, Type::FLOAT8),
            ],
        )
        .await
    }

    async fn abandon_idle_sessions(&self, idle: Duration) -> Result<u64, StoreError> {
        let idle_seconds = idle.as_secs_f64();
        let mut abandoned = 0;
        for org in self.registered_tenants().await? {
            let rows = with_client!(&self.db, |client| {
                match self.tenant(&mut client, &org).await {
                    Ok(tenant) => {
                        client
                            .query_typed(&tenant.abandon_idle, &[(&idle_seconds, Type::FLOAT8)])
                            .await
                    }
                    Err(err) => Err(err),
                }
            })?;
            if !rows.is_empty() {
                tracing::info!(org = %org, sessions = rows.len(), "marked idle sessions abandoned");
            }
            abandoned += rows.len() as u64;
        }
        Ok(abandoned)
    }
}
