//! The WebSocket API's connection routes. `$connect` authenticates the same JWT or API key as
//! the HTTP API — from the `token` query parameter (browsers cannot set headers on a WebSocket)
//! or an `Authorization: Bearer` header — counts against the organization's rate limit (the HTTP
//! routes' limiter and the organization's budgets: 429 when refused), refuses an organization at
//! its cap of open connections (its `live.max_connections` setting, by default
//! `LIVE_MAX_CONNECTIONS_PER_ORG`: 429) and a user at theirs (`LIVE_MAX_CONNECTIONS_PER_USER`,
//! so that one member cannot hold every connection of the organization and lock colleagues'
//! dashboards out: 429); the last tenth of the organization's cap is kept for its admins, so
//! that members at their own caps cannot lock an admin out either. It keeps the connection under the credential's
//! organization until the token or key expires (two hours at most). Any other answer than 200
//! refuses the handshake and keeps nothing. `$disconnect` forgets the connection.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use http::{HeaderMap, HeaderValue};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;
use shared::adapters::dynamodb::DynamoRateLimiter;
use shared::adapters::dynamodb::connections::DynamoConnections;
use shared::app::FromEnv;
use shared::config::{ConfigError, DynamoDbConfig, Env, OnStoreError, RateLimitConfig};
use shared::http::auth::Authenticator;
use shared::ports::live::{Connection, Connections, OpenConnections};
use shared::ports::rate_limit::RateLimiter;
use shared::ports::settings::SettingsSource;

/// What this function builds once per container.
pub type State = LiveConnection;

pub struct LiveConnection {
    pub auth: Authenticator,
    pub connections: Arc<dyn Connections>,
    /// The HTTP routes' per-organization limiter; each `$connect` counts as one request.
    pub limiter: Arc<dyn RateLimiter>,
    /// `RATE_LIMIT_ON_STORE_ERROR`, as for the HTTP routes.
    pub on_store_error: OnStoreError,
    /// The organizations' settings: their budgets and their cap of open (unexpired) connections.
    pub settings: Arc<dyn SettingsSource>,
    /// Open connections one user may hold (`LIVE_MAX_CONNECTIONS_PER_USER`, default 10).
    pub per_user_cap: usize,
}

/// Open connections one user may hold unless configured: a few dashboards and watchers.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: u64 = 10;

impl FromEnv for LiveConnection {
    const API_KEYS: shared::app::KeyAccess = shared::app::KeyAccess::Read;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let rate = RateLimitConfig::from_env(env)?;
        Ok(Self {
            auth: shared::http::api::authenticator(env, aws)?,
            connections: Arc::new(DynamoConnections::new(
                aws,
                &DynamoDbConfig::from_env(env),
                env.required("CONNECTIONS_TABLE_NAME")?,
            )?),
            limiter: Arc::new(DynamoRateLimiter::new(aws, &rate)?),
            on_store_error: rate.on_store_error,
            settings: Arc::new(shared::app::settings::Settings::from_env(env, aws)?),
            per_user_cap: env.number_or("LIVE_MAX_CONNECTIONS_PER_USER", DEFAULT_MAX_CONNECTIONS_PER_USER, 1)? as usize,
        })
    }
}

pub async fn handle(
    state: &LiveConnection,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, Error> {
    let request = event.payload;
    let context = &request.request_context;
    let Some(connection_id) = context.connection_id.as_deref() else {
        return Ok(answer(400, "No connection id"));
    };
    Ok(match context.route_key.as_deref() {
        Some("$connect") => connect(state, &request, connection_id).await,
        Some("$disconnect") => disconnect(state, connection_id).await,
        other => {
            tracing::warn!(route = ?other, "unexpected WebSocket route");
            answer(400, "Unknown route")
        }
    })
}

async fn connect(
    state: &LiveConnection,
    request: &ApiGatewayWebsocketProxyRequest,
    connection_id: &str,
) -> ApiGatewayProxyResponse {
    let (caller, token_expires_at) = match state.auth.authenticate_until(&credentials(request)).await {
        Ok(verified) => verified,
        Err(err) => {
            // As on the HTTP routes: an unreadable key store or key server is a 503 that names
            // no internal detail, every other refusal a 401 saying why.
            let refused = shared::http::error::ApiError::from(err);
            tracing::info!(connection = connection_id, error = %refused, "WebSocket connection refused");
            return answer(i64::from(refused.status().as_u16()), &refused.public_message());
        }
    };
    let settings = match state.settings.effective(&caller.org).await {
        Ok(effective) => effective.settings,
        Err(err) => {
            tracing::warn!(org = %caller.org, error = %err, "organization settings unavailable; using the stage's");
            state.settings.defaults().clone()
        }
    };
    if let Some(refused) = rate_limit(state, connection_id, &caller, &settings.budgets()).await {
        return refused;
    }
    let org_cap = settings.live.max_connections as usize;
    match state.connections.open_count(&caller.org, &caller.user).await {
        Ok(open) => {
            if let Some(refusal) = at_a_cap(open, org_cap, state.per_user_cap, caller.is_admin()) {
                tracing::info!(connection = connection_id, org = %caller.org, user = %caller.user, refusal, "WebSocket connection refused: connection cap");
                return answer(429, &refusal);
            }
        }
        Err(err) => {
            tracing::error!(connection = connection_id, org = %caller.org, error = %err, "open connections not counted");
            return answer(503, "Service temporarily unavailable");
        }
    }
    match state
        .connections
        .add(&Connection::opened(connection_id, &caller, token_expires_at))
        .await
    {
        Ok(()) => {
            tracing::info!(connection = connection_id, org = %caller.org, user = %caller.user, "WebSocket connected");
            answer(200, "Connected")
        }
        Err(err) => {
            tracing::error!(connection = connection_id, org = %caller.org, error = %err, "connection not kept");
            answer(503, "Service temporarily unavailable")
        }
    }
}

/// `None` when the caller's budgets admit one more request; else the refusal (429 with
/// `Retry-After`, or 503 when the limiter is unreachable and the policy is `deny`).
async fn rate_limit(
    state: &LiveConnection,
    connection_id: &str,
    caller: &shared::domain::ids::Caller,
    budgets: &shared::domain::ratelimit::Budgets,
) -> Option<ApiGatewayProxyResponse> {
    let org = &caller.org;
    match state.limiter.check_within(caller, budgets).await {
        Ok(status) if status.admitted() => None,
        Ok(status) => {
            let scope = shared::domain::validation::Choice::as_str(status.scope);
            tracing::info!(connection = connection_id, org = %org, scope, "WebSocket connection refused: rate limited");
            let mut refused = answer(429, "Rate limit exceeded");
            if let Some(seconds) = status.retry_after_seconds() {
                refused
                    .headers
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            Some(refused)
        }
        Err(err) => match state.on_store_error {
            OnStoreError::Allow => {
                tracing::warn!(org = %org, error = %err, "rate limiter unavailable; admitting (RATE_LIMIT_ON_STORE_ERROR=allow)");
                None
            }
            OnStoreError::Deny => {
                tracing::error!(org = %org, error = %err, "rate limiter unavailable; refusing");
                Some(answer(503, "Service temporarily unavailable"))
            }
        },
    }
}

/// Why one more connection would be one too many, if it would: the organization's open
/// connections are at `org_cap` (at the part of it open to members, for a member), or the
/// user's own at `user_cap`.
fn at_a_cap(open: OpenConnections, org_cap: usize, user_cap: usize, admin: bool) -> Option<String> {
    let kept_for_admins = org_cap / 10;
    if open.organization >= org_cap {
        Some(format!(
            "Too many open connections for this organization (at most {org_cap})"
        ))
    } else if !admin && open.organization >= org_cap - kept_for_admins {
        Some(format!(
            "Too many open connections for this organization's members (at most {} of its {org_cap}; the rest are kept for its admins)",
            org_cap - kept_for_admins
        ))
    } else if open.user >= user_cap {
        Some(format!("Too many open connections for this user (at most {user_cap})"))
    } else {
        None
    }
}

async fn disconnect(state: &LiveConnection, connection_id: &str) -> ApiGatewayProxyResponse {
    // A connection left behind expires through the table's TTL and is forgotten by the first
    // push that finds it gone.
    if let Err(err) = state.connections.remove(connection_id).await {
        tracing::warn!(connection = connection_id, error = %err, "connection not forgotten");
    }
    answer(200, "Disconnected")
}

/// The request's headers, with the `token` query parameter as a bearer token when there is no
/// `Authorization` header.
fn credentials(request: &ApiGatewayWebsocketProxyRequest) -> HeaderMap {
    let mut headers = request.headers.clone();
    if !headers.contains_key(http::header::AUTHORIZATION)
        && let Some(token) = request.query_string_parameters.first("token")
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    headers
}

fn answer(status: i64, message: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response
        .headers
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.body = Some(Body::Text(json!({ "message": message }).to_string()));
    response
}

#[cfg(test)]
mod tests {
    use shared::config::AuthConfig;
    use shared::domain::ids::OrgId;
    use shared::domain::ratelimit::Limits;
    use shared::fakes::live::InMemoryConnections;
    use shared::fakes::rate_limit::InMemoryRateLimiter;
    use shared::fakes::token;

    use super::*;

    const CONNECT: &str = include_str!("../../../events/live-connection.json");
    const DISCONNECT: &str = include_str!("../../../events/live-disconnect.json");

    fn state() -> (LiveConnection, Arc<InMemoryConnections>) {
        limited_state(1000, 100)
    }

    /// `requests` per minute per organization, `cap` open connections.
    fn limited_state(requests: u64, cap: usize) -> (LiveConnection, Arc<InMemoryConnections>) {
        let connections = Arc::new(InMemoryConnections::default());
        let auth = Authenticator::new(
            &AuthConfig::from_env(&Env::from_pairs([("JWT_SECRET", shared::config::LOCAL_DEV_SECRET)])).unwrap(),
        )
        .unwrap();
        let limits = Limits {
            max_requests: requests,
            window_ms: 60_000,
            burst_allowance: 0,
        };
        let limiter = InMemoryRateLimiter::new(limits);
        let mut defaults = shared::fakes::defaults_for(limiter.default_budgets());
        defaults.live.max_connections = cap as u64;
        let settings = shared::app::settings::Settings::new(
            Arc::new(shared::fakes::settings::InMemorySettings::new()),
            defaults,
            std::time::Duration::ZERO,
        );
        (
            LiveConnection {
                auth,
                connections: connections.clone(),
                limiter: Arc::new(limiter),
                on_store_error: OnStoreError::Allow,
                settings: Arc::new(settings),
                per_user_cap: 3,
            },
            connections,
        )
    }

    fn connect_as(id: &str, org: &str, exp_in: i64) -> LambdaEvent<ApiGatewayWebsocketProxyRequest> {
        connect_by(id, org, "viewer", exp_in)
    }

    fn connect_by(id: &str, org: &str, user: &str, exp_in: i64) -> LambdaEvent<ApiGatewayWebsocketProxyRequest> {
        connect_with(id, json!({"sub": user, "org_id": org, "exp": chrono_now() + exp_in}))
    }

    /// `$connect` of connection `id` with a token holding `claims`.
    fn connect_with(id: &str, claims: serde_json::Value) -> LambdaEvent<ApiGatewayWebsocketProxyRequest> {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(shared::config::LOCAL_DEV_SECRET.as_bytes()),
        )
        .unwrap();
        event(CONNECT, |e| {
            e["requestContext"]["connectionId"] = json!(id);
            e["queryStringParameters"] = json!({ "token": token });
        })
    }

    #[tokio::test]
    async fn a_connection_expires_with_its_token() {
        let (state, connections) = state();
        assert_eq!(
            handle(&state, connect_as("short", "acme", 30))
                .await
                .unwrap()
                .status_code,
            200
        );
        assert_eq!(
            handle(&state, connect_as("long", "acme", 86_400))
                .await
                .unwrap()
                .status_code,
            200
        );
        let kept = connections.all();
        let now = chrono_now();
        assert!((kept[0].expires_at - (now + 30)).abs() <= 1, "the token's exp");
        assert!((kept[1].expires_at - (now + 7200)).abs() <= 1, "two hours at most");
    }

    #[tokio::test]
    async fn connect_is_rate_limited_per_organization_and_keeps_nothing_when_refused() {
        let (state, connections) = limited_state(2, 100);
        for id in ["a1", "a2"] {
            assert_eq!(
                handle(&state, connect_as(id, "acme", 600)).await.unwrap().status_code,
                200
            );
        }
        let refused = handle(&state, connect_as("a3", "acme", 600)).await.unwrap();
        assert_eq!(refused.status_code, 429);
        assert!(refused.headers.contains_key("retry-after"));
        // Another organization has its own budget.
        assert_eq!(
            handle(&state, connect_as("g1", "globex", 600))
                .await
                .unwrap()
                .status_code,
            200
        );
        let mut kept: Vec<String> = connections.all().into_iter().map(|c| c.id).collect();
        kept.sort();
        assert_eq!(kept, ["a1", "a2", "g1"]);
    }

    #[tokio::test]
    async fn an_organization_at_its_connection_cap_is_refused_until_one_closes_or_expires() {
        let (state, connections) = limited_state(1000, 2);
        assert_eq!(
            handle(&state, connect_as("a1", "acme", 600)).await.unwrap().status_code,
            200
        );
        assert_eq!(
            handle(&state, connect_as("a2", "acme", 600)).await.unwrap().status_code,
            200
        );
        let refused = handle(&state, connect_as("a3", "acme", 600)).await.unwrap();
        assert_eq!(refused.status_code, 429);
        let Some(Body::Text(body)) = refused.body else {
            panic!("a body")
        };
        assert!(body.contains("at most 2"), "{body}");
        assert_eq!(connections.all().len(), 2, "nothing kept");
        // Other organizations are not counted.
        assert_eq!(
            handle(&state, connect_as("g1", "globex", 600))
                .await
                .unwrap()
                .status_code,
            200
        );
        // An expired connection does not count.
        let mut a1 = connections.all().into_iter().find(|c| c.id == "a1").unwrap();
        a1.expires_at = chrono_now() - 1;
        connections.add(&a1).await.unwrap();
        assert_eq!(
            handle(&state, connect_as("a4", "acme", 600)).await.unwrap().status_code,
            200
        );
    }

    #[tokio::test]
    async fn a_user_at_their_connection_cap_is_refused_and_colleagues_still_connect() {
        // GIVEN an organization capped at 100 and its users at 3, and mallory holding 3
        let (state, connections) = limited_state(1000, 100);
        let status = async |id: &str, user: &str| handle(&state, connect_by(id, "acme", user, 600)).await.unwrap();
        for id in ["m1", "m2", "m3"] {
            assert_eq!(status(id, "mallory").await.status_code, 200);
        }
        // WHEN mallory opens a fourth THEN it is refused, saying why, and nothing is kept
        let refused = status("m4", "mallory").await;
        assert_eq!(refused.status_code, 429);
        let Some(Body::Text(body)) = refused.body else {
            panic!("a body")
        };
        assert!(body.contains("for this user (at most 3)"), "{body}");
        assert_eq!(connections.all().len(), 3);
        // AND a colleague still connects
        assert_eq!(status("b1", "boss").await.status_code, 200);
    }

    #[tokio::test]
    async fn the_last_tenth_of_an_organizations_connections_is_kept_for_its_admins() {
        // GIVEN an organization capped at 10 connections (users at 3) and members holding 9
        let (state, connections) = limited_state(1000, 10);
        let connect = async |id: &str, user: &str, role: Option<&str>| {
            let mut claims = json!({"sub": user, "org_id": "acme", "exp": chrono_now() + 600});
            if let Some(role) = role {
                claims["role"] = json!(role);
            }
            handle(&state, connect_with(id, claims)).await.unwrap()
        };
        for (i, user) in ["a", "a", "a", "b", "b", "b", "c", "c", "c"].iter().enumerate() {
            assert_eq!(connect(&format!("m{i}"), user, None).await.status_code, 200);
        }
        // WHEN another member connects THEN it is refused, saying why
        let refused = connect("d1", "d", Some("member")).await;
        assert_eq!(refused.status_code, 429);
        let Some(Body::Text(body)) = refused.body else {
            panic!("a body")
        };
        assert!(
            body.contains("members (at most 9 of its 10; the rest are kept for its admins)"),
            "{body}"
        );
        // AND an admin still connects, and then the organization is full for everyone
        assert_eq!(connect("boss1", "boss", Some("admin")).await.status_code, 200);
        let full = connect("boss2", "boss", Some("admin")).await;
        assert_eq!(full.status_code, 429);
        assert_eq!(connections.all().len(), 10);
    }

    fn event(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> LambdaEvent<ApiGatewayWebsocketProxyRequest> {
        let mut value: serde_json::Value = serde_json::from_str(fixture).unwrap();
        edit(&mut value);
        LambdaEvent::new(serde_json::from_value(value).unwrap(), Default::default())
    }

    #[tokio::test]
    async fn the_fixture_connects_under_the_tokens_organization() {
        let (state, connections) = state();
        let response = handle(&state, event(CONNECT, |_| {})).await.unwrap();
        assert_eq!(response.status_code, 200);
        let kept = connections.all();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id, "L0SM9cOFvHcCIhw=");
        assert_eq!(kept[0].org, OrgId::parse("demo").unwrap());
        assert_eq!(kept[0].user.as_str(), "dev-user");
        assert!(kept[0].expires_at > chrono_now() + 7000);
    }

    #[tokio::test]
    async fn a_bearer_header_works_as_well_as_the_query_parameter() {
        let (state, connections) = state();
        let bearer = format!("Bearer {}", token("acme", "alice"));
        let response = handle(
            &state,
            event(CONNECT, |e| {
                e["queryStringParameters"] = json!({});
                e["headers"]["Authorization"] = json!(bearer);
            }),
        )
        .await
        .unwrap();
        assert_eq!(response.status_code, 200);
        assert_eq!(connections.all()[0].org.as_str(), "acme");
    }

    #[tokio::test]
    async fn a_missing_or_forged_token_refuses_the_handshake_and_keeps_nothing() {
        let (state, connections) = state();
        let forged = format!("{}x", token("acme", "alice"));
        for query in [json!({}), json!({ "token": forged }), json!({ "token": "" })] {
            let response = handle(&state, event(CONNECT, |e| e["queryStringParameters"] = query.clone()))
                .await
                .unwrap();
            assert_eq!(response.status_code, 401, "{query}");
        }
        assert!(connections.all().is_empty());
    }

    #[tokio::test]
    async fn a_connection_that_cannot_be_kept_is_refused_with_a_503_naming_nothing_internal() {
        struct Unavailable;
        #[async_trait::async_trait]
        impl Connections for Unavailable {
            async fn add(&self, _: &Connection) -> Result<(), shared::ports::live::LiveError> {
                Err(shared::ports::live::LiveError::new(
                    "PutItem: connection refused (10.0.0.7:443)",
                ))
            }
            async fn remove(&self, _: &str) -> Result<(), shared::ports::live::LiveError> {
                Err(shared::ports::live::LiveError::new("DeleteItem: connection refused"))
            }
            async fn of_org(
                &self,
                _: &OrgId,
            ) -> Result<Vec<shared::ports::live::Listed>, shared::ports::live::LiveError> {
                Ok(vec![])
            }
        }
        let (mut state, _) = state();
        state.connections = Arc::new(Unavailable);
        let connect = handle(&state, event(CONNECT, |_| {})).await.unwrap();
        assert_eq!(connect.status_code, 503);
        let Some(Body::Text(body)) = connect.body else {
            panic!("a body")
        };
        assert!(!body.contains("10.0.0.7") && !body.contains("PutItem"), "{body}");
        // A disconnect that cannot be recorded is still answered: TTL forgets the connection.
        assert_eq!(
            handle(&state, event(DISCONNECT, |_| {})).await.unwrap().status_code,
            200
        );
    }

    #[tokio::test]
    async fn an_unreadable_key_store_refuses_the_handshake_with_a_503_naming_nothing_internal() {
        // GIVEN a key store that cannot be read
        let keys = Arc::new(shared::fakes::api_keys::InMemoryApiKeys::new());
        keys.set_unavailable(true);
        let (mut state, connections) = state();
        state.auth = state.auth.with_api_keys(shared::http::api_keys::ApiKeyAuth::new(
            keys,
            std::time::Duration::from_secs(60),
        ));
        // WHEN a key opens a connection
        let key = format!("mcsk_{}_{}", "a".repeat(32), "b".repeat(64));
        let response = handle(
            &state,
            event(CONNECT, |e| e["queryStringParameters"] = json!({ "token": key })),
        )
        .await
        .unwrap();
        // THEN it is told to come back, not that it is unauthorized, and learns nothing internal
        assert_eq!(response.status_code, 503);
        let Some(Body::Text(body)) = response.body else {
            panic!("a body")
        };
        assert!(!body.contains("in-memory"), "{body}");
        assert!(connections.all().is_empty());
    }

    #[tokio::test]
    async fn disconnect_forgets_the_connection() {
        let (state, connections) = state();
        handle(&state, event(CONNECT, |_| {})).await.unwrap();
        let response = handle(&state, event(DISCONNECT, |_| {})).await.unwrap();
        assert_eq!(response.status_code, 200);
        assert!(connections.all().is_empty());
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }
}
