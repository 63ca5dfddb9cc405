//! The storage port: what the functions ask of a metric store, and what it answers.

use crate::domain::batch::Envelope;
use crate::domain::identified::Identified;
use crate::domain::ids::Caller;
use crate::domain::kind::PerKind;
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{SessionActivity, SessionChange, SessionEnd, SessionStart};
use crate::domain::summary::{AggregateRow, SummaryQuery};
use crate::domain::usage::{UsageExport, UsageWritten};
use async_trait::async_trait;
use std::time::Duration;
use uuid::Uuid;

pub use crate::domain::metrics::Stored;

pub use crate::domain::hooks::{HookReceipt, KeptHookEvent, TOOL_USE_EVENTS};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time: worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The id is already used by another user of the organization: nothing was written, and
    /// nothing is said about the other record.
    #[error("id already used by another user")]
    IdTaken,
    /// The database refused the data itself (a data exception or a constraint): sending it
    /// again can never succeed. `field` names the column when the server says which.
    #[error("database refused the record: {reason}")]
    Rejected { field: Option<String>, reason: String },
    /// Anything else: a bug or a broken schema.
    #[error("database error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether the same write can never succeed (the batch worker forwards it to the
    /// dead-letter queue at once instead of retrying it).
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::IdTaken | StoreError::Rejected { .. })
    }
}

/// The 409 answer to an id another user of the organization has taken.
pub const ID_TAKEN_MESSAGE: &str = "This id is already used: choose another id";

#[async_trait]
pub trait MetricStore: Send + Sync {
    /// Stores one command execution in the caller's organization under its id; when
    /// a record with that id exists already, nothing is written and the stored one is returned.
    /// The other inserts behave the same way.
    async fn insert_command_execution(
        &self,
        caller: &Caller,
        metric: &Identified<CommandExecution>,
    ) -> Result<Stored, StoreError>;

    async fn insert_agent_interaction(
        &self,
        caller: &Caller,
        metric: &Identified<AgentInteraction>,
    ) -> Result<Stored, StoreError>;

    async fn insert_productivity_metric(
        &self,
        caller: &Caller,
        metric: &Identified<ProductivityMetric>,
    ) -> Result<Stored, StoreError>;

    /// Starts a session for the caller, under its id.
    async fn start_session(&self, caller: &Caller, start: &Identified<SessionStart>) -> Result<Stored, StoreError>;

    /// Records activity on one of the caller's active sessions.
    async fn update_session(
        &self,
        caller: &Caller,
        id: Uuid,
        activity: &SessionActivity,
    ) -> Result<SessionChange, StoreError>;

    /// Completes one of the caller's sessions; the server computes its end and duration.
    async fn end_session(&self, caller: &Caller, end: &SessionEnd) -> Result<SessionChange, StoreError>;

    /// Marks every organization's sessions without activity for `idle` as abandoned;
    /// returns how many.
    async fn abandon_idle_sessions(&self, idle: Duration) -> Result<u64, StoreError>;

    /// Writes every metric of the envelope (all with ids) in one transaction, skipping ids
    /// already stored; returns how many rows of each kind were new.
    async fn write_envelope(&self, envelope: &Envelope) -> Result<PerKind<u64>, StoreError>;

    /// The ids of the envelope's metrics, per kind, that are stored as another
    /// user's: [`MetricStore::write_envelope`] skipped them, so they were not written.
    async fn ids_taken_by_others(&self, envelope: &Envelope) -> Result<PerKind<Vec<Uuid>>, StoreError>;

    /// Keeps a hook event once per id (a repeat writes nothing) in one round trip.
    async fn keep_hook_event(&self, caller: &Caller, event: &KeptHookEvent<'_>) -> Result<HookReceipt, StoreError>;

    /// Keeps an OTLP export's points and events for the caller, each once per id, atomically:
    /// cumulative points become deltas against their series' last stored point (one writer per
    /// series at a time), newly stored points and events are added to the usage aggregates, and
    /// the sessions they name are started if new and marked active. Returns what was new.
    async fn write_usage(&self, caller: &Caller, export: &UsageExport) -> Result<UsageWritten, StoreError>;

    /// The caller's organization's rolling aggregates over the query's span, summed per group
    /// and kind: the `limit + 1` first groups (busiest first, or in time order for hour and
    /// day), so the caller can tell whether groups were left out.
    async fn aggregates(&self, caller: &Caller, query: &SummaryQuery) -> Result<Vec<AggregateRow>, StoreError>;
}
