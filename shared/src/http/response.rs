//! The response envelope: `success`, `data` or `message`/`errors`, `rate_limit`,
//! `performance.processing_latency_ms`, and the `X-RateLimit-*` / `Retry-After` headers.

use std::time::Instant;

use http::{HeaderValue, Response, StatusCode, header};
use lambda_http::Body;
use serde::Serialize;
use serde_json::Value;

use crate::domain::ratelimit::RateStatus;
use crate::domain::sessions::{MAX_CONTEXT_BYTES, MAX_CONTEXT_KEYS, SessionAction, SessionChange};
use crate::domain::validation::Choice;
use crate::domain::validation::FieldError;
use crate::http::error::{ApiError, RETRY_AFTER_UNAVAILABLE_SECONDS};

#[derive(Serialize)]
struct Envelope<'a> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimitBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    performance: Performance,
}

#[derive(Serialize)]
struct RateLimitBody {
    /// `user` (the caller's own budget) or `organization` (the ceiling over all its users).
    scope: crate::domain::ratelimit::Scope,
    limit: u64,
    remaining: u64,
    reset_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Performance {
    processing_latency_ms: f64,
}

impl From<&RateStatus> for RateLimitBody {
    fn from(status: &RateStatus) -> Self {
        Self {
            scope: status.scope,
            limit: status.limit,
            remaining: status.remaining,
            reset_time: status.reset_time().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            retry_after: status.retry_after_seconds(),
        }
    }
}

/// Builds the response of one request; created when the request arrives so latency is complete.
pub struct Reply {
    started: Instant,
    request_id: Option<String>,
    rate: Option<RateStatus>,
}

impl Reply {
    pub fn start(request_id: Option<String>) -> Self {
        Self {
            started: Instant::now(),
            request_id,
            rate: None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    pub fn set_rate(&mut self, rate: RateStatus) {
        self.rate = Some(rate);
    }

    pub fn elapsed_ms(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3
    }

    pub fn success(&self, status: StatusCode, data: &Value) -> Response<Body> {
        self.report(status, true, None, data)
    }

    /// An envelope that carries `data` whatever the status (e.g. a 503 health report).
    pub fn report(&self, status: StatusCode, success: bool, message: Option<&str>, data: &Value) -> Response<Body> {
        self.build(
            status,
            Envelope {
                success,
                data: Some(data),
                message: message.map(str::to_owned),
                errors: None,
                rate_limit: self.rate.as_ref().map(Into::into),
                retry_after: None,
                performance: self.performance(),
            },
        )
    }

    pub fn error(&self, error: &ApiError) -> Response<Body> {
        let rate = match error {
            ApiError::RateLimited(status) => Some(status),
            _ => self.rate.as_ref(),
        };
        let envelope = Envelope {
            success: false,
            data: None,
            message: Some(error.public_message()),
            errors: match error {
                ApiError::Validation(errors) => Some(errors),
                _ => None,
            },
            rate_limit: rate.map(Into::into),
            retry_after: matches!(error, ApiError::Unavailable { .. }).then_some(RETRY_AFTER_UNAVAILABLE_SECONDS),
            performance: self.performance(),
        };
        let mut response = self.build(error.status(), envelope);
        let headers = response.headers_mut();
        match error {
            ApiError::RateLimited(status) => {
                set_rate_headers(headers, status);
                if let Some(seconds) = status.retry_after_seconds() {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            ApiError::Unavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECONDS));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }

    fn performance(&self) -> Performance {
        Performance {
            processing_latency_ms: self.elapsed_ms(),
        }
    }

    /// A body that is not the JSON envelope (an OTLP response), with the usual headers.
    pub fn bytes(&self, status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.common_headers(headers);
        response
    }

    /// `204 No Content`: the usual headers, no body.
    pub fn no_content(&self) -> Response<Body> {
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        self.common_headers(response.headers_mut());
        response
    }

    fn build(&self, status: StatusCode, envelope: Envelope<'_>) -> Response<Body> {
        let body = serde_json::to_vec(&envelope).unwrap_or_else(|_| br#"{"success":false}"#.to_vec());
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.common_headers(headers);
        response
    }

    fn common_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        set_security_headers(headers);
        if let Some(id) = self.request_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert("x-request-id", id);
        }
        if let Some(rate) = &self.rate {
            set_rate_headers(headers, rate);
        }
    }
}

/// The specification's security headers, on every response a function builds: HTTPS only (a
/// year, subdomains too), no MIME sniffing, no referrer sent on, and a policy that lets an API
/// answer run nothing and be framed nowhere (the dashboard's page replaces it with its own).
fn set_security_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
}

fn set_rate_headers(headers: &mut http::HeaderMap, status: &RateStatus) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(status.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(status.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(status.reset_epoch_seconds()));
}

/// The answer to a session update or end: the session as `data`, or the error for each refusal.
pub fn session_change_data(change: SessionChange, action: SessionAction) -> Result<Value, ApiError> {
    match change {
        SessionChange::Changed(record) => serde_json::to_value(record).map_err(|e| ApiError::Internal(e.to_string())),
        SessionChange::NotFound => Err(ApiError::NotFound("session")),
        SessionChange::OtherUser => Err(ApiError::Forbidden("the session belongs to another user")),
        SessionChange::ContextFull => Err(ApiError::validation(
            "context",
            &format!(
                "The session's context would pass {MAX_CONTEXT_KEYS} keys or {MAX_CONTEXT_BYTES} bytes once merged"
            ),
        )),
        SessionChange::Refused(status) => Err(ApiError::Conflict(format!(
            "Session is {}: {}",
            status.as_str(),
            match action {
                SessionAction::Update => "only active sessions can be updated",
                SessionAction::End => "it has already ended",
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sessions::SessionStatus;
    use crate::http::error::Dependency;

    fn body_of(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    fn rate(retry_after_us: Option<i64>) -> RateStatus {
        RateStatus {
            scope: crate::domain::ratelimit::Scope::User,
            limit: 1000,
            remaining: 999,
            reset_at_us: 1_757_327_460_000_000,
            retry_after_us,
        }
    }

    #[test]
    fn success_matches_the_specification_envelope() {
        let mut reply = Reply::start(Some("req-1".into()));
        reply.set_rate(rate(None));
        let response = reply.success(StatusCode::CREATED, &serde_json::json!({"id": "x"}));
        assert_eq!(response.status(), 201);
        let body = body_of(&response);
        assert_eq!(body["success"], true);
        assert_eq!(body["data"]["id"], "x");
        assert_eq!(body["rate_limit"]["limit"], 1000);
        assert_eq!(body["rate_limit"]["remaining"], 999);
        assert_eq!(body["rate_limit"]["reset_time"], "2025-09-08T10:31:00.000Z");
        assert!(body["performance"]["processing_latency_ms"].is_f64());
        assert_eq!(response.headers()["x-ratelimit-limit"], "1000");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "999");
        assert_eq!(response.headers()["x-ratelimit-reset"], "1757327460");
        assert_eq!(response.headers()["x-request-id"], "req-1");
    }

    #[test]
    fn every_kind_of_answer_carries_the_security_headers() {
        let reply = Reply::start(None);
        let answers = [
            reply.success(StatusCode::OK, &serde_json::json!({})),
            reply.error(&ApiError::Internal("x".into())),
            reply.bytes(StatusCode::OK, "application/x-protobuf", Vec::new()),
            reply.no_content(),
        ];
        for response in answers {
            let headers = response.headers();
            assert_eq!(
                headers["strict-transport-security"],
                "max-age=31536000; includeSubDomains"
            );
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["referrer-policy"], "no-referrer");
            assert_eq!(
                headers["content-security-policy"],
                "default-src 'none'; frame-ancestors 'none'"
            );
        }
    }

    #[test]
    fn validation_errors_list_every_field() {
        let reply = Reply::start(None);
        let error = ApiError::Validation(vec![
            FieldError::new("status", "Required"),
            FieldError::new("command_name", "Must be a string"),
        ]);
        let response = reply.error(&error);
        assert_eq!(response.status(), 400);
        let body = body_of(&response);
        assert_eq!(body["success"], false);
        assert_eq!(body["message"], "Validation failed");
        assert_eq!(body["errors"][1]["field"], "command_name");
    }

    #[test]
    fn rate_limited_carries_retry_after_in_body_and_header() {
        let response = Reply::start(None).error(&ApiError::RateLimited(rate(Some(44_200_000))));
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "45");
        assert_eq!(body_of(&response)["rate_limit"]["retry_after"], 45);
        assert_eq!(body_of(&response)["message"], "Rate limit exceeded");
    }

    #[test]
    fn unavailable_hides_internal_detail() {
        let error = ApiError::Unavailable {
            dependency: Dependency::Database,
            detail: "connection refused to 10.0.0.5:5432 password=hunter2".into(),
        };
        let response = Reply::start(None).error(&error);
        assert_eq!(response.status(), 503);
        let raw = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
        assert!(!raw.contains("10.0.0.5") && !raw.contains("hunter2"));
        let body = body_of(&response);
        assert_eq!(body["message"], "Database temporarily unavailable");
        assert_eq!(body["retry_after"], 30);
        assert_eq!(response.headers()["retry-after"], "30");
    }

    #[test]
    fn internal_errors_hide_detail() {
        let response = Reply::start(None).error(&ApiError::Internal("panic at db.rs:42".into()));
        assert_eq!(response.status(), 500);
        let raw = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
        assert!(!raw.contains("db.rs"));
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let response = Reply::start(None).error(&ApiError::Unauthorized(crate::http::auth::AuthError::Missing));
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(body_of(&response)["message"], "Missing bearer token");
    }

    #[test]
    fn session_outcomes_map_to_status_codes() {
        assert_eq!(
            session_change_data(SessionChange::NotFound, SessionAction::Update)
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            session_change_data(SessionChange::OtherUser, SessionAction::End)
                .unwrap_err()
                .status(),
            403
        );
        let conflict =
            session_change_data(SessionChange::Refused(SessionStatus::Completed), SessionAction::End).unwrap_err();
        assert_eq!(conflict.status(), 409);
        assert!(conflict.public_message().contains("already ended"));
        let full = session_change_data(SessionChange::ContextFull, SessionAction::Update).unwrap_err();
        assert_eq!(full.status(), 400);
    }
}
