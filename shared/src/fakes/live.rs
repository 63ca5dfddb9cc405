//! In-memory connections and a recording pusher, for unit tests of the broadcaster and the
//! connection function.

use crate::domain::ids::OrgId;
use crate::lock;
use crate::ports::live::{Connection, Connections, Delivery, Listed, LiveError, Pusher};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Mutex;

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
                user: Some(c.user.to_string()),
                role: c.role,
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
