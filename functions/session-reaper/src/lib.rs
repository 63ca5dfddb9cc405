//! Scheduled by EventBridge: marks every organization's sessions that have been silent for
//! `SESSION_IDLE_TIMEOUT_MS` (default one hour) as `abandoned`, with `session_end` at their last
//! activity. Claude Code does not always send a session's end.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use shared::adapters::postgres::{Database, PgStore};
use shared::config::{ConfigError, DatabaseConfig, Env, session_idle_timeout};
use shared::ports::store::MetricStore;

/// What this function builds once per container.
pub type State = Reaper;

pub struct Reaper {
    pub store: Arc<dyn MetricStore>,
    pub idle: Duration,
}

impl Reaper {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let db = Database::connect(&DatabaseConfig::from_env(env)?)?;
        Ok(Self {
            store: Arc::new(PgStore::new(db)),
            idle: session_idle_timeout(env)?,
        })
    }

    /// Handles one scheduled event; a database outage fails the invocation so it is retried.
    pub async fn handle(&self, _event: LambdaEvent<Value>) -> Result<Value, Error> {
        let abandoned = self.store.abandon_idle_sessions(self.idle).await?;
        tracing::info!(abandoned, idle_ms = self.idle.as_millis() as u64, "session reaper ran");
        Ok(json!({ "abandoned": abandoned }))
    }
}

impl shared::app::FromEnv for Reaper {
    fn from_env(env: &Env, _aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Reaper::from_env(env)
    }
}

#[cfg(test)]
mod tests {
    use shared::domain::identified::Identify;
    use shared::domain::ids::OrgId;
    use shared::domain::sessions::{SessionStart, SessionStatus};
    use shared::fakes::a_working_service;
    use shared::fakes::store::InMemoryStore;

    use super::*;

    const EVENT: &str = include_str!("../../../events/session-reaper.json");

    fn event() -> LambdaEvent<Value> {
        LambdaEvent::new(serde_json::from_str(EVENT).unwrap(), lambda_runtime::Context::default())
    }

    #[tokio::test]
    async fn silent_sessions_are_abandoned_and_recent_ones_kept() {
        let given = a_working_service();
        let caller = shared::domain::ids::Caller::member(
            OrgId::parse("acme").unwrap(),
            shared::domain::ids::UserId::parse("alice").unwrap(),
        );
        let start = SessionStart::from_json(&json!({})).unwrap().identified();
        given.store.start_session(&caller, &start).await.unwrap();

        let patient = Reaper {
            store: given.store.clone(),
            idle: Duration::from_secs(3600),
        };
        assert_eq!(patient.handle(event()).await.unwrap()["abandoned"], 0);

        tokio::time::sleep(Duration::from_millis(5)).await;
        let strict = Reaper {
            store: given.store.clone(),
            idle: Duration::from_millis(1),
        };
        assert_eq!(strict.handle(event()).await.unwrap()["abandoned"], 1);
        let session = &given.store.sessions(&caller.org)[0];
        assert_eq!(session.status, SessionStatus::Abandoned);
        assert!(session.session_end.is_some());
    }

    #[tokio::test]
    async fn a_database_outage_fails_the_invocation() {
        let reaper = Reaper {
            store: Arc::new(InMemoryStore::unavailable()),
            idle: Duration::from_secs(1),
        };
        assert!(reaper.handle(event()).await.is_err());
    }
}
