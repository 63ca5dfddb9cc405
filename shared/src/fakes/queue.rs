//! In-memory queues, for unit tests of the batch handler and the worker.

use crate::domain::batch::Envelope;
use crate::ports::queue::{BatchQueue, DeadLetters, QueueUnavailable};
use async_trait::async_trait;
use std::sync::Mutex;

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
