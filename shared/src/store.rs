//! The port through which handlers store metrics, and an in-memory implementation for tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{ApiError, Dependency};
use crate::ids::{Caller, OrgId};
use crate::metrics::CommandExecution;

/// What the API returns for a stored record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time: worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a broken schema.
    #[error("database error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => ApiError::Unavailable {
                dependency: Dependency::Database,
                detail,
            },
            StoreError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

#[async_trait]
pub trait MetricStore: Send + Sync {
    /// Stores one command execution in the caller's organization. `metric.id` must be set; when
    /// a record with that id exists already, nothing is written and the stored one is returned.
    async fn insert_command_execution(
        &self,
        caller: &Caller,
        metric: &CommandExecution,
    ) -> Result<Stored, StoreError>;
}

/// Keeps records in memory, per organization; for unit tests of handlers.
#[derive(Default)]
pub struct InMemoryStore {
    commands: Mutex<HashMap<OrgId, Vec<(CommandExecution, Stored)>>>,
    unavailable: bool,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose database is down.
    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    pub fn command_executions(&self, org: &OrgId) -> Vec<CommandExecution> {
        let commands = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        commands
            .get(org)
            .map(|rows| rows.iter().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl MetricStore for InMemoryStore {
    async fn insert_command_execution(
        &self,
        caller: &Caller,
        metric: &CommandExecution,
    ) -> Result<Stored, StoreError> {
        if self.unavailable {
            return Err(StoreError::Unavailable(
                "in-memory store set to unavailable".into(),
            ));
        }
        let id = metric
            .id
            .ok_or_else(|| StoreError::Internal("metric without id".into()))?;
        let mut commands = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        let rows = commands.entry(caller.org.clone()).or_default();
        if let Some((_, stored)) = rows.iter().find(|(m, _)| m.id == Some(id)) {
            return Ok(stored.clone());
        }
        let stored = Stored {
            id,
            created_at: Utc::now(),
        };
        rows.push((metric.clone(), stored.clone()));
        Ok(stored)
    }
}

impl Stored {
    /// The response's `data`: `{id, created_at}`.
    pub fn data(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "created_at": self.created_at })
    }
}
