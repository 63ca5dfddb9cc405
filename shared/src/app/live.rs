//! Live updates: every stored metric is pushed as a compact `metric_update` message to the open
//! WebSocket connections of its organization, through API Gateway's management API
//! (`PostToConnection`). Connections live in DynamoDB, each bound to the organization of the
//! token it was opened with, until that token expires (two hours at most): a connection past
//! its expiry is never pushed to; the first delivery that finds it closes it
//! (`DeleteConnection`) and forgets it.
//!
//! A push never fails or delays a write: [`Broadcaster::publish`] only spawns the delivery, a
//! failed delivery is logged, and a connection API Gateway reports gone is forgotten. In
//! Lambda, [`after_response`] keeps the container awake after the response until the pending
//! deliveries are done (an internal extension), so the caller never waits for them.

use crate::adapters::dynamodb::connections::DynamoConnections;
use crate::adapters::management_api::ManagementApi;
use crate::config::{ConfigError, DynamoDbConfig, Env};
use crate::domain::batch::Envelope;
use crate::domain::identified::Identified;
use crate::domain::ids::{Caller, OrgId};
use crate::domain::kind::PerKind;
use crate::domain::live::{
    self, agent_interaction_update, batch_update, command_execution_update, productivity_update, session_started,
    session_update, usage_update,
};
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{SessionActivity, SessionChange, SessionEnd, SessionStart};
use crate::domain::summary::{AggregateRow, SummaryQuery};
use crate::domain::usage::{UsageExport, UsageWritten};
use crate::lock;
use crate::ports::live::{Connections, Delivery, Pusher};
use crate::ports::store::{HookReceipt, KeptHookEvent, MetricStore, StoreError, Stored};
use async_trait::async_trait;
use aws_config::SdkConfig;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Where live updates go: `CONNECTIONS_TABLE_NAME` and `LIVE_UPDATES_ENDPOINT` (the WebSocket
/// stage's management endpoint), both or neither.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub connections_table: String,
    pub endpoint: String,
    pub dynamodb: DynamoDbConfig,
}

impl LiveConfig {
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let table = env.optional("CONNECTIONS_TABLE_NAME");
        let endpoint = env.optional("LIVE_UPDATES_ENDPOINT");
        match (table, endpoint) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::new(
                "LIVE_UPDATES_ENDPOINT",
                "is required when CONNECTIONS_TABLE_NAME is set",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "CONNECTIONS_TABLE_NAME",
                "is required when LIVE_UPDATES_ENDPOINT is set",
            )),
            (Some(connections_table), Some(endpoint)) => {
                if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                    return Err(ConfigError::new(
                        "LIVE_UPDATES_ENDPOINT",
                        "must be the WebSocket stage's https:// management endpoint",
                    ));
                }
                Ok(Some(Self {
                    connections_table,
                    endpoint,
                    dynamodb: DynamoDbConfig::from_env(env),
                }))
            }
        }
    }
}

/// What one delivery to an organization did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub delivered: usize,
    pub gone: usize,
    pub failed: usize,
    /// Connections past their expiry: sent nothing, closed and forgotten.
    pub expired: usize,
}

/// Pushes messages to an organization's connections.
pub struct Broadcaster {
    connections: Arc<dyn Connections>,
    pusher: Arc<dyn Pusher>,
    pending: Mutex<Vec<JoinHandle<()>>>,
}

impl Broadcaster {
    pub fn new(connections: Arc<dyn Connections>, pusher: Arc<dyn Pusher>) -> Arc<Self> {
        Arc::new(Self {
            connections,
            pusher,
            pending: Mutex::new(Vec::new()),
        })
    }

    /// The DynamoDB table and the management API named by the environment; `None` when live
    /// updates are not configured.
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Option<Arc<Self>>, ConfigError> {
        let Some(config) = LiveConfig::from_env(env)? else {
            return Ok(None);
        };
        Ok(Some(Self::new(
            Arc::new(DynamoConnections::new(aws, &config.dynamodb, config.connections_table)?),
            Arc::new(ManagementApi::new(aws, &config.endpoint)?),
        )))
    }

    /// Sends `update` to the organization's connections in the background.
    pub fn publish(self: &Arc<Self>, org: &OrgId, update: Value) {
        let this = self.clone();
        let org = org.clone();
        let task = tokio::spawn(async move {
            this.deliver(&org, &update).await;
        });
        let mut pending = lock(&self.pending);
        pending.retain(|task| !task.is_finished());
        pending.push(task);
    }

    /// Sends `update` to every unexpired connection of `org`, concurrently — whole to admins
    /// and to the developer it is about, without its identity to other members; closes and
    /// forgets expired connections and forgets those that are gone; logs what failed.
    pub async fn deliver(&self, org: &OrgId, update: &Value) -> Report {
        let whole = update.to_string();
        let anonymous = live::without_identity(update).to_string();
        let mut report = Report::default();
        let listed = match self.connections.of_org(org).await {
            Ok(listed) => listed,
            Err(err) => {
                tracing::warn!(org = %org, error = %err, "live update not sent: connections unreadable");
                report.failed = 1;
                return report;
            }
        };
        let now = chrono::Utc::now().timestamp();
        let mut sends = tokio::task::JoinSet::new();
        for connection in listed {
            let (pusher, connections) = (self.pusher.clone(), self.connections.clone());
            let id = connection.id;
            if connection.expires_at <= now {
                // Its token has expired: it gets nothing more, and is closed and forgotten.
                report.expired += 1;
                let org = org.clone();
                sends.spawn(async move {
                    if let Delivery::Failed(err) = pusher.close(&id).await {
                        tracing::warn!(org = %org, connection = %id, error = %err, "expired connection not closed");
                    }
                    if let Err(err) = connections.remove(&id).await {
                        tracing::warn!(org = %org, connection = %id, error = %err, "expired connection not removed");
                    }
                    (id, None)
                });
                continue;
            }
            let message = if live::seen_whole_by(update, connection.role, connection.user.as_deref()) {
                whole.clone()
            } else {
                anonymous.clone()
            };
            sends.spawn(async move {
                let delivery = pusher.post(&id, &message).await;
                (id, Some(delivery))
            });
        }
        while let Some(sent) = sends.join_next().await {
            let Ok((id, delivery)) = sent else {
                report.failed += 1;
                continue;
            };
            let Some(delivery) = delivery else {
                continue;
            };
            match delivery {
                Delivery::Delivered => report.delivered += 1,
                Delivery::Gone => {
                    report.gone += 1;
                    if let Err(err) = self.connections.remove(&id).await {
                        tracing::warn!(org = %org, connection = %id, error = %err, "gone connection not removed");
                    }
                }
                Delivery::Failed(err) => {
                    report.failed += 1;
                    tracing::warn!(org = %org, connection = %id, error = %err, "live update not delivered");
                }
            }
        }
        report
    }

    /// Waits (at most `budget`) for the deliveries published so far.
    pub async fn flush(&self, budget: Duration) {
        let pending: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.pending));
        let waited = tokio::time::timeout(budget, async {
            for task in pending {
                let _ = task.await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                budget_ms = budget.as_millis() as u64,
                "live updates still pending after the flush budget"
            );
        }
    }
}

/// A [`MetricStore`] that publishes every newly written record after the inner store wrote it.
pub struct BroadcastingStore {
    inner: Arc<dyn MetricStore>,
    live: Arc<Broadcaster>,
}

impl BroadcastingStore {
    pub fn new(inner: Arc<dyn MetricStore>, live: Arc<Broadcaster>) -> Self {
        Self { inner, live }
    }
}

impl BroadcastingStore {
    /// Publishes `update` when this call wrote `stored` (not for an id stored already).
    fn publish_new(&self, org: &OrgId, stored: &Stored, update: impl FnOnce() -> Value) {
        if stored.new {
            self.live.publish(org, update());
        }
    }

    fn publish_change(&self, caller: &Caller, change: &SessionChange) {
        if let Some(message) = session_update(caller, change) {
            self.live.publish(&caller.org, message);
        }
    }
}

#[async_trait]
impl MetricStore for BroadcastingStore {
    async fn insert_command_execution(
        &self,
        caller: &Caller,
        metric: &Identified<CommandExecution>,
    ) -> Result<Stored, StoreError> {
        let stored = self.inner.insert_command_execution(caller, metric).await?;
        self.publish_new(&caller.org, &stored, || {
            command_execution_update(caller, metric, &stored)
        });
        Ok(stored)
    }

    async fn insert_agent_interaction(
        &self,
        caller: &Caller,
        metric: &Identified<AgentInteraction>,
    ) -> Result<Stored, StoreError> {
        let stored = self.inner.insert_agent_interaction(caller, metric).await?;
        self.publish_new(&caller.org, &stored, || {
            agent_interaction_update(caller, metric, &stored)
        });
        Ok(stored)
    }

    async fn insert_productivity_metric(
        &self,
        caller: &Caller,
        metric: &Identified<ProductivityMetric>,
    ) -> Result<Stored, StoreError> {
        let stored = self.inner.insert_productivity_metric(caller, metric).await?;
        self.publish_new(&caller.org, &stored, || productivity_update(caller, metric, &stored));
        Ok(stored)
    }

    async fn start_session(&self, caller: &Caller, start: &Identified<SessionStart>) -> Result<Stored, StoreError> {
        let stored = self.inner.start_session(caller, start).await?;
        self.publish_new(&caller.org, &stored, || session_started(caller, start, &stored));
        Ok(stored)
    }

    async fn update_session(
        &self,
        caller: &Caller,
        id: Uuid,
        activity: &SessionActivity,
    ) -> Result<SessionChange, StoreError> {
        let change = self.inner.update_session(caller, id, activity).await?;
        self.publish_change(caller, &change);
        Ok(change)
    }

    async fn end_session(&self, caller: &Caller, end: &SessionEnd) -> Result<SessionChange, StoreError> {
        let change = self.inner.end_session(caller, end).await?;
        self.publish_change(caller, &change);
        Ok(change)
    }

    async fn abandon_idle_sessions(&self, idle: Duration) -> Result<u64, StoreError> {
        self.inner.abandon_idle_sessions(idle).await
    }

    async fn write_envelope(&self, envelope: &Envelope) -> Result<PerKind<u64>, StoreError> {
        let new = self.inner.write_envelope(envelope).await?;
        // A redelivered envelope adds nothing and says nothing.
        if new.total() > 0 {
            self.live
                .publish(&envelope.organization_id, batch_update(envelope, &new));
        }
        Ok(new)
    }

    async fn ids_taken_by_others(&self, envelope: &Envelope) -> Result<PerKind<Vec<uuid::Uuid>>, StoreError> {
        self.inner.ids_taken_by_others(envelope).await
    }

    async fn keep_hook_event(&self, caller: &Caller, event: &KeptHookEvent<'_>) -> Result<HookReceipt, StoreError> {
        self.inner.keep_hook_event(caller, event).await
    }

    async fn write_usage(&self, caller: &Caller, export: &UsageExport) -> Result<UsageWritten, StoreError> {
        let written = self.inner.write_usage(caller, export).await?;
        // An exporter's retry adds nothing and says nothing.
        if written.points + written.events > 0 {
            self.live.publish(&caller.org, usage_update(caller, &written));
        }
        Ok(written)
    }

    async fn aggregates(&self, caller: &Caller, query: &SummaryQuery) -> Result<Vec<AggregateRow>, StoreError> {
        self.inner.aggregates(caller, query).await
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::batch::{Metrics, Source};
    use crate::domain::identified::{Identified, Identify};
    use crate::fakes::store::InMemoryStore;

    use super::*;

    use serde_json::json;

    use crate::domain::ids::UserId;
    use crate::domain::live::MESSAGE_TYPE;
    use crate::ports::live::{Connection, Connections, Listed, LiveError};

    use crate::fakes::live::{InMemoryConnections, RecordingPusher};

    fn caller(org: &str, user: &str) -> Caller {
        Caller::member(OrgId::parse(org).unwrap(), UserId::parse(user).unwrap())
    }

    /// An admin's dashboard of `org`: it receives every update whole.
    async fn connected(connections: &InMemoryConnections, id: &str, org: &str) {
        let admin = Caller {
            role: crate::domain::ids::Role::Admin,
            ..caller(org, "viewer")
        };
        connections.add(&Connection::opened_now(id, &admin)).await.unwrap();
    }

    fn command() -> Identified<CommandExecution> {
        let body = json!({"command_name": "cargo-test", "execution_time_ms": 12.5, "status": "success",
                          "command_args": {"token": "never pushed"}});
        CommandExecution::from_json(&body, "").unwrap().identified()
    }

    struct Live {
        connections: Arc<InMemoryConnections>,
        pusher: Arc<RecordingPusher>,
        broadcaster: Arc<Broadcaster>,
    }

    fn live() -> Live {
        let connections = Arc::new(InMemoryConnections::default());
        let pusher = Arc::new(RecordingPusher::default());
        let broadcaster = Broadcaster::new(connections.clone(), pusher.clone());
        Live {
            connections,
            pusher,
            broadcaster,
        }
    }

    #[tokio::test]
    async fn a_message_reaches_every_connection_of_its_organization_and_no_other() {
        // GIVEN two connections of acme and one of globex
        let live = live();
        connected(&live.connections, "a1", "acme").await;
        connected(&live.connections, "a2", "acme").await;
        connected(&live.connections, "g1", "globex").await;
        // WHEN acme's message is delivered
        let report = live
            .broadcaster
            .deliver(&OrgId::parse("acme").unwrap(), &serde_json::json!({"n": 1}))
            .await;
        // THEN only acme's connections received it
        assert_eq!(
            report,
            Report {
                delivered: 2,
                ..Report::default()
            }
        );
        let mut receivers: Vec<String> = live.pusher.sent().into_iter().map(|(id, _)| id).collect();
        receivers.sort();
        assert_eq!(receivers, ["a1", "a2"]);
    }

    #[tokio::test]
    async fn admins_and_the_developer_see_an_update_whole_other_members_only_its_kind() {
        // GIVEN alice, bob (members) and an admin connected to acme
        let live = live();
        let admin = Caller {
            role: crate::domain::ids::Role::Admin,
            ..caller("acme", "boss")
        };
        for (id, who) in [
            ("alice", caller("acme", "alice")),
            ("bob", caller("acme", "bob")),
            ("boss", admin),
        ] {
            live.connections.add(&Connection::opened_now(id, &who)).await.unwrap();
        }
        // WHEN alice's command is delivered
        let stored = Stored {
            id: Uuid::new_v4(),
            created_at: chrono::Utc::now(),
            new: true,
        };
        let update = command_execution_update(&caller("acme", "alice"), &command().record, &stored);
        live.broadcaster.deliver(&OrgId::parse("acme").unwrap(), &update).await;
        // THEN alice and the admin got it whole, bob only that acme has a new command execution
        let sent: std::collections::HashMap<String, Value> = live.pusher.sent().into_iter().collect();
        assert_eq!(sent["alice"], update);
        assert_eq!(sent["boss"], update);
        assert_eq!(sent["bob"], live::without_identity(&update));
        assert_eq!(
            sent["bob"],
            json!({"type": MESSAGE_TYPE, "organization_id": "acme", "kind": "command_execution"})
        );
    }

    #[tokio::test]
    async fn gone_connections_are_forgotten_and_failures_do_not_stop_the_others() {
        let live = live();
        for id in ["gone", "failing", "open"] {
            connected(&live.connections, id, "acme").await;
        }
        live.pusher.gone.lock().unwrap().push("gone".into());
        live.pusher.failing.lock().unwrap().push("failing".into());
        let report = live
            .broadcaster
            .deliver(&OrgId::parse("acme").unwrap(), &serde_json::json!({}))
            .await;
        assert_eq!(
            report,
            Report {
                delivered: 1,
                gone: 1,
                failed: 1,
                expired: 0
            }
        );
        let left: Vec<String> = live.connections.all().into_iter().map(|c| c.id).collect();
        assert_eq!(left, ["failing", "open"]);
    }

    #[tokio::test]
    async fn expired_connections_receive_nothing_and_are_closed_and_forgotten() {
        // GIVEN a connection whose token expired a second ago, beside an open one
        let live = live();
        let viewer = caller("acme", "viewer");
        let now = chrono::Utc::now().timestamp();
        live.connections
            .add(&Connection::opened("old", &viewer, Some(now - 1)))
            .await
            .unwrap();
        connected(&live.connections, "open", "acme").await;
        let open = live.connections.open_count(&viewer.org, &viewer.user).await.unwrap();
        assert_eq!(open.organization, 1);
        // WHEN a message is delivered to acme
        let report = live.broadcaster.deliver(&viewer.org, &serde_json::json!({})).await;
        // THEN only the open connection got it; the expired one was closed and removed
        assert_eq!(
            report,
            Report {
                delivered: 1,
                expired: 1,
                ..Report::default()
            }
        );
        let receivers: Vec<String> = live.pusher.sent().into_iter().map(|(id, _)| id).collect();
        assert_eq!(receivers, ["open"]);
        assert_eq!(live.pusher.closed(), ["old"]);
        let left: Vec<String> = live.connections.all().into_iter().map(|c| c.id).collect();
        assert_eq!(left, ["open"]);
    }

    #[test]
    fn a_connection_expires_with_its_token_or_after_two_hours() {
        let viewer = caller("acme", "viewer");
        let now = chrono::Utc::now().timestamp();
        let short = Connection::opened("a", &viewer, Some(now + 5));
        assert_eq!(short.expires_at, now + 5);
        let long = Connection::opened("b", &viewer, Some(now + 86_400));
        assert!((long.expires_at - now - 7200).abs() <= 1, "{}", long.expires_at - now);
        let unknown = Connection::opened("c", &viewer, None);
        assert!((unknown.expires_at - now - 7200).abs() <= 1);
    }

    #[tokio::test]
    async fn a_stored_metric_is_published_compactly_once_written() {
        // GIVEN a store that broadcasts, and a viewer of acme
        let live = live();
        connected(&live.connections, "a1", "acme").await;
        let store = BroadcastingStore::new(Arc::new(InMemoryStore::new()), live.broadcaster.clone());
        // WHEN alice's command is stored and the pending pushes are flushed
        let metric = command();
        let stored = store
            .insert_command_execution(&caller("acme", "alice"), &metric)
            .await
            .unwrap();
        live.broadcaster.flush(Duration::from_secs(5)).await;
        // THEN the viewer got one metric_update naming it, without its arguments
        let sent = live.pusher.sent();
        assert_eq!(sent.len(), 1);
        let message = &sent[0].1;
        assert_eq!(message["type"], MESSAGE_TYPE);
        assert_eq!(message["kind"], "command_execution");
        assert_eq!(message["organization_id"], "acme");
        assert_eq!(message["user_id"], "alice");
        assert_eq!(message["id"], json!(stored.id));
        assert_eq!(message["metric"]["command_name"], "cargo-test");
        assert_eq!(message["metric"]["status"], "success");
        assert!(!message.to_string().contains("never pushed"));
    }

    #[tokio::test]
    async fn an_otlp_export_pushes_one_compact_usage_message_and_its_retry_none() {
        // GIVEN Claude Code's recorded metrics export, read for alice
        let live = live();
        connected(&live.connections, "a1", "acme").await;
        let store = BroadcastingStore::new(Arc::new(InMemoryStore::new()), live.broadcaster.clone());
        let alice = caller("acme", "alice");
        let recorded = serde_json::from_str(include_str!("../../../events/otlp/metrics.json")).unwrap();
        let export = crate::domain::otlp::metrics::read(&recorded, &alice.user, 1_796_187_700_000_000_000).export;
        // WHEN it is written twice (an exporter's retry)
        for _ in 0..2 {
            store.write_usage(&alice, &export).await.unwrap();
        }
        live.broadcaster.flush(Duration::from_secs(5)).await;
        // THEN one message says what was new, without labels or attributes
        let sent = live.pusher.sent();
        assert_eq!(sent.len(), 1);
        let message = &sent[0].1;
        assert_eq!(
            (message["kind"].as_str(), message["user_id"].as_str()),
            (Some("usage"), Some("alice"))
        );
        assert_eq!(message["metric"]["points"], 7);
        assert_eq!(message["metric"]["usage"]["input_tokens"], 240);
        assert!(
            !message.to_string().contains("628c2061"),
            "no session or label is pushed"
        );
    }

    #[tokio::test]
    async fn every_kind_is_published_once_however_often_its_id_is_sent() {
        let live = live();
        connected(&live.connections, "a1", "acme").await;
        let store = BroadcastingStore::new(Arc::new(InMemoryStore::new()), live.broadcaster.clone());
        let alice = caller("acme", "alice");
        let agent = AgentInteraction::from_json(
            &json!({"agent_name": "reviewer", "interaction_type": "delegation", "input_tokens": 1,
                    "output_tokens": 2, "processing_time_ms": 3, "success": true}),
            "",
        )
        .unwrap()
        .identified();
        let productivity = ProductivityMetric::from_json(
            &json!({"metric_type": "completion_rate", "value": 0.5, "unit": "ratio",
                    "period_start": "2026-11-28T09:00:00Z", "period_end": "2026-11-28T10:00:00Z"}),
            "",
        )
        .unwrap()
        .identified();
        let session = SessionStart::from_json(&json!({})).unwrap().identified();
        for _ in 0..2 {
            store.insert_command_execution(&alice, &command()).await.unwrap();
            store.insert_agent_interaction(&alice, &agent).await.unwrap();
            store.insert_productivity_metric(&alice, &productivity).await.unwrap();
            store.start_session(&alice, &session).await.unwrap();
        }
        live.broadcaster.flush(Duration::from_secs(5)).await;
        let mut kinds: Vec<String> = live
            .pusher
            .sent()
            .iter()
            .map(|(_, m)| m["kind"].as_str().unwrap().to_owned())
            .collect();
        kinds.sort();
        // command() makes a new id each time: two; the others were sent twice with one id.
        assert_eq!(
            kinds,
            [
                "agent_interaction",
                "command_execution",
                "command_execution",
                "productivity_metric",
                "user_session"
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_is_one_message_and_a_redelivered_one_none() {
        let live = live();
        connected(&live.connections, "a1", "acme").await;
        let store = BroadcastingStore::new(Arc::new(InMemoryStore::new()), live.broadcaster.clone());
        let body = json!({"command_executions": [
            {"command_name": "a", "execution_time_ms": 1, "status": "success"},
            {"command_name": "b", "execution_time_ms": 2, "status": "error"}]});
        let envelope = Envelope::new(
            &caller("acme", "alice"),
            Source::Import,
            Metrics::from_request(&body, 20).unwrap(),
        );
        store.write_envelope(&envelope).await.unwrap();
        store.write_envelope(&envelope).await.unwrap();
        live.broadcaster.flush(Duration::from_secs(5)).await;
        let sent = live.pusher.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].1["kind"], "batch");
        assert_eq!(sent[0].1["metric"]["new"]["command_executions"], 2);
    }

    #[tokio::test]
    async fn an_unreadable_connection_table_never_fails_the_write() {
        struct Broken;
        #[async_trait]
        impl Connections for Broken {
            async fn add(&self, _: &Connection) -> Result<(), LiveError> {
                Err(LiveError::new("down"))
            }
            async fn remove(&self, _: &str) -> Result<(), LiveError> {
                Err(LiveError::new("down"))
            }
            async fn of_org(&self, _: &OrgId) -> Result<Vec<Listed>, LiveError> {
                Err(LiveError::new("down"))
            }
        }
        let broadcaster = Broadcaster::new(Arc::new(Broken), Arc::new(RecordingPusher::default()));
        let inner = Arc::new(InMemoryStore::new());
        let store = BroadcastingStore::new(inner.clone(), broadcaster.clone());
        let stored = store
            .insert_command_execution(&caller("acme", "alice"), &command())
            .await;
        assert!(stored.is_ok());
        broadcaster.flush(Duration::from_secs(5)).await;
        assert_eq!(inner.command_executions(&OrgId::parse("acme").unwrap()).len(), 1);
        let report = broadcaster
            .deliver(&OrgId::parse("acme").unwrap(), &serde_json::json!({}))
            .await;
        assert_eq!(report.failed, 1);
    }

    #[test]
    fn live_updates_need_both_settings_or_neither() {
        let config = |pairs: &[(&str, &str)]| LiveConfig::from_env(&Env::from_pairs(pairs.iter().copied()));
        assert_eq!(config(&[]).unwrap(), None);
        let table_only = config(&[("CONNECTIONS_TABLE_NAME", "c")]).unwrap_err();
        assert!(table_only.to_string().contains("LIVE_UPDATES_ENDPOINT"), "{table_only}");
        let endpoint_only = config(&[("LIVE_UPDATES_ENDPOINT", "https://x")]).unwrap_err();
        assert!(
            endpoint_only.to_string().contains("CONNECTIONS_TABLE_NAME"),
            "{endpoint_only}"
        );
        assert!(config(&[("CONNECTIONS_TABLE_NAME", "c"), ("LIVE_UPDATES_ENDPOINT", "wss://x")]).is_err());
        let both = config(&[
            ("CONNECTIONS_TABLE_NAME", "c"),
            ("LIVE_UPDATES_ENDPOINT", "https://x/dev"),
        ])
        .unwrap();
        assert_eq!(both.unwrap().endpoint, "https://x/dev");
    }
}
