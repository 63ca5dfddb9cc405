//! The application: the state each function builds once per container from its configuration,
//! wiring adapters to ports; the live-update broadcaster; the Lambda glue; health checks; settings; API-key
//! management.
//!
//! May import every layer: this is where they meet.

pub mod alerts;
pub mod health;
pub mod hooks;
pub mod in_flight;
pub mod keys;
pub mod lambda;
pub mod live;
pub mod otlp;
pub mod settings;

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::adapters::postgres::{Database, PgStore};
use crate::app::live::{Broadcaster, BroadcastingStore};
use crate::config::{ConfigError, DatabaseConfig, Env};
use crate::http::api::Api;
use crate::ports::store::MetricStore;

pub struct App {
    pub api: Api,
    pub store: Arc<dyn MetricStore>,
    /// Live updates of what `store` writes, when configured.
    pub live: Option<Arc<Broadcaster>>,
}

impl App {
    pub fn new(api: Api, store: Arc<dyn MetricStore>) -> Self {
        Self { api, store, live: None }
    }

    /// The real adapters (PostgreSQL, DynamoDB, API Gateway's management API) configured from `env`.
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let storage = Storage::from_env(env, aws)?;
        Ok(Self {
            api: api_from_env(env, aws)?,
            store: storage.store,
            live: storage.live,
        })
    }
}

/// What a function that only reads needs: the request pipeline and the store, with no live
/// updates (it writes nothing to publish).
pub struct Reader {
    pub api: Api,
    pub store: Arc<dyn MetricStore>,
}

impl From<App> for Reader {
    /// A writer's pipeline and store, without its live updates (tests build readers this way).
    fn from(app: App) -> Self {
        Self {
            api: app.api,
            store: app.store,
        }
    }
}

impl FromEnv for Reader {
    const API_KEYS: KeyAccess = KeyAccess::Read;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            api: api_from_env(env, aws)?,
            store: Arc::new(PgStore::new(Database::connect(&DatabaseConfig::from_env(env)?)?)),
        })
    }
}

/// The request pipeline with the organizations' settings from DynamoDB.
pub fn api_from_env(env: &Env, aws: &SdkConfig) -> Result<Api, ConfigError> {
    Api::from_env(env, aws, Arc::new(settings::Settings::from_env(env, aws)?))
}

/// The PostgreSQL store, wrapped to publish what it writes when live updates are configured.
pub struct Storage {
    pub store: Arc<dyn MetricStore>,
    pub live: Option<Arc<Broadcaster>>,
}

impl Storage {
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let pg: Arc<dyn MetricStore> = Arc::new(PgStore::new(Database::connect(&DatabaseConfig::from_env(env)?)?));
        let live = Broadcaster::from_env(env, aws)?;
        let store = match &live {
            Some(live) => Arc::new(BroadcastingStore::new(pg, live.clone())),
            None => pg,
        };
        Ok(Self { store, live })
    }
}

/// What a function does with the API keys table (the template test checks its IAM against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// It authenticates no one.
    None,
    /// It authenticates callers, API keys included: it reads a key by id.
    Read,
    /// It manages keys too: creates, lists (through the organization index) and revokes them.
    Manage,
}

/// State a function builds once per container from its environment.
pub trait FromEnv: Sized {
    /// Whether this state's writes publish live updates (it then needs the connections table
    /// and the management API; the template test checks IAM and environment against it).
    const PUBLISHES_LIVE: bool = false;

    /// What this state does with the API keys table.
    const API_KEYS: KeyAccess = KeyAccess::None;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError>;

    /// Live updates this state publishes, which must be sent after each response.
    fn live(&self) -> Option<Arc<Broadcaster>> {
        None
    }
}

impl FromEnv for App {
    const PUBLISHES_LIVE: bool = true;
    const API_KEYS: KeyAccess = KeyAccess::Read;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        App::from_env(env, aws)
    }

    fn live(&self) -> Option<Arc<Broadcaster>> {
        self.live.clone()
    }
}

impl FromEnv for crate::app::health::Health {
    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        crate::app::health::Health::from_env(env, aws)
    }
}

pub use crate::adapters::aws_config;
