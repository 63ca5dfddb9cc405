//! `POST /api/v1/metrics/command-execution`: validates one command execution and stores it in
//! the caller's organization. Everything but the two lines of work lives in `shared`.

use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::App;
use shared::domain::identified::Identify;
use shared::domain::metrics::CommandExecution;

/// What this function builds once per container: it writes metrics, so it publishes live
/// updates.
pub type State = shared::App;

pub const ROUTE: &str = "POST /api/v1/metrics/command-execution";

pub async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::CREATED, async |caller, body| {
            let metric = CommandExecution::from_json(&body, "")?.identified();
            let stored = app.store.insert_command_execution(&caller, &metric).await?;
            Ok(stored.data())
        })
        .await)
}

#[cfg(test)]
mod tests {
    use lambda_http::http::HeaderValue;
    use serde_json::json;
    use shared::config::OnStoreError;
    use shared::domain::ids::OrgId;
    use shared::fakes::rate_limit::InMemoryRateLimiter;
    use shared::fakes::store::InMemoryStore;
    use shared::fakes::{self, Given, a_working_service, error_fields, given, limits, parts};

    use super::*;

    const EVENT: &str = include_str!("../../../events/command-execution.json");

    fn fixture() -> Request {
        fakes::fixture(EVENT)
    }

    fn request(body: &str) -> Request {
        let mut req = fakes::request(EVENT, "acme", "alice", &json!({}));
        *req.body_mut() = Body::from(body.to_owned());
        req
    }

    async fn call(given: &Given, req: Request) -> (u16, serde_json::Value) {
        parts(handle(&given.app, req).await.unwrap())
    }

    fn org(id: &str) -> OrgId {
        OrgId::parse(id).unwrap()
    }

    #[tokio::test]
    async fn the_fixture_is_stored_in_the_tokens_organization() {
        let given = a_working_service();
        let started = std::time::Instant::now();
        let (status, body) = call(&given, fixture()).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["success"], true);
        let stored = given.store.command_executions(&org("demo"));
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].command_name, "claude_code_generate");
        assert_eq!(body["data"]["id"], stored[0].id.unwrap().to_string());
        assert_eq!(body["rate_limit"]["limit"], 1000);
        assert_eq!(body["rate_limit"]["remaining"], 999);
        // The reported latency is the handler's own time: positive, and within the call's.
        let latency = body["performance"]["processing_latency_ms"].as_f64().unwrap();
        assert!(
            latency > 0.0 && latency <= elapsed_ms,
            "{latency} ms reported, {elapsed_ms} ms taken"
        );
    }

    #[tokio::test]
    async fn every_invalid_field_is_reported_and_nothing_stored() {
        let given = a_working_service();
        let (status, body) = call(&given, request(r#"{"command_name": "bad name!", "status": "nope"}"#)).await;
        assert_eq!(status, 400);
        assert_eq!(body["message"], "Validation failed");
        assert_eq!(error_fields(&body), ["command_name", "execution_time_ms", "status"]);
        assert!(given.store.command_executions(&org("acme")).is_empty());
        assert!(body["rate_limit"].is_object(), "admitted requests report their limit");
    }

    #[tokio::test]
    async fn a_request_without_token_is_refused() {
        let given = a_working_service();
        let mut req = fixture();
        req.headers_mut().remove("authorization");
        let (status, body) = call(&given, req).await;
        assert_eq!(status, 401);
        assert_eq!(body["success"], false);
        assert!(body.get("rate_limit").is_none());
    }

    #[tokio::test]
    async fn organization_in_the_body_is_refused() {
        let given = a_working_service();
        let (status, body) = call(
            &given,
            request(r#"{"command_name":"x","execution_time_ms":1,"status":"success","organization_id":"victim"}"#),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["organization_id"]);
        assert!(given.store.command_executions(&org("victim")).is_empty());
    }

    #[tokio::test]
    async fn non_json_bodies_are_refused() {
        let given = a_working_service();
        let mut req = request("command_name=x");
        req.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(call(&given, req).await.0, 415);
        let (status, body) = call(&given, request("{not json")).await;
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["body"]);
        let (status, _) = call(&given, request("")).await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let given = a_working_service();
        let big = format!(
            r#"{{"command_name":"x","error_message":"{}"}}"#,
            "a".repeat(fakes::MAX_BODY_BYTES)
        );
        let (status, body) = call(&given, request(&big)).await;
        assert_eq!(status, 413);
        assert!(body["message"].as_str().unwrap().contains("4096"));
    }

    #[tokio::test]
    async fn requests_over_the_limit_get_429_with_retry_after() {
        let given = given(
            InMemoryStore::new(),
            InMemoryRateLimiter::new(limits(2)),
            OnStoreError::Allow,
        );
        assert_eq!(call(&given, fixture()).await.0, 201);
        assert_eq!(call(&given, fixture()).await.0, 201);
        let response = handle(&given.app, fixture()).await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
        let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry >= 1, "{retry}");
        assert_eq!(given.store.command_executions(&org("demo")).len(), 2);
    }

    #[tokio::test]
    async fn database_outage_is_a_503_without_detail() {
        let given = given(
            InMemoryStore::unavailable(),
            InMemoryRateLimiter::new(limits(10)),
            OnStoreError::Allow,
        );
        let response = handle(&given.app, fixture()).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "30");
        let (_, body) = parts(response);
        assert_eq!(body["message"], "Database temporarily unavailable");
        assert_eq!(body["retry_after"], 30);
        assert!(!body.to_string().contains("in-memory"));
    }

    #[tokio::test]
    async fn rate_limiter_outage_admits_when_configured_to_allow() {
        let given = given(
            InMemoryStore::new(),
            InMemoryRateLimiter::unavailable(limits(10)),
            OnStoreError::Allow,
        );
        assert_eq!(call(&given, fixture()).await.0, 201);
    }

    #[tokio::test]
    async fn rate_limiter_outage_refuses_when_configured_to_deny() {
        let given = given(
            InMemoryStore::new(),
            InMemoryRateLimiter::unavailable(limits(10)),
            OnStoreError::Deny,
        );
        let (status, body) = call(&given, fixture()).await;
        assert_eq!(status, 503);
        assert_eq!(body["message"], "Rate limiter temporarily unavailable");
        assert!(given.store.command_executions(&org("demo")).is_empty());
    }

    #[tokio::test]
    async fn a_client_id_is_idempotent() {
        let given = a_working_service();
        let body = r#"{"id":"0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e","command_name":"x","execution_time_ms":1,"status":"success"}"#;
        let (first, a) = call(&given, request(body)).await;
        let (second, b) = call(&given, request(body)).await;
        assert_eq!((first, second), (201, 201));
        assert_eq!(a["data"]["id"], "0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e");
        assert_eq!(a["data"], b["data"]);
        assert_eq!(given.store.command_executions(&org("acme")).len(), 1);
    }
}
