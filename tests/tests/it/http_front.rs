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

/// A raw request with extra header lines; status and the response's headers.
async fn with_headers(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::BTreeMap<String, String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let lines: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{lines}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw);
    let head = raw.split("\r\n\r\n").next().unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, integration_tests::header_map(head))
}

#[tokio::test]
async fn cors_answers_only_the_allowed_origins_and_only_for_reads() {
    let (_app, addr) = integration_tests::TestApp::spawn_live(&[(
        "ALLOWED_ORIGINS",
        "https://dash.example.com, https://other.example.com",
    )])
    .await;
    let summary = "/api/v1/metrics/summary";
    let allowed = "https://dash.example.com";
    // The preflight of a read with a token, from an allowed origin: answered by the gateway.
    let ask = |origin, method| {
        [
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", "authorization"),
        ]
    };
    let (status, headers) = with_headers(addr, "OPTIONS", summary, &ask(allowed, "GET")).await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], allowed);
    assert_eq!(headers["access-control-allow-methods"], "GET");
    assert_eq!(headers["access-control-allow-headers"], "authorization");
    // A write, or an origin not listed: no permission, so the browser refuses it.
    for (origin, method) in [(allowed, "POST"), ("https://evil.example.com", "GET")] {
        let (status, headers) = with_headers(addr, "OPTIONS", summary, &ask(origin, method)).await;
        assert_eq!(status, 204);
        assert!(
            !headers.contains_key("access-control-allow-origin"),
            "{origin} {method}"
        );
    }
    // The read itself carries the origin back (with Vary), and the security headers.
    let bearer = format!("Bearer {}", token("acme", "alice"));
    let read = [("Origin", allowed), ("Authorization", bearer.as_str())];
    let (status, headers) = with_headers(addr, "GET", summary, &read).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], allowed);
    assert!(headers["vary"].contains("origin"));
    assert!(headers["access-control-expose-headers"].contains("x-ratelimit-remaining"));
    assert_eq!(
        headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let stranger = [
        ("Origin", "https://evil.example.com"),
        ("Authorization", bearer.as_str()),
    ];
    let (_, headers) = with_headers(addr, "GET", summary, &stranger).await;
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn without_allowed_origins_there_is_no_cors_at_all() {
    let (_app, addr) = integration_tests::TestApp::spawn_live(&[]).await;
    let summary = "/api/v1/metrics/summary";
    let preflight = [
        ("Origin", "https://dash.example.com"),
        ("Access-Control-Request-Method", "GET"),
    ];
    // No OPTIONS route and no CORS configuration: API Gateway's 404.
    assert_eq!(with_headers(addr, "OPTIONS", summary, &preflight).await.0, 404);
    let bearer = format!("Bearer {}", token("acme", "alice"));
    let read = [
        ("Origin", "https://dash.example.com"),
        ("Authorization", bearer.as_str()),
    ];
    let (status, headers) = with_headers(addr, "GET", summary, &read).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_policy_and_gzipped() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let (status, headers) = with_headers(addr, "GET", "/dashboard", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-encoding"], "gzip");
    assert!(headers["content-security-policy"].starts_with("default-src 'none'; script-src 'self';"));
    assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
    let (status, headers) = with_headers(addr, "GET", "/dashboard/uPlot.iife.min.js", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(with_headers(addr, "GET", "/dashboard/secrets.txt", &[]).await.0, 404);
}
