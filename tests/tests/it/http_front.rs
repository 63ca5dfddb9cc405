//! The local front serves template.yaml's routes over HTTP with the same handlers.

use integration_tests::{TestApp, http, spec_command_example, token};
use serde_json::Value;

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, String, Value) {
    http(addr, "POST", path, bearer, content_type, body).await
}

#[tokio::test]
async fn the_specification_example_over_http_is_created() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let (status, head, body) = post(
        addr,
        "/api/v1/metrics/command-execution",
        Some(&token("acme", "alice")),
        "application/json",
        &spec_command_example().to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert!(body["data"]["id"].is_string() && body["data"]["created_at"].is_string());
    assert_eq!(body["rate_limit"]["limit"], 600);
    assert_eq!(body["rate_limit"]["scope"], "user");
    assert!(head.contains("x-ratelimit-remaining: 599"));
    assert!(head.contains("apigw-requestid:"));
    assert_eq!(given.count("acme", "command_executions").await, 1);
}

#[tokio::test]
async fn http_errors_have_their_status_codes() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let body = spec_command_example().to_string();
    let path = "/api/v1/metrics/command-execution";
    let (status, head, _) = post(addr, path, None, "application/json", &body).await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"));
    let good = token("acme", "alice");
    assert_eq!(post(addr, path, Some(&good), "text/plain", &body).await.0, 415);
    assert_eq!(post(addr, path, Some(&good), "application/json", "{").await.0, 400);
    let (status, _, body) = post(addr, "/api/v1/metrics/nope", Some(&good), "application/json", "{}").await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));
}

#[tokio::test]
async fn path_parameters_and_the_health_route_work_over_http() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let alice = token("acme", "alice");
    let id = uuid::Uuid::new_v4();
    let started = post(
        addr,
        "/api/v1/metrics/session/start",
        Some(&alice),
        "application/json",
        &format!(r#"{{"id":"{id}"}}"#),
    )
    .await;
    assert_eq!(started.0, 201, "{}", started.2);
    let updated = http(
        addr,
        "PUT",
        &format!("/api/v1/metrics/session/{id}"),
        Some(&alice),
        "application/json",
        r#"{"commands_executed":3,"agents_used":["coder"]}"#,
    )
    .await;
    assert_eq!(updated.0, 200, "{}", updated.2);
    assert_eq!(updated.2["data"]["commands_executed"], 3);
    let ended = post(
        addr,
        "/api/v1/metrics/session/end",
        Some(&alice),
        "application/json",
        &format!(r#"{{"session_id":"{id}"}}"#),
    )
    .await;
    assert_eq!(ended.2["data"]["status"], "completed");

    let health = http(addr, "GET", "/api/v1/health", None, "application/json", "").await;
    assert_eq!(health.0, 200, "{}", health.2);
    assert_eq!(health.2["data"]["status"], "healthy");
    // A method the template does not route is not found, as API Gateway answers.
    assert_eq!(
        http(addr, "DELETE", "/api/v1/health", None, "application/json", "")
            .await
            .0,
        404
    );
}
