//! The PostgreSQL store: the `MetricStore` port on one schema per organization.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Object;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::envelope::EnvelopeColumns;
use super::migrate::{create_tenant_function, provision_tenant};
use super::sql::{InsertSql, SummaryFunction, TenantSql};
use super::usage;
use super::{Database, with_client};
use crate::domain::batch::Envelope;
use crate::domain::identified::Identified;
use crate::domain::ids::{Caller, OrgId, UserId};
use crate::domain::kind::{Kind, PerKind};
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{SessionActivity, SessionChange, SessionEnd, SessionRecord, SessionStart};
use crate::domain::summary::{AggregateRow, SESSION_ROW, SESSION_TOTAL_ROW, SessionFigures, SummaryQuery};
use crate::domain::usage::{Usage, UsageExport, UsageField, UsageWritten, count_points, usage_of};
use crate::domain::validation::Choice;
use crate::ports::store::{HookReceipt, KeptHookEvent, MetricStore, StoreError, Stored};

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
    async fn tenant(&self, client: &mut Object, org: &OrgId) -> Result<Arc<TenantSql>, tokio_postgres::Error> {
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
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(org).cloned()
    }

    /// Runs one of the tenant's idempotent inserts; `params[0]` must be the id. The same id
    /// sent again by the same user answers the stored record; an id another user of the
    /// organization has taken is [`StoreError::IdTaken`] (their record is neither changed nor
    /// described).
    async fn insert(
        &self,
        caller: &Caller,
        statement: impl Fn(&TenantSql) -> &InsertSql,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Stored, StoreError> {
        let (rows, new) = with_client!(&self.db, |client| {
            self.insert_on(&mut client, &caller.org, &statement, params).await
        })?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Internal("insert returned no row".into()))?;
        if !new && row.get::<_, &str>(2) != caller.user.as_str() {
            return Err(StoreError::IdTaken);
        }
        Ok(Stored {
            id: row.get(0),
            created_at: row.get(1),
            new,
        })
    }

    async fn insert_on(
        &self,
        client: &mut Object,
        org: &OrgId,
        statement: &impl Fn(&TenantSql) -> &InsertSql,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<(Vec<tokio_postgres::Row>, bool), tokio_postgres::Error> {
        let tenant = self.tenant(client, org).await?;
        let sql = statement(&tenant);
        let rows = client.query_typed(&sql.insert, params).await?;
        if !rows.is_empty() {
            return Ok((rows, true));
        }
        // Stored already (perhaps by a concurrent insert that committed after our snapshot).
        Ok((client.query_typed(&sql.select_existing, &params[..1]).await?, false))
    }

    /// [`MetricStore::write_usage`] on one connection (see `usage.rs` for the steps).
    async fn write_usage_on(
        &self,
        client: &mut Object,
        caller: &Caller,
        export: &UsageExport,
    ) -> Result<UsageWritten, tokio_postgres::Error> {
        let tenant = self.tenant(client, &caller.org).await?;
        let transaction = client.transaction().await?;
        let series = export.cumulative_series();
        let previous = if series.is_empty() {
            vec![]
        } else {
            transaction
                .execute_typed(&tenant.ensure_series, &[(&series, Type::UUID_ARRAY)])
                .await?;
            let rows = transaction
                .query_typed(&tenant.lock_series, &[(&series, Type::UUID_ARRAY)])
                .await?;
            usage::series_states(&rows)
        };
        let counted = count_points(export, &previous);
        let (org, user) = (caller.org.as_str(), caller.user.as_str());
        let (points, events) = (usage::points_json(&counted.points), usage::events_json(export));
        let (states, sessions) = (usage::series_json(&counted.series), usage::sessions_json(export));
        let params: &[(&(dyn ToSql + Sync), Type)] = &[
            (&org, Type::TEXT),
            (&user, Type::TEXT),
            (&points, Type::JSONB),
            (&events, Type::JSONB),
            (&states, Type::JSONB),
            (&sessions, Type::JSONB),
        ];
        let rows = transaction.query_typed(&tenant.write_usage, params).await?;
        transaction.commit().await?;
        let (new_points, new_events): (Vec<Uuid>, Vec<Uuid>) = rows
            .first()
            .map_or_else(Default::default, |row| (row.get(0), row.get(1)));
        let (points_new, events_new): (HashSet<Uuid>, HashSet<Uuid>) = (
            new_points.iter().copied().collect(),
            new_events.iter().copied().collect(),
        );
        let usage = usage_of(
            counted
                .points
                .iter()
                .filter(|(p, _)| points_new.contains(&p.id))
                .copied(),
            export.events.iter().filter(|e| events_new.contains(&e.id)),
        );
        Ok(UsageWritten {
            points: new_points.len() as u64,
            events: new_events.len() as u64,
            usage,
        })
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
            "context_full" => SessionChange::ContextFull,
            status => SessionChange::Refused(
                serde_json::from_value(serde_json::Value::String(status.to_owned()))
                    .map_err(|e| StoreError::Internal(format!("session status {status:?}: {e}")))?,
            ),
        })
    }

    /// Organizations in the registry.
    async fn registered_tenants(&self) -> Result<Vec<OrgId>, StoreError> {
        super::registered_organizations(&self.db).await
    }
}

/// Runs a summary's tenant function, creating it first when the tenant does not have it yet
/// (a new tenant, or the first summary of this kind since a deploy changed its statement). A
/// function that exists and still fails (its body calling something missing) is not made again:
/// the second call's error is the answer.
async fn summarise(
    client: &mut Object,
    org: &OrgId,
    function: &SummaryFunction,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    match client.query_typed(&function.call, params).await {
        Err(err) if err.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_FUNCTION) => {
            create_tenant_function(client, org, &function.signature, &function.definition).await?;
            client.query_typed(&function.call, params).await
        }
        answer => answer,
    }
}

#[async_trait]
impl MetricStore for PgStore {
    async fn aggregates(&self, caller: &Caller, query: &SummaryQuery) -> Result<Vec<AggregateRow>, StoreError> {
        let groups = i64::from(query.limit) + 1;
        let (first_day, end_of_days) = query.whole_days();
        let user = query.user.as_ref().map(UserId::as_str);
        let params: &[(&(dyn ToSql + Sync), Type)] = &[
            (&query.since, Type::TIMESTAMPTZ),
            (&query.until, Type::TIMESTAMPTZ),
            (&groups, Type::INT8),
            (&first_day, Type::TIMESTAMPTZ),
            (&end_of_days, Type::TIMESTAMPTZ),
            (&user, Type::TEXT),
        ];
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &caller.org).await {
                Ok(tenant) => {
                    let function = tenant.summary(query.group_by, query.p95);
                    summarise(&mut client, &caller.org, &function, params).await
                }
                Err(err) => Err(err),
            }
        })?;
        Ok(rows
            .iter()
            .map(|row| AggregateRow {
                key: row.get(0),
                kind: row.get(1),
                count: row.get(2),
                error_count: row.get(3),
                total_ms: row.get(4),
                tokens_in: row.get(5),
                tokens_out: row.get(6),
                histogram: histogram(row.get(7), row.get(8)),
                usage: usage_columns(row, 9),
                sessions: session_columns(row, 9 + UsageField::ALL.len()),
            })
            .collect())
    }

    async fn write_usage(&self, caller: &Caller, export: &UsageExport) -> Result<UsageWritten, StoreError> {
        if export.points.is_empty() && export.events.is_empty() {
            return Ok(UsageWritten::default());
        }
        with_client!(&self.db, |client| {
            self.write_usage_on(&mut client, caller, export).await
        })
    }

    async fn keep_hook_event(&self, caller: &Caller, event: &KeptHookEvent<'_>) -> Result<HookReceipt, StoreError> {
        let params: &[(&(dyn ToSql + Sync), Type)] = &[
            (&event.id, Type::UUID),
            (&caller.org.as_str(), Type::TEXT),
            (&caller.user.as_str(), Type::TEXT),
            (&event.session_id, Type::TEXT),
            (&event.event_name, Type::TEXT),
            (&event.correlation_id, Type::TEXT),
            (event.payload, Type::JSONB),
            (&event.partner, Type::UUID),
        ];
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &caller.org).await {
                Ok(tenant) => client.query_typed(&tenant.hook_event, params).await,
                Err(err) => Err(err),
            }
        })?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Internal("hook event statement returned no row".into()))?;
        Ok(HookReceipt {
            received_at: row.get(0),
            partner_received_at: row.get(1),
        })
    }

    async fn insert_command_execution(
        &self,
        caller: &Caller,
        m: &Identified<CommandExecution>,
    ) -> Result<Stored, StoreError> {
        let id = m.id;
        let status = m.status.as_str();
        self.insert(
            caller,
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
        m: &Identified<AgentInteraction>,
    ) -> Result<Stored, StoreError> {
        let id = m.id;
        let kind = m.interaction_type.as_str();
        self.insert(
            caller,
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
        m: &Identified<ProductivityMetric>,
    ) -> Result<Stored, StoreError> {
        let id = m.id;
        let kind = m.metric_type.as_str();
        self.insert(
            caller,
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

    async fn start_session(&self, caller: &Caller, start: &Identified<SessionStart>) -> Result<Stored, StoreError> {
        let id = start.id;
        self.insert(
            caller,
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
                (&a.tool_uses_of, Type::TEXT),
            ],
        )
        .await
    }

    async fn end_session(&self, caller: &Caller, end: &SessionEnd) -> Result<SessionChange, StoreError> {
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
                (&a.tool_uses_of, Type::TEXT),
                (&end.productivity_score, Type::FLOAT8),
            ],
        )
        .await
    }

    async fn ids_taken_by_others(&self, envelope: &Envelope) -> Result<PerKind<Vec<Uuid>>, StoreError> {
        let ids = envelope
            .metrics
            .ids()
            .map(|_, ids| ids.iter().flatten().copied().collect::<Vec<Uuid>>());
        let user = envelope.user_id.as_str();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Kind::ALL
            .iter()
            .map(|kind| (&ids[*kind] as &(dyn ToSql + Sync), Type::UUID_ARRAY))
            .collect();
        params.push((&user, Type::TEXT));
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &envelope.organization_id).await {
                Ok(tenant) => client.query_typed(&tenant.taken_ids, &params).await,
                Err(err) => Err(err),
            }
        })?;
        let mut taken = PerKind::<Vec<Uuid>>::default();
        for row in rows {
            if let Some(kind) = Kind::ALL
                .into_iter()
                .find(|kind| kind.plural() == row.get::<_, &str>(0))
            {
                taken[kind].push(row.get(1));
            }
        }
        Ok(taken)
    }

    async fn write_envelope(&self, envelope: &Envelope) -> Result<PerKind<u64>, StoreError> {
        let columns = EnvelopeColumns::new(envelope);
        let present = columns.present();
        let kinds: Vec<Kind> = present.iter().filter(|(_, p)| **p).map(|(kind, _)| kind).collect();
        if kinds.is_empty() {
            return Ok(PerKind::default());
        }
        let org = envelope.organization_id.as_str();
        let user = envelope.user_id.as_str();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
            (&org, Type::TEXT),
            (&user, Type::TEXT),
            (&envelope.received_at, Type::TIMESTAMPTZ),
        ];
        for kind in &kinds {
            params.extend(columns.params(*kind));
        }
        let counts = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &envelope.organization_id).await {
                // One plain insert: its row count is the answer.
                Ok(tenant) if kinds.len() == 1 && !kinds[0].is_aggregated() => client
                    .execute_typed(&tenant.envelope(&present), &params)
                    .await
                    .map(|n| PerKind::from_fn(|kind| if kind == kinds[0] { n } else { 0 })),
                // One count per kind, in `Kind::ALL` order.
                Ok(tenant) => client
                    .query_typed(&tenant.envelope(&present), &params)
                    .await
                    .map(|rows| {
                        let counted = |kind: Kind| -> u64 {
                            let column = Kind::ALL.iter().position(|k| *k == kind).unwrap_or_default();
                            rows.first().map_or(0, |row| row.get::<_, i64>(column) as u64)
                        };
                        PerKind::from_fn(counted)
                    }),
                Err(err) => Err(err),
            }
        })?;
        Ok(counts)
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

/// The usage figures of a summary row, from column `first` on, in [`UsageField::ALL`] order.
fn usage_columns(row: &tokio_postgres::Row, first: usize) -> Usage {
    let mut usage = Usage::default();
    for (i, field) in UsageField::ALL.into_iter().enumerate() {
        usage.add(field, row.get::<_, Option<f64>>(first + i).unwrap_or_default());
    }
    usage
}

/// The session figures of a summary row: its count (the sessions started), then the columns of
/// `SESSION_COLUMNS_OF_SUMMARY` from column `first` on.
/// Zeros on the rows of other kinds.
fn session_columns(row: &tokio_postgres::Row, first: usize) -> SessionFigures {
    let kind: &str = row.get(1);
    if kind != SESSION_ROW && kind != SESSION_TOTAL_ROW {
        return SessionFigures::default();
    }
    let column = |i: usize| row.get::<_, Option<i64>>(first + i).unwrap_or_default();
    SessionFigures {
        started: row.get(2),
        active: column(0),
        completed: column(1),
        abandoned: column(2),
        timed: column(3),
        duration_ms: column(4),
    }
}

/// A dense histogram from the buckets (1-based) that have counts.
fn histogram(buckets: Option<Vec<i16>>, counts: Option<Vec<i64>>) -> Vec<i64> {
    let mut dense = vec![0; crate::domain::summary::HISTOGRAM_BUCKETS];
    for (bucket, count) in buckets.unwrap_or_default().into_iter().zip(counts.unwrap_or_default()) {
        if let Some(slot) = usize::try_from(bucket)
            .ok()
            .and_then(|b| dense.get_mut(b.wrapping_sub(1)))
        {
            *slot += count;
        }
    }
    dense
}
