//! The batch queue (SQS) and its dead-letter queue, behind small ports with in-memory fakes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::domain::batch::Envelope;
use crate::domain::validation::Choice;
use crate::http::error::{ApiError, Dependency};

#[derive(Debug, thiserror::Error)]
#[error("queue unavailable: {0}")]
pub struct QueueUnavailable(pub String);

impl From<QueueUnavailable> for ApiError {
    fn from(err: QueueUnavailable) -> Self {
        ApiError::Unavailable {
            dependency: Dependency::Queue,
            detail: err.0,
        }
    }
}

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

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    timeout: Duration,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String, timeout: Duration) -> Self {
        Self { client, url, timeout }
    }
}

/// Attributes that let an operator see whose batch a message is without parsing its body.
pub fn envelope_attributes(envelope: &Envelope) -> HashMap<String, MessageAttributeValue> {
    HashMap::from([
        ("batch_id".to_owned(), attribute(envelope.batch_id.to_string())),
        (
            "organization_id".to_owned(),
            attribute(envelope.organization_id.as_str()),
        ),
        ("source".to_owned(), attribute(envelope.source.as_str())),
    ])
}

fn attribute(value: impl Into<String>) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type and value are set")
}

async fn within<T, E: std::error::Error>(
    timeout: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, QueueUnavailable> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(QueueUnavailable(
            aws_sdk_sqs::error::DisplayErrorContext(err).to_string(),
        )),
        Err(_) => Err(QueueUnavailable(format!("no answer within {timeout:?}"))),
    }
}

#[async_trait]
impl BatchQueue for SqsQueue {
    async fn send(&self, envelope: &Envelope, message: &str) -> Result<(), QueueUnavailable> {
        let call = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(message)
            .set_message_attributes(Some(envelope_attributes(envelope)))
            .send();
        within(self.timeout, call).await.map(|_| ())
    }
}

/// Longest reason kept in a dead letter's attributes.
const MAX_REASON_CHARS: usize = 1000;

pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    url: String,
    timeout: Duration,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, url: String, timeout: Duration) -> Self {
        Self { client, url, timeout }
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    async fn forward(&self, message_id: &str, body: &str, reason: &str) -> Result<(), QueueUnavailable> {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let call = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(if body.is_empty() { "(empty)" } else { body })
            .message_attributes("failure_reason", attribute(reason))
            .message_attributes("original_message_id", attribute(message_id))
            .message_attributes("failed_at", attribute(chrono::Utc::now().to_rfc3339()))
            .send();
        within(self.timeout, call).await.map(|_| ())
    }
}

/// Keeps queued messages in memory; for unit tests.
#[derive(Default)]
pub struct InMemoryQueue {
    messages: Mutex<Vec<String>>,
    unavailable: bool,
}

impl InMemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl BatchQueue for InMemoryQueue {
    async fn send(&self, _envelope: &Envelope, message: &str) -> Result<(), QueueUnavailable> {
        if self.unavailable {
            return Err(QueueUnavailable("in-memory queue set to unavailable".into()));
        }
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.to_owned());
        Ok(())
    }
}

/// Keeps dead letters in memory: (message id, body, reason); for unit tests.
#[derive(Default)]
pub struct InMemoryDeadLetters {
    letters: Mutex<Vec<(String, String, String)>>,
}

impl InMemoryDeadLetters {
    pub fn letters(&self) -> Vec<(String, String, String)> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl DeadLetters for InMemoryDeadLetters {
    async fn forward(&self, message_id: &str, body: &str, reason: &str) -> Result<(), QueueUnavailable> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner()).push((
            message_id.to_owned(),
            body.to_owned(),
            reason.to_owned(),
        ));
        Ok(())
    }
}
