//! SQS: the batch queue and the dead-letter queue, through the AWS SDK.

use crate::domain::batch::Envelope;
use crate::domain::validation::Choice;
use crate::ports::queue::{BatchQueue, DeadLetters, QueueUnavailable};
use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;
use std::collections::HashMap;
use std::time::Duration;

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
        let call = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(if body.is_empty() { "(empty)" } else { body })
            .set_message_attributes(Some(dead_letter_attributes(message_id, reason)))
            .send();
        within(self.timeout, call).await.map(|_| ())
    }
}

/// A dead letter's attributes: why it failed (the first [`MAX_REASON_CHARS`] characters), the
/// message it was and when.
fn dead_letter_attributes(message_id: &str, reason: &str) -> HashMap<String, MessageAttributeValue> {
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    HashMap::from([
        ("failure_reason".to_owned(), attribute(reason)),
        ("original_message_id".to_owned(), attribute(message_id)),
        ("failed_at".to_owned(), attribute(chrono::Utc::now().to_rfc3339())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::{MESSAGE_ATTRIBUTES_RESERVE, Metrics, Source};
    use crate::domain::ids::{Caller, MAX_ORG_ID_LEN, OrgId, UserId};

    /// What SQS counts of attributes against a message's size: each one's name, data type and
    /// value.
    fn counted(attributes: &HashMap<String, MessageAttributeValue>) -> usize {
        attributes
            .iter()
            .map(|(name, value)| name.len() + value.data_type().len() + value.string_value().map_or(0, str::len))
            .sum()
    }

    #[test]
    fn the_largest_attributes_fit_the_room_an_envelope_leaves_them() {
        let org = OrgId::parse(&"o".repeat(MAX_ORG_ID_LEN)).unwrap();
        let caller = Caller::member(org, UserId::parse("u").unwrap());
        let envelope = Envelope::new(&caller, Source::Import, Metrics::default());
        assert!(counted(&envelope_attributes(&envelope)) <= MESSAGE_ATTRIBUTES_RESERVE);
        // A dead letter's reason of four-byte characters, past the characters kept
        let reason = "\u{1F4A5}".repeat(MAX_REASON_CHARS + 10);
        let message_id = "m".repeat(100);
        let dead = dead_letter_attributes(&message_id, &reason);
        assert_eq!(
            dead["failure_reason"].string_value().unwrap().chars().count(),
            MAX_REASON_CHARS
        );
        assert!(counted(&dead) <= MESSAGE_ATTRIBUTES_RESERVE, "{}", counted(&dead));
    }
}
