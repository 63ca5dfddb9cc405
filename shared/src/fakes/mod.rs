//! Fixtures for unit tests of handlers (feature `testing`): an [`App`] on in-memory fakes (API
//! keys included), tokens, and requests built from the `events/` fixtures.

mod aggregates;
pub mod api_keys;
pub mod batch_slots;
pub mod contract;
pub mod key_contract;
pub mod lifecycle;
pub mod live;
pub mod queue;
pub mod rate_limit;
pub mod rate_limit_contract;
pub mod settings;
pub mod settings_contract;
pub mod slots_contract;
pub mod store;

use std::sync::Arc;

use http::HeaderValue;
use jsonwebtoken::{EncodingKey, Header, encode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

use crate::App;
use crate::app::settings::Settings;
use crate::config::{AuthConfig, JwtKey, LOCAL_DEV_SECRET, OnStoreError};
use crate::domain::ratelimit::Limits;
use crate::domain::settings::OrganizationSettings;
use crate::fakes::api_keys::InMemoryApiKeys;
use crate::fakes::rate_limit::InMemoryRateLimiter;
use crate::fakes::settings::InMemorySettings;
use crate::fakes::store::InMemoryStore;
use crate::http::api::Api;
use crate::http::api_keys::ApiKeyAuth;
use crate::http::auth::Authenticator;
use crate::ports::rate_limit::RateLimiter;

pub const MAX_BODY_BYTES: usize = 4096;

/// A day-long window, so no request is refilled while a test runs.
pub fn limits(max_requests: u64) -> Limits {
    Limits {
        max_requests,
        window_ms: 86_400_000,
        burst_allowance: 0,
    }
}

/// Keeps the handlers' log lines out of the test output.
pub fn quiet_logs() {
    crate::telemetry::capture_into(Default::default());
}

/// The handler's world: the app, the store behind it, and the API keys it accepts.
pub struct Given {
    pub app: App,
    pub store: Arc<InMemoryStore>,
    pub keys: Arc<InMemoryApiKeys>,
    /// The organizations' stored settings (none: the stage's defaults, made from the limiter's).
    pub settings: Arc<InMemorySettings>,
}

pub fn given(store: InMemoryStore, limiter: impl RateLimiter + 'static, policy: OnStoreError) -> Given {
    quiet_logs();
    let auth = Authenticator::new(&AuthConfig {
        key: JwtKey::Hs256 {
            secret: LOCAL_DEV_SECRET.into(),
        },
        previous: None,
        issuer: None,
        audience: vec![],
        leeway_seconds: 0,
    })
    .expect("test key");
    let keys = Arc::new(InMemoryApiKeys::new());
    let auth = auth.with_api_keys(ApiKeyAuth::new(keys.clone(), std::time::Duration::ZERO));
    let store = Arc::new(store);
    let settings = Arc::new(InMemorySettings::new());
    let source = Arc::new(Settings::new(
        settings.clone(),
        defaults_for(limiter.default_budgets()),
        std::time::Duration::ZERO,
    ));
    let api = Api::new(auth, Arc::new(limiter), source, policy, MAX_BODY_BYTES);
    Given {
        app: App::new(api, store.clone()),
        store,
        keys,
        settings,
    }
}

/// The specification's settings with `budgets` as the stage's rate limits.
pub fn defaults_for(budgets: crate::domain::ratelimit::Budgets) -> OrganizationSettings {
    let limits = serde_json::json!({"rate_limiting": {
        "window_ms": budgets.organization.window_ms,
        "max_requests": budgets.organization.max_requests,
        "burst_allowance": budgets.organization.burst_allowance,
        "user_max_requests": budgets.user.max_requests,
        "user_burst_allowance": budgets.user.burst_allowance,
    }});
    OrganizationSettings::default()
        .with_overrides(&limits)
        .expect("test budgets are valid settings")
}

/// A working service: empty store, 1000 requests a day.
pub fn a_working_service() -> Given {
    given(
        InMemoryStore::new(),
        InMemoryRateLimiter::new(limits(1000)),
        OnStoreError::Allow,
    )
}

/// A member's token signed with the local development secret (the one the `events/` fixtures use).
pub fn token(org: &str, user: &str) -> String {
    sign(json!({"sub": user, "org_id": org, "exp": 4102444800u64}))
}

/// An admin's token (claim `role: admin`).
pub fn admin_token(org: &str, user: &str) -> String {
    token_as(org, user, "admin")
}

/// Like [`token`], with the `role` claim (`admin` or `member`).
pub fn token_as(org: &str, user: &str, role: &str) -> String {
    sign(json!({"sub": user, "org_id": org, "role": role, "exp": 4102444800u64}))
}

fn sign(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(LOCAL_DEV_SECRET.as_bytes()),
    )
    .expect("token")
}

/// An `events/` fixture, as the Lambda runtime would hand it to the handler.
pub fn fixture(event: &str) -> Request {
    lambda_http::request::from_str(event).expect("fixture")
}

/// The fixture with another body and a token for `org`/`user`.
pub fn request(event: &str, org: &str, user: &str, body: &Value) -> Request {
    with_bearer(event, &token(org, user), body)
}

/// Like [`request`], with an admin's token.
pub fn admin_request(event: &str, org: &str, user: &str, body: &Value) -> Request {
    with_bearer(event, &admin_token(org, user), body)
}

/// The fixture with another body and `bearer` (a token or an API key).
pub fn with_bearer(event: &str, bearer: &str, body: &Value) -> Request {
    let mut req = fixture(event);
    *req.body_mut() = Body::from(body.to_string());
    let bearer = HeaderValue::from_str(&format!("Bearer {bearer}")).expect("header");
    req.headers_mut().insert("authorization", bearer);
    req
}

/// Status and JSON body of a response.
pub fn parts(response: lambda_http::Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null),
    )
}

/// The `field`s of a 400 body's `errors`.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The key routes' state on a working service, and the key store behind both its routes and
/// its authentication.
pub fn a_key_admin() -> (crate::app::keys::KeyAdmin, Arc<InMemoryApiKeys>) {
    let given = a_working_service();
    let admin = crate::app::keys::KeyAdmin::new(given.app.api, given.keys.clone());
    (admin, given.keys)
}

/// The settings routes' state on in-memory fakes, and the settings store behind it.
pub fn a_settings_admin() -> (crate::app::settings::SettingsAdmin, Arc<InMemorySettings>) {
    let given = a_working_service();
    let settings = Arc::new(Settings::new(
        given.settings.clone(),
        defaults_for(crate::domain::ratelimit::Budgets {
            organization: limits(1000),
            user: limits(1000),
        }),
        std::time::Duration::ZERO,
    ));
    let admin = crate::app::settings::SettingsAdmin::new(
        given.app.api,
        settings,
        crate::domain::webhook::WebhookPolicy::DEPLOYED,
    );
    (admin, given.settings)
}
