//! A stand-in for Lambda's SQS event source mapping: receives batches from the queue, hands them
//! to the worker as the SQS event Lambda would send, deletes the messages that succeeded, and
//! leaves the reported failures to come back after the visibility timeout (and, after
//! `maxReceiveCount` deliveries, to be moved to the dead-letter queue by SQS itself).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use batch_worker::Worker;
use lambda_runtime::LambdaEvent;
use serde_json::{Map, Value, json};

/// Messages per event (the template's `BatchSize`).
pub const BATCH_SIZE: i32 = 10;

pub struct Poller {
    sqs: Client,
    queue_url: String,
    queue_arn: String,
    worker: Arc<Worker>,
    wait: Duration,
}

impl Poller {
    pub async fn new(sqs: Client, queue_url: String, worker: Arc<Worker>, wait: Duration) -> Result<Self, String> {
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("read {queue_url}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or("queue without ARN")?;
        Ok(Self {
            sqs,
            queue_url,
            queue_arn,
            worker,
            wait,
        })
    }

    /// Polls until the task is dropped.
    pub async fn run(self) {
        loop {
            if let Err(err) = self.poll_once().await {
                tracing::warn!(error = %err, "polling the batch queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// One receive, one invocation of the worker, the deletes; returns how many messages were
    /// received and how many of them the worker reported failed.
    pub async fn poll_once(&self) -> Result<(usize, usize), String> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH_SIZE)
            .wait_time_seconds(self.wait.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| format!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok((0, 0));
        }
        let records: Vec<Value> = messages.iter().map(|m| self.record(m)).collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).map_err(|e| e.to_string())?;
        let failed: HashSet<String> = match self
            .worker
            .handle(LambdaEvent::new(event, lambda_runtime::Context::default()))
            .await
        {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            // The whole invocation failed: every message comes back, as with Lambda.
            Err(err) => {
                tracing::error!(error = %err, "worker invocation failed");
                messages.iter().filter_map(|m| m.message_id.clone()).collect()
            }
        };
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone()?)
                    .build()
                    .ok()
            })
            .collect();
        if !done.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(|e| format!("delete: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        }
        Ok((messages.len(), failed.len()))
    }

    /// The record of an SQS event, as Lambda builds it from a received message.
    fn record(&self, message: &aws_sdk_sqs::types::Message) -> Value {
        let attributes: Map<String, Value> = message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
            .collect();
        let message_attributes: Map<String, Value> = message
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"stringValue": v.string_value(), "dataType": v.data_type()}),
                )
            })
            .collect();
        json!({
            "messageId": message.message_id(),
            "receiptHandle": message.receipt_handle(),
            "body": message.body(),
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": message.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": "us-east-1",
        })
    }
}
