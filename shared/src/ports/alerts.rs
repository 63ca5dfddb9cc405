//! The alerts port: the durable state of each organization's alerts (snapshots of its
//! aggregates, each condition's state), and the webhook that is told of changes.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::domain::alerts::{AlertRules, Condition, Evidence, Notice};
use crate::domain::ids::OrgId;

pub use crate::ports::store::StoreError;

/// What one evaluation of an organization found and changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The window's evidence per condition; `None` while there is no baseline (the first runs
    /// after a webhook is set, or after a gap of more than two windows).
    pub evidence: Option<[(Condition, Evidence); 2]>,
    /// The messages owed that this run has claimed and must now deliver (another run holding
    /// one keeps it).
    pub claimed: Vec<Notice>,
}

#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Every registered organization.
    async fn organizations(&self) -> Result<Vec<OrgId>, StoreError>;

    /// One run for `org` at `now`, in one transaction: snapshots the current and previous hours'
    /// aggregates, differences them against the baseline about one `window` old, moves each
    /// condition's state on that evidence, and claims the owed messages for `hold` (a run that
    /// dies mid-delivery leaves them to a run after `hold`).
    async fn evaluate(
        &self,
        org: &OrgId,
        rules: &AlertRules,
        now: DateTime<Utc>,
        window: Duration,
        hold: Duration,
    ) -> Result<Evaluation, StoreError>;

    /// The notice reached the webhook: nothing is owed any more (unless the condition changed
    /// again meanwhile, which stays owed).
    async fn delivered(&self, org: &OrgId, notice: &Notice, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// The notice did not reach the webhook: it stays owed and is released for the next run.
    async fn delivery_failed(&self, org: &OrgId, notice: &Notice, error: &str) -> Result<(), StoreError>;
}

/// Why a webhook message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The URL, or an address its host resolves to, is not allowed: nothing was sent.
    #[error("webhook refused: {0}")]
    Refused(String),
    /// Sent, but every attempt failed (status, timeout or connection error).
    #[error("webhook failed after {attempts} attempt(s): {last}")]
    Failed { attempts: u32, last: String },
}

/// Posts signed JSON to an organization's webhook.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Posts `body` to `url`, signed with `secret`; retried within the call on 5xx, 408, 429,
    /// timeouts and connection errors. Returns the number of attempts it took.
    async fn send(&self, url: &str, secret: &str, body: &[u8]) -> Result<u32, DeliveryError>;
}
