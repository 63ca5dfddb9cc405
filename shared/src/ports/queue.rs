//! The queue ports: where a batch envelope is queued, and where a message that can never be
//! written goes.

use crate::domain::batch::Envelope;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("queue unavailable: {0}")]
pub struct QueueUnavailable(pub String);

#[async_trait]
pub trait BatchQueue: Send + Sync {
    /// Queues one envelope whose message body is `message`; returns only once SQS has it.
    async fn send(&self, envelope: &Envelope, message: &str) -> Result<(), QueueUnavailable>;
}

/// Where a message goes that can never be processed, with the reason for an operator.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn forward(&self, message_id: &str, body: &str, reason: &str) -> Result<(), QueueUnavailable>;
}
