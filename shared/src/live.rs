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

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::adapters::signing::Signer;
use crate::adapters::tls::HttpClient;
use crate::config::{ConfigError, Env};
use crate::domain::batch::{Envelope, KINDS};
use crate::domain::ids::{Caller, OrgId, UserId};
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{SessionActivity, SessionChange, SessionEnd, SessionStart};
use crate::domain::summary::{AggregateRow, SummaryQuery};
use crate::lock;
use crate::ratelimit::dynamo_http::{DynamoError, DynamoHttp};
use crate::store::{HookReceipt, KeptHookEvent, MetricStore, StoreError, Stored};

/// The `type` of every message pushed to a connection.
pub const MESSAGE_TYPE: &str = "metric_update";
/// The connections table's index from an organization to its connections.
pub const ORG_INDEX: &str = "by-organization";
/// API Gateway closes a WebSocket connection after two hours at most; the table's TTL
/// removes what a lost `$disconnect` left behind.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// How long a Lambda container stays awake after a response to finish its pushes.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LiveError(String);

impl LiveError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An open WebSocket connection, bound to the organization of the token it opened with.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub org: OrgId,
    pub user: UserId,
    /// Unix seconds after which the connection receives nothing and is closed: its token's
    /// `exp`, or two hours after it opened if that comes first (also the table's TTL).
    pub expires_at: i64,
}

impl Connection {
    /// A connection opened now, with no token expiry to honour (two hours).
    pub fn opened_now(id: &str, caller: &Caller) -> Self {
        Self::opened(id, caller, None)
    }

    /// A connection opened now by a token expiring at `token_expires_at` (Unix seconds).
    pub fn opened(id: &str, caller: &Caller, token_expires_at: Option<i64>) -> Self {
        let longest = chrono::Utc::now().timestamp() + CONNECTION_LIFETIME.as_secs() as i64;
        Self {
            id: id.to_owned(),
            org: caller.org.clone(),
            user: caller.user.clone(),
            expires_at: token_expires_at.map_or(longest, |exp| exp.min(longest)),
        }
    }
}

/// A connection as the organization index lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub id: String,
    pub expires_at: i64,
}

impl Listed {
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

/// Where open connections are kept.
#[async_trait]
pub trait Connections: Send + Sync {
    async fn add(&self, connection: &Connection) -> Result<(), LiveError>;
    async fn remove(&self, connection_id: &str) -> Result<(), LiveError>;
    /// The organization's connections, expired ones included (TTL deletes them only
    /// eventually): the caller skips them, and a delivery closes them.
    async fn of_org(&self, org: &OrgId) -> Result<Vec<Listed>, LiveError>;

    /// How many of the organization's connections have not expired.
    async fn open_count(&self, org: &OrgId) -> Result<usize, LiveError> {
        let now = chrono::Utc::now().timestamp();
        Ok(self.of_org(org).await?.iter().filter(|c| !c.expired(now)).count())
    }
}

/// What became of one message sent to one connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Delivered,
    /// The connection is closed (API Gateway's `GoneException`, HTTP 410).
    Gone,
    Failed(String),
}

/// Sends a message to one connection, or closes it.
#[async_trait]
pub trait Pusher: Send + Sync {
    async fn post(&self, connection_id: &str, message: &str) -> Delivery;
    /// Closes the connection (`DeleteConnection`); [`Delivery::Gone`] when it was closed already.
    async fn close(&self, connection_id: &str) -> Delivery;
}

/// The connections table in DynamoDB: `connection_id` is the key, [`ORG_INDEX`] finds an
/// organization's connections, `expires_at` is the TTL attribute. Spoken to with the direct
/// client the rate limiter uses, so no SDK client is built for it.
pub struct DynamoConnections {
    dynamo: DynamoHttp,
    table: String,
}

impl DynamoConnections {
    pub fn new(aws: &SdkConfig, table: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            dynamo: DynamoHttp::new(aws)?,
            table: table.into(),
        })
    }

    async fn call(&self, operation: &str, body: Value) -> Result<Value, LiveError> {
        self.dynamo.call(operation, &body).await.map_err(|err| match err {
            DynamoError::Failed(message) => LiveError(message),
            DynamoError::ConditionFailed { .. } => LiveError(format!("{operation}: condition failed")),
        })
    }
}

#[async_trait]
impl Connections for DynamoConnections {
    async fn add(&self, connection: &Connection) -> Result<(), LiveError> {
        let item = json!({
            "connection_id": {"S": connection.id},
            "org_id": {"S": connection.org.as_str()},
            "user_id": {"S": connection.user.as_str()},
            "expires_at": {"N": connection.expires_at.to_string()},
        });
        self.call("PutItem", json!({"TableName": self.table, "Item": item}))
            .await?;
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> Result<(), LiveError> {
        let key = json!({"connection_id": {"S": connection_id}});
        self.call("DeleteItem", json!({"TableName": self.table, "Key": key}))
            .await?;
        Ok(())
    }

    async fn of_org(&self, org: &OrgId) -> Result<Vec<Listed>, LiveError> {
        // The index projects `expires_at`; expired items are listed too, for closing.
        let mut query = json!({
            "TableName": self.table,
            "IndexName": ORG_INDEX,
            "KeyConditionExpression": "org_id = :org",
            "ExpressionAttributeValues": {":org": {"S": org.as_str()}},
        });
        let mut ids = Vec::new();
        loop {
            let page = self.call("Query", query.clone()).await?;
            let items = page["Items"].as_array().map(Vec::as_slice).unwrap_or_default();
            ids.extend(items.iter().filter_map(|item| {
                Some(Listed {
                    id: item["connection_id"]["S"].as_str()?.to_owned(),
                    // An item without a readable expiry is treated as expired.
                    expires_at: item["expires_at"]["N"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                })
            }));
            match page.get("LastEvaluatedKey") {
                Some(key) if !key.is_null() => query["ExclusiveStartKey"] = key.clone(),
                _ => return Ok(ids),
            }
        }
    }
}

/// API Gateway's management API of one WebSocket stage: `PostToConnection` and
/// `DeleteConnection`, signed for `execute-api`.
pub struct ManagementApi {
    client: HttpClient,
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, without a trailing `/`.
    endpoint: String,
    host: String,
    signer: Signer,
}

/// A push is never worth holding a container for.
const PUSH_TIMEOUT: Duration = Duration::from_millis(1500);

impl ManagementApi {
    /// `endpoint` is the stage's management endpoint (locally, the local front).
    pub fn new(aws: &SdkConfig, endpoint: &str) -> Result<Self, ConfigError> {
        let (_, host) = crate::adapters::signing::endpoint(endpoint, "LIVE_UPDATES_ENDPOINT")?;
        Ok(Self {
            client: crate::adapters::tls::http_client("LIVE_UPDATES_ENDPOINT")?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            host,
            signer: Signer::new(aws)?,
        })
    }

    /// The signed `POST /@connections/{id}` carrying `message`.
    pub fn signed_request(
        &self,
        connection_id: &str,
        message: &str,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        self.signed(http::Method::POST, connection_id, Some(message), credentials, time)
    }

    /// The signed `POST /@connections/{id}` carrying `message`, or with no message the signed
    /// `DELETE /@connections/{id}`.
    pub fn signed(
        &self,
        method: http::Method,
        connection_id: &str,
        message: Option<&str>,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let uri = format!("{}/@connections/{}", self.endpoint, path_segment(connection_id));
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, &self.host);
        if message.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder.body(()).map_err(|e| e.to_string())?;
        let payload = message.unwrap_or_default().as_bytes();
        self.signer
            .sign(&mut request, payload, "execute-api", credentials, time)?;
        let (parts, ()) = request.into_parts();
        Ok(http::Request::from_parts(
            parts,
            Full::new(Bytes::copy_from_slice(payload)),
        ))
    }

    async fn send(&self, connection_id: &str, message: Option<&str>) -> Result<http::StatusCode, String> {
        let credentials = self.signer.credentials().await?;
        let method = if message.is_some() {
            http::Method::POST
        } else {
            http::Method::DELETE
        };
        let request = self.signed(method, connection_id, message, &credentials, SystemTime::now())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the (small) answer so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

impl ManagementApi {
    async fn call(&self, operation: &str, connection_id: &str, message: Option<&str>) -> Delivery {
        match tokio::time::timeout(PUSH_TIMEOUT, self.send(connection_id, message)).await {
            Ok(Ok(status)) if status.is_success() => Delivery::Delivered,
            Ok(Ok(http::StatusCode::GONE)) => Delivery::Gone,
            Ok(Ok(status)) => Delivery::Failed(format!("{operation} answered {status}")),
            Ok(Err(err)) => Delivery::Failed(format!("{operation}: {err}")),
            Err(_) => Delivery::Failed(format!("{operation}: no answer within {PUSH_TIMEOUT:?}")),
        }
    }
}

/// `id` percent-encoded as one path segment (connection ids end in `=`).
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl Pusher for ManagementApi {
    async fn post(&self, connection_id: &str, message: &str) -> Delivery {
        self.call("PostToConnection", connection_id, Some(message)).await
    }

    async fn close(&self, connection_id: &str) -> Delivery {
        self.call("DeleteConnection", connection_id, None).await
    }
}

/// Where live updates go: `CONNECTIONS_TABLE_NAME` and `LIVE_UPDATES_ENDPOINT` (the WebSocket
/// stage's management endpoint), both or neither.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub connections_table: String,
    pub endpoint: String,
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
            Arc::new(DynamoConnections::new(aws, config.connections_table)?),
            Arc::new(ManagementApi::new(aws, &config.endpoint)?),
        )))
    }

    /// Sends `update` to the organization's connections in the background.
    pub fn publish(self: &Arc<Self>, org: &OrgId, update: Value) {
        let this = self.clone();
        let org = org.clone();
        let task = tokio::spawn(async move {
            this.deliver(&org, &update.to_string()).await;
        });
        let mut pending = lock(&self.pending);
        pending.retain(|task| !task.is_finished());
        pending.push(task);
    }

    /// Sends `message` to every unexpired connection of `org`, concurrently; closes and
    /// forgets expired connections and forgets those that are gone; logs what failed.
    pub async fn deliver(&self, org: &OrgId, message: &str) -> Report {
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
            let message = message.to_owned();
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

/// The message for one stored record: what a dashboard needs to show it, never its payload
/// (arguments, context, metadata).
fn update(caller: &Caller, kind: &str, id: Uuid, summary: Value) -> Value {
    json!({
        "type": MESSAGE_TYPE,
        "organization_id": caller.org.as_str(),
        "user_id": caller.user.as_str(),
        "kind": kind,
        "id": id,
        "metric": summary,
    })
}

pub fn command_execution_update(caller: &Caller, metric: &CommandExecution, stored: &Stored) -> Value {
    update(
        caller,
        "command_execution",
        stored.id,
        json!({
            "command_name": metric.command_name,
            "status": metric.status,
            "execution_time_ms": metric.execution_time_ms,
            "timestamp": metric.timestamp.unwrap_or(stored.created_at),
        }),
    )
}

pub fn agent_interaction_update(caller: &Caller, metric: &AgentInteraction, stored: &Stored) -> Value {
    update(
        caller,
        "agent_interaction",
        stored.id,
        json!({
            "agent_name": metric.agent_name,
            "interaction_type": metric.interaction_type,
            "input_tokens": metric.input_tokens,
            "output_tokens": metric.output_tokens,
            "processing_time_ms": metric.processing_time_ms,
            "success": metric.success,
            "timestamp": metric.timestamp.unwrap_or(stored.created_at),
        }),
    )
}

pub fn productivity_update(caller: &Caller, metric: &ProductivityMetric, stored: &Stored) -> Value {
    update(
        caller,
        "productivity_metric",
        stored.id,
        json!({
            "metric_type": metric.metric_type,
            "value": metric.value,
            "unit": metric.unit,
            "period_start": metric.period_start,
            "period_end": metric.period_end,
        }),
    )
}

fn session_started(caller: &Caller, start: &SessionStart, stored: &Stored) -> Value {
    update(
        caller,
        "user_session",
        stored.id,
        json!({
            "status": "active",
            "session_start": start.session_start.unwrap_or(stored.created_at),
            "session_end": null,
            "total_duration_ms": null,
            "commands_executed": 0,
        }),
    )
}

fn session_update(caller: &Caller, change: &SessionChange) -> Option<Value> {
    let SessionChange::Changed(session) = change else {
        return None;
    };
    Some(update(
        caller,
        "user_session",
        session.id,
        json!({
            "status": session.status,
            "session_start": session.session_start,
            "session_end": session.session_end,
            "total_duration_ms": session.total_duration_ms,
            "commands_executed": session.commands_executed,
        }),
    ))
}

/// One message per batch envelope: how many records of each kind it added.
pub fn batch_update(envelope: &Envelope, new: &[u64; 4]) -> Value {
    let counts: HashMap<&str, u64> = KINDS.iter().copied().zip(new.iter().copied()).collect();
    json!({
        "type": MESSAGE_TYPE,
        "organization_id": envelope.organization_id.as_str(),
        "user_id": envelope.user_id.as_str(),
        "kind": "batch",
        "id": envelope.batch_id,
        "metric": { "new": counts },
    })
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
    async fn insert_command_execution(&self, caller: &Caller, metric: &CommandExecution) -> Result<Stored, StoreError> {
        let stored = self.inner.insert_command_execution(caller, metric).await?;
        self.publish_new(&caller.org, &stored, || {
            command_execution_update(caller, metric, &stored)
        });
        Ok(stored)
    }

    async fn insert_agent_interaction(&self, caller: &Caller, metric: &AgentInteraction) -> Result<Stored, StoreError> {
        let stored = self.inner.insert_agent_interaction(caller, metric).await?;
        self.publish_new(&caller.org, &stored, || {
            agent_interaction_update(caller, metric, &stored)
        });
        Ok(stored)
    }

    async fn insert_productivity_metric(
        &self,
        caller: &Caller,
        metric: &ProductivityMetric,
    ) -> Result<Stored, StoreError> {
        let stored = self.inner.insert_productivity_metric(caller, metric).await?;
        self.publish_new(&caller.org, &stored, || productivity_update(caller, metric, &stored));
        Ok(stored)
    }

    async fn start_session(&self, caller: &Caller, start: &SessionStart) -> Result<Stored, StoreError> {
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

    async fn write_envelope(&self, envelope: &Envelope) -> Result<[u64; 4], StoreError> {
        let new = self.inner.write_envelope(envelope).await?;
        // A redelivered envelope adds nothing and says nothing.
        if new.iter().any(|&n| n > 0) {
            self.live
                .publish(&envelope.organization_id, batch_update(envelope, &new));
        }
        Ok(new)
    }

    async fn ids_taken_by_others(&self, envelope: &Envelope) -> Result<[Vec<uuid::Uuid>; 4], StoreError> {
        self.inner.ids_taken_by_others(envelope).await
    }

    async fn keep_hook_event(&self, caller: &Caller, event: &KeptHookEvent<'_>) -> Result<HookReceipt, StoreError> {
        self.inner.keep_hook_event(caller, event).await
    }

    async fn aggregates(&self, caller: &Caller, query: &SummaryQuery) -> Result<Vec<AggregateRow>, StoreError> {
        self.inner.aggregates(caller, query).await
    }
}

/// Signals the end of each invocation's handler, so the flush can start.
#[derive(Clone)]
pub struct AfterResponse {
    done: Option<tokio::sync::mpsc::UnboundedSender<()>>,
}

impl AfterResponse {
    /// Signals the end of the handler when dropped — also when the handler panics, so the
    /// extension never waits for a signal that will not come.
    pub fn on_drop(&self) -> Handled {
        Handled(self.done.clone())
    }
}

pub struct Handled(Option<tokio::sync::mpsc::UnboundedSender<()>>);

impl Drop for Handled {
    fn drop(&mut self) {
        if let Some(done) = &self.0 {
            let _ = done.send(());
        }
    }
}

pub type Extension = Pin<Box<dyn Future<Output = Result<(), lambda_extension::Error>> + Send>>;

/// For a Lambda function that publishes live updates: registers an internal extension that,
/// on every invocation, waits for the handler to finish and then for the pending deliveries
/// (at most [`FLUSH_BUDGET`]). Lambda returns the response to the caller as soon as the
/// handler's response is posted, and freezes the container only once the extension is done.
/// Without live updates, nothing is registered and the extension future never ends.
pub async fn after_response(
    live: Option<Arc<Broadcaster>>,
) -> Result<(AfterResponse, Extension), lambda_extension::Error> {
    let Some(live) = live else {
        return Ok((AfterResponse { done: None }, Box::pin(std::future::pending())));
    };
    let (done, handled) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handled = Arc::new(tokio::sync::Mutex::new(handled));
    let extension = lambda_extension::Extension::new()
        // Internal extensions receive only INVOKE events.
        .with_events(&["INVOKE"])
        .with_events_processor(lambda_extension::service_fn(
            move |_event: lambda_extension::LambdaEvent| {
                let (live, handled) = (live.clone(), handled.clone());
                async move {
                    handled.lock().await.recv().await;
                    live.flush(FLUSH_BUDGET).await;
                    Ok::<(), lambda_extension::Error>(())
                }
            },
        ))
        .register()
        .await?;
    Ok((AfterResponse { done: Some(done) }, Box::pin(extension.run())))
}

/// Connections kept in memory, for unit tests.
#[derive(Default)]
pub struct InMemoryConnections {
    connections: Mutex<Vec<Connection>>,
}

impl InMemoryConnections {
    pub fn all(&self) -> Vec<Connection> {
        lock(&self.connections).clone()
    }
}

#[async_trait]
impl Connections for InMemoryConnections {
    async fn add(&self, connection: &Connection) -> Result<(), LiveError> {
        let mut all = lock(&self.connections);
        all.retain(|c| c.id != connection.id);
        all.push(connection.clone());
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> Result<(), LiveError> {
        lock(&self.connections).retain(|c| c.id != connection_id);
        Ok(())
    }

    async fn of_org(&self, org: &OrgId) -> Result<Vec<Listed>, LiveError> {
        Ok(lock(&self.connections)
            .iter()
            .filter(|c| &c.org == org)
            .map(|c| Listed {
                id: c.id.clone(),
                expires_at: c.expires_at,
            })
            .collect())
    }
}

/// A pusher that records what it was asked to send and to close; connections in `gone` answer
/// [`Delivery::Gone`], those in `failing` [`Delivery::Failed`].
#[derive(Default)]
pub struct RecordingPusher {
    pub sent: Mutex<Vec<(String, Value)>>,
    pub closed: Mutex<Vec<String>>,
    pub gone: Mutex<Vec<String>>,
    pub failing: Mutex<Vec<String>>,
}

impl RecordingPusher {
    pub fn sent(&self) -> Vec<(String, Value)> {
        lock(&self.sent).clone()
    }

    pub fn closed(&self) -> Vec<String> {
        lock(&self.closed).clone()
    }
}

#[async_trait]
impl Pusher for RecordingPusher {
    async fn post(&self, connection_id: &str, message: &str) -> Delivery {
        if lock(&self.gone).iter().any(|id| id == connection_id) {
            return Delivery::Gone;
        }
        if lock(&self.failing).iter().any(|id| id == connection_id) {
            return Delivery::Failed("connection refused".into());
        }
        let message = serde_json::from_str(message).unwrap_or(Value::Null);
        lock(&self.sent).push((connection_id.to_owned(), message));
        Delivery::Delivered
    }

    async fn close(&self, connection_id: &str) -> Delivery {
        lock(&self.closed).push(connection_id.to_owned());
        Delivery::Delivered
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::batch::{Metrics, Source};
    use crate::store::InMemoryStore;

    use super::*;

    fn caller(org: &str, user: &str) -> Caller {
        Caller {
            org: OrgId::parse(org).unwrap(),
            user: UserId::parse(user).unwrap(),
        }
    }

    async fn connected(connections: &InMemoryConnections, id: &str, org: &str) {
        connections
            .add(&Connection::opened_now(id, &caller(org, "viewer")))
            .await
            .unwrap();
    }

    fn command() -> CommandExecution {
        let body = json!({"command_name": "cargo-test", "execution_time_ms": 12.5, "status": "success",
                          "command_args": {"token": "never pushed"}});
        CommandExecution::from_json(&body, "").unwrap().with_id()
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
            .deliver(&OrgId::parse("acme").unwrap(), "{\"n\":1}")
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
    async fn gone_connections_are_forgotten_and_failures_do_not_stop_the_others() {
        let live = live();
        for id in ["gone", "failing", "open"] {
            connected(&live.connections, id, "acme").await;
        }
        live.pusher.gone.lock().unwrap().push("gone".into());
        live.pusher.failing.lock().unwrap().push("failing".into());
        let report = live.broadcaster.deliver(&OrgId::parse("acme").unwrap(), "{}").await;
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
        assert_eq!(live.connections.open_count(&viewer.org).await.unwrap(), 1);
        // WHEN a message is delivered to acme
        let report = live.broadcaster.deliver(&viewer.org, "{}").await;
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
        .with_id();
        let productivity = ProductivityMetric::from_json(
            &json!({"metric_type": "completion_rate", "value": 0.5, "unit": "ratio",
                    "period_start": "2026-11-28T09:00:00Z", "period_end": "2026-11-28T10:00:00Z"}),
            "",
        )
        .unwrap()
        .with_id();
        let session = SessionStart::from_json(&json!({})).unwrap().with_id();
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
                Err(LiveError("down".into()))
            }
            async fn remove(&self, _: &str) -> Result<(), LiveError> {
                Err(LiveError("down".into()))
            }
            async fn of_org(&self, _: &OrgId) -> Result<Vec<Listed>, LiveError> {
                Err(LiveError("down".into()))
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
        let report = broadcaster.deliver(&OrgId::parse("acme").unwrap(), "{}").await;
        assert_eq!(report.failed, 1);
    }

    #[test]
    fn the_end_of_a_handler_is_signalled_even_when_it_panics() {
        let (done, mut handled) = tokio::sync::mpsc::unbounded_channel();
        let after = AfterResponse { done: Some(done) };
        drop(after.on_drop());
        assert!(handled.try_recv().is_ok());
        let panicked = std::panic::catch_unwind(|| {
            let _handled = after.on_drop();
            panic!("handler bug");
        });
        assert!(panicked.is_err());
        assert!(handled.try_recv().is_ok(), "the flush is not left waiting");
        assert!(handled.try_recv().is_err(), "one signal per invocation");
    }

    #[test]
    fn pushes_are_signed_for_execute_api_on_the_connections_path() {
        let sdk = SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"),
            ))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let api = ManagementApi::new(&sdk, "https://abc123.execute-api.eu-west-1.amazonaws.com/dev/").unwrap();
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_757_327_400);
        let request = api
            .signed_request("L0SM9cOFvHcCIhw=", "{}", &credentials, time)
            .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://abc123.execute-api.eu-west-1.amazonaws.com/dev/@connections/L0SM9cOFvHcCIhw%3D"
        );
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(
            authorization
                .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250908/eu-west-1/execute-api/aws4_request"),
            "{authorization}"
        );
        assert_eq!(request.headers()["host"], "abc123.execute-api.eu-west-1.amazonaws.com");
        let close = api
            .signed(http::Method::DELETE, "L0SM9cOFvHcCIhw=", None, &credentials, time)
            .unwrap();
        assert_eq!(close.method(), http::Method::DELETE);
        assert!(
            close
                .uri()
                .to_string()
                .ends_with("/dev/@connections/L0SM9cOFvHcCIhw%3D")
        );
        assert!(
            close.headers()["authorization"]
                .to_str()
                .unwrap()
                .contains("/execute-api/aws4_request")
        );
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
