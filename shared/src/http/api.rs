//! The steps every authenticated JSON endpoint shares, in one place: authenticate, rate-limit,
//! check and parse the body, run the endpoint's own work, build the envelope, log one line.

use std::sync::Arc;

use aws_config::SdkConfig;
use http::{HeaderMap, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

use crate::adapters::dynamodb::DynamoRateLimiter;
use crate::adapters::dynamodb::api_keys::{ApiKeyConfig, DynamoApiKeys};
use crate::config::{AuthConfig, ConfigError, Env, OnStoreError, RateLimitConfig, RequestConfig};
use crate::domain::ids::Caller;
use crate::domain::ratelimit::{RateStatus, now_us};
use crate::domain::settings::OrganizationSettings;
use crate::http::api_keys::ApiKeyAuth;
use crate::http::auth::Authenticator;
use crate::http::error::{ApiError, Dependency};
use crate::http::json::BodyError;
use crate::http::otlp;
use crate::http::response::Reply;
use crate::ports::rate_limit::RateLimiter;
use crate::ports::settings::SettingsSource;

pub struct Api {
    auth: Authenticator,
    limiter: Arc<dyn RateLimiter>,
    settings: Arc<dyn SettingsSource>,
    on_store_error: OnStoreError,
    max_body_bytes: usize,
    /// Whether the organization's `processing_timeout_ms` bounds each request's work.
    deadline: bool,
}

impl Api {
    pub fn new(
        auth: Authenticator,
        limiter: Arc<dyn RateLimiter>,
        settings: Arc<dyn SettingsSource>,
        on_store_error: OnStoreError,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            auth,
            limiter,
            settings,
            on_store_error,
            max_body_bytes,
            deadline: true,
        }
    }

    /// No `processing_timeout_ms` around the work: for routes whose work must not be abandoned
    /// half done — the batch route (a 503 after the queue took the batch would invite a second
    /// copy) and the erasure (its own `ERASE_TIMEOUT_MS`, one transaction).
    pub fn without_deadline(mut self) -> Self {
        self.deadline = false;
        self
    }

    /// For the routes that manage credentials and an organization's governance (API keys,
    /// settings, erasure): an API key is read from its table on every request instead of being
    /// trusted from this container's cache for up to `API_KEY_CACHE_MS`, so an admin key revoked
    /// a moment ago cannot, in that window, make itself a replacement or undo what was done.
    pub fn reading_keys_fresh(mut self) -> Self {
        self.auth = self.auth.reading_keys_fresh();
        self
    }

    /// Authentication and the DynamoDB rate limiter, configured from the environment, with the
    /// organizations' settings from `settings`.
    pub fn from_env(env: &Env, aws: &SdkConfig, settings: Arc<dyn SettingsSource>) -> Result<Self, ConfigError> {
        let auth = authenticator(env, aws)?;
        let rate = RateLimitConfig::from_env(env)?;
        let limiter = DynamoRateLimiter::new(aws, &rate)?;
        Ok(Self::new(
            auth,
            Arc::new(limiter),
            settings,
            rate.on_store_error,
            RequestConfig::from_env(env)?.max_body_bytes,
        ))
    }

    /// The organization's settings as this request's rate limiting read them (no call), or the
    /// stage's defaults.
    pub fn settings_of(&self, org: &crate::domain::ids::OrgId) -> OrganizationSettings {
        self.settings.last_read(org)
    }

    /// Serves an authenticated endpoint whose body is a JSON document; `work` gets the caller
    /// and the parsed body and returns the response's `data`.
    pub async fn handle_json(
        &self,
        req: &Request,
        route: &'static str,
        success: StatusCode,
        work: impl AsyncFnOnce(Caller, Value) -> Result<Value, ApiError>,
    ) -> Response<Body> {
        let max = self.max_body_bytes;
        let read = |req: &Request| json_body(req.headers(), req.body().as_ref(), max);
        self.serve(req, route, read, work, |reply, data| reply.success(success, &data))
            .await
    }

    /// Serves an authenticated `GET`: `work` gets the caller and the query string parameters
    /// and returns the response's `data` (200).
    pub async fn handle_query(
        &self,
        req: &Request,
        route: &'static str,
        work: impl AsyncFnOnce(Caller, Vec<(String, String)>) -> Result<Value, ApiError>,
    ) -> Response<Body> {
        let read = |req: &Request| {
            let params = query_parameters(req);
            // `limit=5&limit=6` has no one meaning: refuse it rather than pick one.
            let mut repeated: Vec<_> = params
                .windows(2)
                .filter(|pair| pair[0].0 == pair[1].0)
                .map(|pair| crate::domain::validation::FieldError::new(&pair[0].0, "Must be given at most once"))
                .collect();
            repeated.dedup();
            if !repeated.is_empty() {
                return Err(ApiError::Validation(repeated));
            }
            Ok(params)
        };
        self.serve(req, route, read, work, |reply, data| {
            reply.success(StatusCode::OK, &data)
        })
        .await
    }

    /// Like [`Api::handle_json`], but success is a `204` with no body at all, and bodies up to
    /// `max_body_bytes` are accepted: a Claude Code hook injects any text it receives into the
    /// model's context, and tool outputs can be large.
    pub async fn handle_json_quietly(
        &self,
        req: &Request,
        route: &'static str,
        max_body_bytes: usize,
        work: impl AsyncFnOnce(Caller, Value) -> Result<(), ApiError>,
    ) -> Response<Body> {
        let read = |req: &Request| json_body(req.headers(), req.body().as_ref(), max_body_bytes);
        self.serve(req, route, read, work, |reply, ()| reply.no_content()).await
    }

    /// Serves an OTLP/HTTP export route (see [`crate::http::otlp`]): the body is an export
    /// request of type `In` in protobuf or OTLP JSON, gzip allowed, within `max_body_bytes`
    /// once decompressed; `work` answers the export's response, sent in the request's encoding,
    /// and failures are `google.rpc.Status` bodies.
    pub async fn handle_otlp<In, Out>(
        &self,
        req: &Request,
        route: &'static str,
        max_body_bytes: usize,
        work: impl AsyncFnOnce(Caller, In) -> Result<Out, ApiError>,
    ) -> Response<Body>
    where
        In: prost::Message + Default + serde::de::DeserializeOwned,
        Out: prost::Message + serde::Serialize,
    {
        let encoding = otlp::Encoding::of(req.headers());
        let read = |req: &Request| {
            let encoding = encoding.ok_or(ApiError::UnsupportedMediaType)?;
            let body = otlp::body(req.headers(), req.body().as_ref(), max_body_bytes)?;
            otlp::decode::<In>(encoding, &body)
        };
        self.serve_with(
            req,
            route,
            read,
            work,
            |reply, out| otlp::success(reply, encoding.unwrap_or(otlp::Encoding::Json), &out),
            |reply, err| otlp::failure(reply, err, encoding),
        )
        .await
    }

    /// Authenticate, rate-limit, `read` the input, run `work`, `respond`, log one line.
    async fn serve<In, Out>(
        &self,
        req: &Request,
        route: &'static str,
        read: impl FnOnce(&Request) -> Result<In, ApiError>,
        work: impl AsyncFnOnce(Caller, In) -> Result<Out, ApiError>,
        respond: impl FnOnce(&Reply, Out) -> Response<Body>,
    ) -> Response<Body> {
        self.serve_with(req, route, read, work, respond, Reply::error).await
    }

    /// [`Api::serve`] with the route's own rendering of failures.
    async fn serve_with<In, Out>(
        &self,
        req: &Request,
        route: &'static str,
        read: impl FnOnce(&Request) -> Result<In, ApiError>,
        work: impl AsyncFnOnce(Caller, In) -> Result<Out, ApiError>,
        respond: impl FnOnce(&Reply, Out) -> Response<Body>,
        fail: impl FnOnce(&Reply, &ApiError) -> Response<Body>,
    ) -> Response<Body> {
        let mut reply = Reply::start(request_id(req));
        let mut caller = None;
        let (outcome, database_ms) = crate::telemetry::timing_database(async {
            let who = self.auth.authenticate(req.headers()).await?;
            caller = Some(who.clone());
            reply.set_rate(self.rate_limit(&who).await?);
            let input = read(req)?;
            if !self.deadline {
                return work(who, input).await;
            }
            // At least the database's statement timeout (see `StageBounds`), so no statement is
            // abandoned while it may still commit: this bounds the whole of the work (pool waits
            // and several statements), and a retry with the same ids stores once.
            let deadline = self.settings.last_read(&who.org).performance.processing_timeout_ms;
            tokio::time::timeout(std::time::Duration::from_millis(deadline), work(who, input))
                .await
                .map_err(|_| ApiError::Unavailable {
                    dependency: Dependency::Deadline,
                    detail: format!("the work took longer than processing_timeout_ms ({deadline} ms)"),
                })?
        })
        .await;
        let (response, error) = match outcome {
            Ok(done) => (respond(&reply, done), None),
            Err(err) => (fail(&reply, &err), Some(err)),
        };
        log_request(route, &reply, caller.as_ref(), response.status(), error, database_ms);
        response
    }

    /// Counts the request against the budgets of the organization's settings; while those
    /// cannot be read (and this container never read them), against the stage's.
    async fn rate_limit(&self, caller: &Caller) -> Result<RateStatus, ApiError> {
        let budgets = match self.settings.effective(&caller.org).await {
            Ok(effective) => effective.settings.budgets(),
            Err(err) => {
                tracing::warn!(org = %caller.org, error = %err, "organization settings unavailable; using the stage's");
                self.settings.defaults().budgets()
            }
        };
        match self.limiter.check_within(caller, &budgets).await {
            Ok(status) if status.admitted() => Ok(status),
            Ok(status) => Err(ApiError::RateLimited(status)),
            Err(err) => match self.on_store_error {
                OnStoreError::Allow => {
                    tracing::warn!(org = %caller.org, error = %err, "rate limiter unavailable; admitting (RATE_LIMIT_ON_STORE_ERROR=allow)");
                    Ok(RateStatus::unknown(&budgets.organization, now_us()))
                }
                OnStoreError::Deny => Err(ApiError::Unavailable {
                    dependency: Dependency::RateLimiter,
                    detail: err.to_string(),
                }),
            },
        }
    }
}

/// Tokens as configured, and API keys from their DynamoDB table (`API_KEYS_TABLE_NAME`): what
/// every authenticated route and the WebSocket `$connect` accept.
pub fn authenticator(env: &Env, aws: &SdkConfig) -> Result<Authenticator, ConfigError> {
    let keys = ApiKeyConfig::from_env(env)?;
    let store = Arc::new(DynamoApiKeys::new(aws, &keys)?);
    Ok(Authenticator::new(&AuthConfig::from_env(env)?)?.with_api_keys(ApiKeyAuth::new(store, keys.cache_ttl)))
}

/// The request's query string parameters, sorted by name so that problems are reported in a
/// stable order.
pub fn query_parameters(req: &Request) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = req
        .query_string_parameters_ref()
        .map(|query| {
            query
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    params.sort();
    params
}

/// Refuses any query string parameter, for the routes that take none: a parameter they would
/// ignore (`?dry_run=true` on an erasure) must not be taken as honoured.
pub fn no_parameters(params: &[(String, String)]) -> Result<(), ApiError> {
    match params.first() {
        Some((name, _)) => Err(ApiError::validation(name, "Unknown parameter: this route takes none")),
        None => Ok(()),
    }
}

/// The request body as JSON: the media type and encoding first, then the size (before any
/// parsing), then the syntax.
pub fn json_body(headers: &HeaderMap, bytes: &[u8], max_body_bytes: usize) -> Result<Value, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if !is_identity_encoded(headers) {
        return Err(ApiError::UnsupportedEncoding);
    }
    if bytes.len() > max_body_bytes {
        return Err(ApiError::PayloadTooLarge { limit: max_body_bytes });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation("body", "Required: a JSON object"));
    }
    super::json::from_slice(bytes).map_err(|error| match error {
        BodyError::Syntax(e) => ApiError::validation("body", &format!("Malformed JSON: {e}")),
        BodyError::DuplicateKey(path) => {
            ApiError::validation(&path, "Must be given at most once (a key named twice in one object)")
        }
    })
}

/// `application/json`, with or without parameters, or any `application/*+json`.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// No `Content-Encoding`, or only `identity`.
pub fn is_identity_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::CONTENT_ENCODING).iter().all(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
        })
    })
}

/// API Gateway's request id, which clients also see; else the Lambda invocation's.
pub fn request_id(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) if ctx.request_id.is_some() => ctx.request_id.clone(),
        _ => req.lambda_context_ref().map(|ctx| ctx.request_id.clone()),
    }
}

fn log_request(
    route: &'static str,
    reply: &Reply,
    caller: Option<&Caller>,
    status: StatusCode,
    error: Option<ApiError>,
    database_ms: Option<f64>,
) {
    crate::telemetry::log_request(crate::telemetry::RequestOutcome {
        request_id: reply.request_id(),
        route,
        org: caller.map(|c| c.org.as_str()),
        user: caller.map(|c| c.user.as_str()),
        status: status.as_u16(),
        latency_ms: reply.elapsed_ms(),
        database_ms,
        error: error.map(|e| e.to_string()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = include_str!("../../../events/command-execution.json");

    /// A route whose work takes 300 ms, for an organization allowing 100.
    async fn slow_work_status(deadline: bool) -> (u16, serde_json::Value) {
        let given = crate::fakes::a_working_service();
        let org = crate::domain::ids::OrgId::parse("demo").unwrap();
        given
            .settings
            .set(&org, serde_json::json!({"performance": {"processing_timeout_ms": 100}}));
        let api = if deadline {
            given.app.api
        } else {
            given.app.api.without_deadline()
        };
        let req = crate::fakes::request(EVENT, "demo", "alice", &serde_json::json!({}));
        let response = api
            .handle_json(&req, "POST /slow", StatusCode::OK, async |_, _| {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Ok(serde_json::json!({}))
            })
            .await;
        crate::fakes::parts(response)
    }

    #[tokio::test]
    async fn work_past_the_organizations_processing_timeout_is_a_503_saying_so_unless_the_route_opts_out() {
        let (status, body) = slow_work_status(true).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("processing_timeout_ms"),
            "{body}"
        );
        assert_eq!(body["retry_after"], 30);
        assert_eq!(slow_work_status(false).await.0, 200);
    }

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("Application/JSON; charset=utf-8")));
        assert!(is_json(&headers("application/vnd.metrics+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&headers("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn only_identity_encoding_is_accepted() {
        let encoded = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_ENCODING, value.parse().unwrap());
            is_identity_encoded(&h)
        };
        assert!(is_identity_encoded(&HeaderMap::new()));
        assert!(encoded("identity"));
        assert!(encoded("Identity"));
        assert!(!encoded("gzip"));
        assert!(!encoded("identity, br"));
        assert!(!encoded("deflate"));
    }
}
