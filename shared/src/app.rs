//! What a single-metric function needs, built once per container.

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::api::Api;
use crate::config::{ConfigError, DatabaseConfig, Env};
use crate::db::{Database, PgStore};
use crate::store::MetricStore;

pub struct App {
    pub api: Api,
    pub store: Arc<dyn MetricStore>,
}

impl App {
    pub fn new(api: Api, store: Arc<dyn MetricStore>) -> Self {
        Self { api, store }
    }

    /// The real adapters (PostgreSQL, DynamoDB) configured from `env`.
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let db = Database::connect(&DatabaseConfig::from_env(env)?)?;
        Ok(Self::new(Api::from_env(env, aws)?, Arc::new(PgStore::new(db))))
    }
}

/// State a function builds once per container from its environment.
pub trait FromEnv: Sized {
    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError>;
}

impl FromEnv for App {
    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        App::from_env(env, aws)
    }
}

impl FromEnv for crate::health::Health {
    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        crate::health::Health::from_env(env, aws)
    }
}

/// The AWS SDK configuration, shared by every client of a container. Endpoints come from the
/// SDK's own `AWS_ENDPOINT_URL*` variables, so the same binary talks to local emulators.
/// One retry at most: a request has a latency budget, and the rate limiter a failure policy.
pub async fn aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        // Calls are small and bounded by our own timeouts; the per-body stall watchdog only
        // costs CPU on every request.
        .stalled_stream_protection(aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled())
        .load()
        .await
}
