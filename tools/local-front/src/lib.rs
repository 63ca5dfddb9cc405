//! The local front: serves `template.yaml`'s HTTP API routes on 127.0.0.1 by calling each
//! function's handler in process, the way API Gateway and the Lambda runtime would, and runs the
//! template's scheduled functions at their rates.

pub mod gateway;
pub mod keys;
pub mod live;
pub mod poller;
pub mod provision;
pub mod routes;
pub mod runtime_api;
pub mod scheduler;
pub mod token;
pub mod webhook_receiver;

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use batch::BatchApp;
use batch_worker::Worker;
use claude_code_hook::HookApp;
use gateway::{Gateway, Handler};
use live::LiveFront;
use live_connection::LiveConnection;
use retention::RetentionJob;
use scheduler::Job;
use session_reaper::Reaper;
use shared::App;
use shared::app::Reader;
use shared::app::health::Health;
use shared::app::keys::KeyAdmin;
use shared::app::live::LiveConfig;
use shared::app::otlp::OtlpApp;
use shared::app::settings::SettingsAdmin;
use shared::app::{FromEnv, KeyAccess};
use shared::config::{ConfigError, Env};
use user_erase::Eraser;

/// A function of the template, with what its crate's `State` says of it (`FromEnv`): whether it
/// publishes live updates and what it does with the API keys table. The template test checks
/// each function's IAM and environment against it, and the local front feeds the same states.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    pub name: &'static str,
    pub publishes_live: bool,
    pub api_keys: KeyAccess,
}

/// The [`Function`] `$name` whose crate's state is `$state`.
macro_rules! function {
    ($name:literal, $state:ty) => {
        Function {
            name: $name,
            publishes_live: <$state as FromEnv>::PUBLISHES_LIVE,
            api_keys: <$state as FromEnv>::API_KEYS,
        }
    };
}

/// Every function of the template.
pub fn functions() -> [Function; 26] {
    [
        function!("command-execution", command_execution::State),
        function!("agent-interaction", agent_interaction::State),
        function!("productivity", productivity::State),
        function!("session-start", session_start::State),
        function!("session-update", session_update::State),
        function!("session-end", session_end::State),
        function!("claude-code-hook", claude_code_hook::State),
        function!("otlp-metrics", otlp_metrics::State),
        function!("otlp-logs", otlp_logs::State),
        function!("metrics-summary", metrics_summary::State),
        function!("batch", batch::State),
        function!("batch-worker", batch_worker::State),
        function!("health", health::State),
        function!("dashboard", dashboard::State),
        function!("session-reaper", session_reaper::State),
        function!("alerts", alerts::State),
        function!("migrate", migrate::State),
        function!("live-connection", live_connection::State),
        function!("api-key-create", api_key_create::State),
        function!("api-key-list", api_key_list::State),
        function!("api-key-revoke", api_key_revoke::State),
        function!("settings-get", settings_get::State),
        function!("settings-put", settings_put::State),
        function!("settings-patch", settings_patch::State),
        // Data lifecycle.
        function!("retention", retention::State),
        function!("user-erase", user_erase::State),
    ]
}

/// The functions whose writes publish live updates.
pub fn live_writers() -> Vec<&'static str> {
    functions()
        .into_iter()
        .filter(|function| function.publishes_live)
        .map(|function| function.name)
        .collect()
}

/// `template.yaml`, compiled in, so the routes served are the routes deployed.
pub const TEMPLATE: &str = include_str!("../../../template.yaml");

/// What the functions of the template need, built once, as each Lambda container would.
pub struct Stack {
    pub app: Arc<App>,
    pub hook: Arc<HookApp>,
    /// Both OTLP routes share one state, as each of their containers builds it.
    pub otlp: Arc<OtlpApp>,
    pub health: Arc<Health>,
    pub reaper: Arc<Reaper>,
    /// The alerts function's state (scheduled every minute).
    pub alerts: Arc<alerts::State>,
    pub batch: Arc<BatchApp>,
    pub worker: Arc<Worker>,
    /// The WebSocket API's connection function, when live updates are configured.
    pub live: Option<Arc<LiveConnection>>,
    /// The summary's state: it reads, and publishes nothing.
    pub reader: Arc<Reader>,
    /// The key routes' state.
    pub keys: Arc<KeyAdmin>,
    /// The settings routes' state.
    pub settings: Arc<SettingsAdmin>,
    /// The scheduled retention.
    pub retention: Arc<RetentionJob>,
    /// The erasure route's state.
    pub eraser: Arc<Eraser>,
    /// The dashboard's page and files.
    pub dashboard: Arc<dashboard::State>,
    /// Origins whose pages may read the API (`ALLOWED_ORIGINS`, comma-separated): the gateway
    /// answers their CORS requests as the template's `CorsConfiguration` makes API Gateway do.
    pub allowed_origins: Vec<String>,
}

impl Stack {
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let app = Arc::new(App::from_env(env, aws)?);
        Ok(Self {
            hook: Arc::new(HookApp::around(app.clone(), env)?),
            otlp: Arc::new(OtlpApp::around(app.clone(), env)?),
            app,
            health: Arc::new(Health::from_env(env, aws)?),
            reaper: Arc::new(Reaper::from_env(env)?),
            alerts: Arc::new(<alerts::State as FromEnv>::from_env(env, aws)?),
            reader: Arc::new(Reader::from_env(env, aws)?),
            keys: Arc::new(KeyAdmin::from_env(env, aws)?),
            settings: Arc::new(SettingsAdmin::from_env(env, aws)?),
            retention: Arc::new(RetentionJob::from_env(env, aws)?),
            eraser: Arc::new(Eraser::from_env(env, aws)?),
            dashboard: Arc::new(<dashboard::State as FromEnv>::from_env(env, aws)?),
            allowed_origins: gateway::allowed_origins(env.optional("ALLOWED_ORIGINS").as_deref()),
            batch: Arc::new(BatchApp::from_env(env, aws)?),
            worker: Arc::new(Worker::from_env(env, aws)?),
            live: match LiveConfig::from_env(env)? {
                Some(_) => Some(Arc::new(LiveConnection::from_env(env, aws)?)),
                None => None,
            },
        })
    }

    /// The template's HTTP routes, and the WebSocket API when live updates are configured.
    pub fn gateway(&self) -> Result<Gateway, String> {
        let gateway = Gateway::new(TEMPLATE, handlers(self))?.with_allowed_origins(self.allowed_origins.clone());
        Ok(match &self.live {
            Some(connection) => gateway.with_live(LiveFront::new(connection.clone())),
            None => gateway,
        })
    }
}

/// Wraps a function crate's `handle(&State, Request)` as a [`Handler`].
macro_rules! handler {
    ($state:expr, $handle:path) => {{
        let state = $state.clone();
        Arc::new(move |req| {
            let state = state.clone();
            Box::pin(async move { $handle(&state, req).await }) as lambda_http::BoxFuture<'static, _>
        }) as Handler
    }};
}

/// Every HTTP function's handler, by binary name.
pub fn handlers(stack: &Stack) -> HashMap<String, Handler> {
    HashMap::from([
        (
            "command-execution".to_owned(),
            handler!(stack.app, command_execution::handle),
        ),
        (
            "agent-interaction".to_owned(),
            handler!(stack.app, agent_interaction::handle),
        ),
        ("productivity".to_owned(), handler!(stack.app, productivity::handle)),
        ("session-start".to_owned(), handler!(stack.app, session_start::handle)),
        ("session-update".to_owned(), handler!(stack.app, session_update::handle)),
        ("session-end".to_owned(), handler!(stack.app, session_end::handle)),
        ("health".to_owned(), handler!(stack.health, health::handle)),
        ("dashboard".to_owned(), handler!(stack.dashboard, dashboard::handle)),
        ("batch".to_owned(), handler!(stack.batch, batch::handle)),
        (
            "metrics-summary".to_owned(),
            handler!(stack.reader, metrics_summary::handle),
        ),
        (
            "claude-code-hook".to_owned(),
            handler!(stack.hook, claude_code_hook::handle),
        ),
        ("otlp-metrics".to_owned(), handler!(stack.otlp, otlp_metrics::handle)),
        ("otlp-logs".to_owned(), handler!(stack.otlp, otlp_logs::handle)),
        (
            "api-key-create".to_owned(),
            handler!(stack.keys, api_key_create::handle),
        ),
        ("api-key-list".to_owned(), handler!(stack.keys, api_key_list::handle)),
        (
            "settings-get".to_owned(),
            handler!(stack.settings, settings_get::handle),
        ),
        (
            "settings-put".to_owned(),
            handler!(stack.settings, settings_put::handle),
        ),
        (
            "settings-patch".to_owned(),
            handler!(stack.settings, settings_patch::handle),
        ),
        (
            "api-key-revoke".to_owned(),
            handler!(stack.keys, api_key_revoke::handle),
        ),
        ("user-erase".to_owned(), handler!(stack.eraser, user_erase::handle)),
    ])
}

/// Wraps a scheduled function crate's `handle(&self, LambdaEvent)` as a [`Job`].
macro_rules! job {
    ($state:expr) => {{
        let state = $state.clone();
        Arc::new(move || {
            let state = state.clone();
            Box::pin(async move { state.handle(scheduler::scheduled_event()).await })
                as lambda_http::BoxFuture<'static, _>
        }) as Job
    }};
}

/// Every scheduled function's job, by binary name: what the scheduler runs at the template's
/// rates and `local-front invoke <name>` runs now. A new scheduled function is one line here.
pub fn jobs(stack: &Stack) -> HashMap<String, Job> {
    HashMap::from([
        ("session-reaper".to_owned(), job!(stack.reaper)),
        ("retention".to_owned(), job!(stack.retention)),
        ("alerts".to_owned(), alerts_job(stack)),
    ])
}

/// The alerts function's scheduled run (its crate's `handle` is a free function).
pub fn alerts_job(stack: &Stack) -> Job {
    let state = stack.alerts.clone();
    Arc::new(move || {
        let state = state.clone();
        Box::pin(async move { alerts::handle(&state, scheduler::scheduled_event()).await })
            as lambda_http::BoxFuture<'static, _>
    })
}
