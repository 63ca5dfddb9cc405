//! Records in memory, per organization, behaving as the PostgreSQL store does (the contract
//! suite proves it); for unit tests of handlers.

use crate::domain::batch::Envelope;
use crate::domain::identified::Identified;
use crate::domain::ids::{Caller, OrgId, UserId};
use crate::domain::kind::{Kind, PerKind};
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{
    MAX_AGENTS, SessionAction, SessionActivity, SessionChange, SessionEnd, SessionImport, SessionRecord, SessionStart,
    SessionStatus,
};
use crate::domain::summary::{AggregateRow, SummaryQuery};
use crate::domain::usage::{
    SeriesState, UsageEvent, UsageExport, UsagePoint, UsageWritten, count_points, session_context, usage_of,
};
use crate::ports::store::{HookReceipt, KeptHookEvent, MetricStore, StoreError, Stored, TOOL_USE_EVENTS};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

#[derive(Default)]
struct Tenant {
    commands: Vec<(CommandExecution, Stored)>,
    agents: Vec<(AgentInteraction, Stored)>,
    productivity: Vec<(ProductivityMetric, Stored)>,
    sessions: Vec<(UserId, SessionRecord)>,
    imported_sessions: Vec<(SessionImport, Stored)>,
    hook_events: Vec<KeptHook>,
    /// OTLP points (with what each counted) and events, with their sender; cumulative series.
    usage_points: Vec<(UserId, UsagePoint, f64)>,
    usage_events: Vec<(UserId, UsageEvent)>,
    series: HashMap<Uuid, SeriesState>,
    /// Who sent each command execution and agent interaction (the table's `user_id`).
    /// Who first sent each id, per kind (`batch::KINDS` index): ids are unique per table.
    owners: HashMap<(Kind, Uuid), UserId>,
}

/// A hook event as the in-memory store keeps it.
#[derive(Debug, Clone)]
pub struct KeptHook {
    pub id: Uuid,
    pub user: UserId,
    pub session_id: String,
    pub event_name: String,
    pub payload: Value,
    pub received_at: DateTime<Utc>,
}

/// Keeps records in memory, per organization; for unit tests of handlers.
#[derive(Default)]
pub struct InMemoryStore {
    tenants: Mutex<HashMap<OrgId, Tenant>>,
    unavailable: bool,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose database is down.
    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    fn tenants(&self) -> Result<std::sync::MutexGuard<'_, HashMap<OrgId, Tenant>>, StoreError> {
        if self.unavailable {
            return Err(StoreError::Unavailable("in-memory store set to unavailable".into()));
        }
        Ok(self.tenants.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn read<T>(&self, org: &OrgId, pick: impl Fn(&Tenant) -> Vec<T>) -> Vec<T> {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.get(org).map(pick).unwrap_or_default()
    }

    pub fn command_executions(&self, org: &OrgId) -> Vec<CommandExecution> {
        self.read(org, |t| t.commands.iter().map(|(m, _)| m.clone()).collect())
    }

    pub fn agent_interactions(&self, org: &OrgId) -> Vec<AgentInteraction> {
        self.read(org, |t| t.agents.iter().map(|(m, _)| m.clone()).collect())
    }

    pub fn productivity_metrics(&self, org: &OrgId) -> Vec<ProductivityMetric> {
        self.read(org, |t| t.productivity.iter().map(|(m, _)| m.clone()).collect())
    }

    pub fn imported_sessions(&self, org: &OrgId) -> Vec<SessionImport> {
        self.read(org, |t| t.imported_sessions.iter().map(|(m, _)| m.clone()).collect())
    }

    pub fn sessions(&self, org: &OrgId) -> Vec<SessionRecord> {
        self.read(org, |t| t.sessions.iter().map(|(_, s)| s.clone()).collect())
    }

    pub fn hook_events(&self, org: &OrgId) -> Vec<KeptHook> {
        self.read(org, |t| t.hook_events.clone())
    }

    pub fn usage_points(&self, org: &OrgId) -> Vec<UsagePoint> {
        self.read(org, |t| t.usage_points.iter().map(|(_, p, _)| p.clone()).collect())
    }

    pub fn usage_events(&self, org: &OrgId) -> Vec<UsageEvent> {
        self.read(org, |t| t.usage_events.iter().map(|(_, e)| e.clone()).collect())
    }

    fn change(
        &self,
        caller: &Caller,
        id: Uuid,
        action: SessionAction,
        activity: &SessionActivity,
        score: Option<f64>,
    ) -> Result<SessionChange, StoreError> {
        let mut tenants = self.tenants()?;
        let tenant = tenants.entry(caller.org.clone()).or_default();
        let tool_uses = activity.tool_uses_of.as_deref().map(|claude_session| {
            let counted = |k: &&KeptHook| {
                k.user == caller.user
                    && k.session_id == claude_session
                    && TOOL_USE_EVENTS.contains(&k.event_name.as_str())
            };
            tenant.hook_events.iter().filter(counted).count() as i64
        });
        let Some((owner, session)) = tenant.sessions.iter_mut().find(|(_, s)| s.id == id) else {
            return Ok(SessionChange::NotFound);
        };
        if *owner != caller.user {
            return Ok(SessionChange::OtherUser);
        }
        if !action.allowed_from(session.status) {
            return Ok(SessionChange::Refused(session.status));
        }
        if let (Some(Value::Object(new)), Value::Object(old)) = (&activity.context, &session.context) {
            let mut merged = old.clone();
            merged.extend(new.clone());
            if !crate::domain::sessions::context_fits(&Value::Object(merged)) {
                return Ok(SessionChange::ContextFull);
            }
        }
        let now = Utc::now();
        for n in [activity.commands_executed, tool_uses].into_iter().flatten() {
            session.commands_executed = session.commands_executed.max(n);
        }
        for agent in activity.agents_used.iter().flatten() {
            if !session.agents_used.contains(agent) && session.agents_used.len() < MAX_AGENTS {
                session.agents_used.push(agent.clone());
            }
        }
        if let (Some(Value::Object(new)), Value::Object(old)) = (&activity.context, &mut session.context) {
            old.extend(new.clone());
        }
        session.updated_at = now;
        if action == SessionAction::End {
            session.status = SessionStatus::Completed;
            session.session_end = Some(now);
            session.total_duration_ms = Some((now - session.session_start).num_milliseconds().max(0));
            session.productivity_score = score.or(session.productivity_score);
        }
        Ok(SessionChange::Changed(session.clone()))
    }
}

/// Records the first sender of an id of `kind`; an id another user sent first is taken.
fn own(
    owners: &mut HashMap<(Kind, Uuid), UserId>,
    kind: Kind,
    id: Option<Uuid>,
    user: &UserId,
) -> Result<(), StoreError> {
    if let Some(id) = id
        && owners.entry((kind, id)).or_insert_with(|| user.clone()) != user
    {
        return Err(StoreError::IdTaken);
    }
    Ok(())
}

/// Keeps the first record stored under `id`, as the database's `ON CONFLICT DO NOTHING` does.
fn insert_once<T: Clone>(rows: &mut Vec<(T, Stored)>, id: Option<Uuid>, metric: &T) -> Result<Stored, StoreError> {
    let id = id.ok_or_else(|| StoreError::Internal("metric without id".into()))?;
    if let Some((_, stored)) = rows.iter().find(|(_, stored)| stored.id == id) {
        return Ok(Stored {
            new: false,
            ..stored.clone()
        });
    }
    let stored = Stored {
        id,
        created_at: Utc::now(),
        new: true,
    };
    rows.push((metric.clone(), stored.clone()));
    Ok(stored)
}

/// The session record of a batch-imported session, as the database's row would read.
fn imported_record(session: &SessionImport, now: DateTime<Utc>) -> SessionRecord {
    SessionRecord {
        id: session.id.unwrap_or_default(),
        status: session.status,
        session_start: session.session_start,
        session_end: session.session_end,
        total_duration_ms: session
            .session_end
            .map(|end| (end - session.session_start).num_milliseconds().max(0)),
        commands_executed: session.commands_executed,
        agents_used: session.agents_used.clone(),
        productivity_score: session.productivity_score,
        context: session.context.clone(),
        updated_at: now,
    }
}

/// Inserts each item once; returns how many were new.
fn insert_all<T: Clone>(
    rows: &mut Vec<(T, Stored)>,
    items: &[T],
    id: fn(&T) -> Option<Uuid>,
) -> Result<u64, StoreError> {
    let before = rows.len();
    for item in items {
        insert_once(rows, id(item), item)?;
    }
    Ok((rows.len() - before) as u64)
}

#[async_trait]
impl MetricStore for InMemoryStore {
    async fn insert_command_execution(
        &self,
        caller: &Caller,
        metric: &Identified<CommandExecution>,
    ) -> Result<Stored, StoreError> {
        let mut tenants = self.tenants()?;
        let tenant = tenants.entry(caller.org.clone()).or_default();
        own(
            &mut tenant.owners,
            Kind::CommandExecution,
            Some(metric.id),
            &caller.user,
        )?;
        insert_once(&mut tenant.commands, Some(metric.id), &metric.record)
    }

    async fn insert_agent_interaction(
        &self,
        caller: &Caller,
        metric: &Identified<AgentInteraction>,
    ) -> Result<Stored, StoreError> {
        let mut tenants = self.tenants()?;
        let tenant = tenants.entry(caller.org.clone()).or_default();
        own(
            &mut tenant.owners,
            Kind::AgentInteraction,
            Some(metric.id),
            &caller.user,
        )?;
        insert_once(&mut tenant.agents, Some(metric.id), &metric.record)
    }

    async fn insert_productivity_metric(
        &self,
        caller: &Caller,
        metric: &Identified<ProductivityMetric>,
    ) -> Result<Stored, StoreError> {
        let mut tenants = self.tenants()?;
        let tenant = tenants.entry(caller.org.clone()).or_default();
        own(
            &mut tenant.owners,
            Kind::ProductivityMetric,
            Some(metric.id),
            &caller.user,
        )?;
        insert_once(&mut tenant.productivity, Some(metric.id), &metric.record)
    }

    async fn start_session(&self, caller: &Caller, start: &Identified<SessionStart>) -> Result<Stored, StoreError> {
        let id = start.id;
        let mut tenants = self.tenants()?;
        let tenant = tenants.entry(caller.org.clone()).or_default();
        own(&mut tenant.owners, Kind::UserSession, Some(id), &caller.user)?;
        if let Some((_, existing)) = tenant.sessions.iter().find(|(_, s)| s.id == id) {
            return Ok(Stored {
                id,
                created_at: existing.updated_at,
                new: false,
            });
        }
        let now = Utc::now();
        tenant.sessions.push((
            caller.user.clone(),
            SessionRecord {
                id,
                status: SessionStatus::Active,
                session_start: start.session_start.unwrap_or(now),
                session_end: None,
                total_duration_ms: None,
                commands_executed: 0,
                agents_used: vec![],
                productivity_score: None,
                context: start.context.clone(),
                updated_at: now,
            },
        ));
        Ok(Stored {
            id,
            created_at: now,
            new: true,
        })
    }

    async fn update_session(
        &self,
        caller: &Caller,
        id: Uuid,
        activity: &SessionActivity,
    ) -> Result<SessionChange, StoreError> {
        self.change(caller, id, SessionAction::Update, activity, None)
    }

    async fn end_session(&self, caller: &Caller, end: &SessionEnd) -> Result<SessionChange, StoreError> {
        self.change(
            caller,
            end.session_id,
            SessionAction::End,
            &end.activity,
            end.productivity_score,
        )
    }

    async fn write_envelope(&self, envelope: &Envelope) -> Result<PerKind<u64>, StoreError> {
        let mut tenants = self.tenants()?;
        let tenant = tenants.entry(envelope.organization_id.clone()).or_default();
        let m = &envelope.metrics;
        for (kind, ids) in m.ids().iter() {
            for id in ids.iter().copied() {
                // An id another user sent is skipped below, as `ON CONFLICT DO NOTHING` skips
                // it; the worker then asks `ids_taken_by_others` which ones those were.
                let _first_sender_kept = own(&mut tenant.owners, kind, id, &envelope.user_id);
            }
        }
        // Imported sessions share the table of started ones: an id of either is skipped, and a
        // new one can be updated and ended like a started one.
        let mut imported = 0;
        for session in &m.user_sessions {
            if tenant.sessions.iter().any(|(_, known)| Some(known.id) == session.id) {
                continue;
            }
            let stored = insert_once(&mut tenant.imported_sessions, session.id, session)?;
            tenant
                .sessions
                .push((envelope.user_id.clone(), imported_record(session, stored.created_at)));
            imported += 1;
        }
        Ok(PerKind {
            command_executions: insert_all(&mut tenant.commands, &m.command_executions, |x| x.id)?,
            agent_interactions: insert_all(&mut tenant.agents, &m.agent_interactions, |x| x.id)?,
            user_sessions: imported,
            productivity_metrics: insert_all(&mut tenant.productivity, &m.productivity_metrics, |x| x.id)?,
        })
    }

    async fn ids_taken_by_others(&self, envelope: &Envelope) -> Result<PerKind<Vec<Uuid>>, StoreError> {
        let tenants = self.tenants()?;
        let Some(tenant) = tenants.get(&envelope.organization_id) else {
            return Ok(Default::default());
        };
        let mut taken = PerKind::<Vec<Uuid>>::default();
        for (kind, ids) in envelope.metrics.ids().iter() {
            taken[kind] = ids
                .iter()
                .flatten()
                .copied()
                .filter(|id| {
                    tenant
                        .owners
                        .get(&(kind, *id))
                        .is_some_and(|owner| *owner != envelope.user_id)
                })
                .collect();
        }
        Ok(taken)
    }

    async fn write_usage(&self, caller: &Caller, export: &UsageExport) -> Result<UsageWritten, StoreError> {
        let mut tenants = self.tenants()?;
        let tenant = tenants.entry(caller.org.clone()).or_default();
        let previous: Vec<(Uuid, SeriesState)> = export
            .cumulative_series()
            .into_iter()
            .filter_map(|series| tenant.series.get(&series).map(|state| (series, *state)))
            .collect();
        let counted = count_points(export, &previous);
        let mut new_points = vec![];
        for (point, delta) in &counted.points {
            if !tenant.usage_points.iter().any(|(_, p, _)| p.id == point.id) {
                tenant
                    .usage_points
                    .push((caller.user.clone(), (*point).clone(), *delta));
                new_points.push((*point, *delta));
            }
        }
        let mut new_events: Vec<&UsageEvent> = vec![];
        for event in &export.events {
            if !tenant.usage_events.iter().any(|(_, e)| e.id == event.id)
                && !new_events.iter().any(|e| e.id == event.id)
            {
                tenant.usage_events.push((caller.user.clone(), event.clone()));
                new_events.push(event);
            }
        }
        tenant.series.extend(counted.series.iter().copied());
        let now = Utc::now();
        for (session, first) in export.sessions() {
            match tenant.sessions.iter_mut().find(|(_, s)| s.id == session.key) {
                Some((owner, record)) if *owner == caller.user && record.status == SessionStatus::Active => {
                    record.updated_at = now;
                }
                Some(_) => {}
                None => tenant.sessions.push((
                    caller.user.clone(),
                    SessionRecord {
                        id: session.key,
                        status: SessionStatus::Active,
                        session_start: first,
                        session_end: None,
                        total_duration_ms: None,
                        commands_executed: 0,
                        agents_used: vec![],
                        productivity_score: None,
                        context: session_context(&session),
                        updated_at: now,
                    },
                )),
            }
        }
        Ok(UsageWritten {
            points: new_points.len() as u64,
            events: new_events.len() as u64,
            usage: usage_of(new_points, new_events),
        })
    }

    async fn aggregates(&self, caller: &Caller, query: &SummaryQuery) -> Result<Vec<AggregateRow>, StoreError> {
        let tenants = self.tenants()?;
        let Some(tenant) = tenants.get(&caller.org) else {
            return Ok(vec![]);
        };
        let received = |kind: Kind, id: Option<Uuid>| {
            id.and_then(|id| tenant.owners.get(&(kind, id)))
                .map(UserId::as_str)
                .unwrap_or("")
        };
        // (user, kind, name, when, ms, failed, tokens in, tokens out)
        let commands = tenant.commands.iter().map(|(m, s)| {
            let when = m.timestamp.unwrap_or(s.created_at);
            let failed = m.status != crate::domain::metrics::CommandStatus::Success;
            (
                received(Kind::CommandExecution, m.id),
                "command",
                m.command_name.as_str(),
                when,
                m.execution_time_ms,
                failed,
                0,
                0,
            )
        });
        let agents = tenant.agents.iter().map(|(m, s)| {
            let when = m.timestamp.unwrap_or(s.created_at);
            let (tin, tout) = (m.input_tokens, m.output_tokens);
            (
                received(Kind::AgentInteraction, m.id),
                "agent",
                m.agent_name.as_str(),
                when,
                m.processing_time_ms,
                !m.success,
                tin,
                tout,
            )
        });
        let points = tenant.usage_points.iter().filter_map(|(user, p, delta)| {
            p.field
                .map(|field| (user.as_str(), p.model.as_str(), p.time(), field, *delta))
        });
        let events = tenant.usage_events.iter().filter_map(|(user, e)| {
            e.field
                .map(|field| (user.as_str(), e.model.as_str(), e.time(), field, 1.0))
        });
        let sessions = tenant.sessions.iter().map(|(user, session)| (user.as_str(), session));
        Ok(super::aggregates::summarise(
            commands.chain(agents),
            points.chain(events),
            sessions,
            query,
        ))
    }

    async fn keep_hook_event(&self, caller: &Caller, event: &KeptHookEvent<'_>) -> Result<HookReceipt, StoreError> {
        let mut tenants = self.tenants()?;
        let kept = &mut tenants.entry(caller.org.clone()).or_default().hook_events;
        let received_at = match kept.iter().find(|k| k.id == event.id) {
            Some(first) => first.received_at,
            None => {
                let now = Utc::now();
                kept.push(KeptHook {
                    id: event.id,
                    user: caller.user.clone(),
                    session_id: event.session_id.to_owned(),
                    event_name: event.event_name.to_owned(),
                    payload: event.payload.clone(),
                    received_at: now,
                });
                now
            }
        };
        let partner_received_at = event
            .partner
            .and_then(|id| kept.iter().find(|k| k.id == id))
            .map(|k| k.received_at);
        Ok(HookReceipt {
            received_at,
            partner_received_at,
        })
    }

    async fn abandon_idle_sessions(&self, idle: Duration) -> Result<u64, StoreError> {
        let mut tenants = self.tenants()?;
        let now = Utc::now();
        let cutoff = now - chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
        let mut abandoned = 0;
        for (_, session) in tenants.values_mut().flat_map(|t| t.sessions.iter_mut()) {
            if session.status == SessionStatus::Active && session.updated_at < cutoff {
                session.status = SessionStatus::Abandoned;
                session.session_end = Some(session.updated_at);
                session.total_duration_ms =
                    Some((session.updated_at - session.session_start).num_milliseconds().max(0));
                session.updated_at = now;
                abandoned += 1;
            }
        }
        Ok(abandoned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_store_keeps_the_store_contract() {
        crate::fakes::contract::every_case(&InMemoryStore::new(), "contract").await;
    }
}
