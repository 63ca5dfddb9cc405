//! Every metric route on the real services: its success, and each class of error
//! (400, 401, 413, 415, 429, 503), table-driven so no route is forgotten.

use integration_tests::{Answer, TestApp, answer, free_port, request};
use lambda_http::{Body, Request, RequestExt};
use serde_json::{Value, json};
use uuid::Uuid;

/// A route under test: its binary, a valid body, an invalid body and the field it names.
struct Route {
    binary: &'static str,
    valid: fn(Uuid) -> Value,
    invalid: Value,
    invalid_field: &'static str,
    created: u16,
}

const SESSION: &str = "6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f";

fn routes() -> Vec<Route> {
    vec![
        Route {
            binary: "command-execution",
            valid: |id| json!({"id": id, "command_name": "build", "execution_time_ms": 10, "status": "success"}),
            invalid: json!({"command_name": "build", "execution_time_ms": 10, "status": "exploded"}),
            invalid_field: "status",
            created: 201,
        },
        Route {
            binary: "agent-interaction",
            valid: |id| {
                json!({"id": id, "agent_name": "coder", "interaction_type": "response", "input_tokens": 1,
                       "output_tokens": 2, "processing_time_ms": 3, "success": true})
            },
            invalid: json!({"agent_name": "coder", "interaction_type": "response", "input_tokens": -5,
                            "output_tokens": 2, "processing_time_ms": 3, "success": true}),
            invalid_field: "input_tokens",
            created: 201,
        },
        Route {
            binary: "productivity",
            valid: |id| {
                json!({"id": id, "metric_type": "efficiency_score", "value": 71, "unit": "index",
                       "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"})
            },
            invalid: json!({"metric_type": "efficiency_score", "value": 71, "unit": "index",
                            "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T08:00:00Z"}),
            invalid_field: "period_end",
            created: 201,
        },
        Route {
            binary: "session-start",
            valid: |id| json!({"id": id}),
            invalid: json!({"context": "not an object"}),
            invalid_field: "context",
            created: 201,
        },
        Route {
            binary: "session-update",
            valid: |_| json!({"commands_executed": 3}),
            invalid: json!({"agents_used": [1]}),
            invalid_field: "agents_used[0]",
            created: 200,
        },
        Route {
            binary: "session-end",
            valid: |_| json!({"session_id": SESSION}),
            invalid: json!({"session_id": SESSION, "productivity_score": 250}),
            invalid_field: "productivity_score",
            created: 200,
        },
    ]
}

async fn call(given: &TestApp, binary: &str, req: Request) -> Answer {
    let app = &given.app;
    let response = match binary {
        "command-execution" => command_execution::handle(app, req).await,
        "agent-interaction" => agent_interaction::handle(app, req).await,
        "productivity" => productivity::handle(app, req).await,
        "session-start" => session_start::handle(app, req).await,
        "session-update" => session_update::handle(app, req).await,
        "session-end" => session_end::handle(app, req).await,
        other => panic!("unknown route {other}"),
    };
    answer(response.unwrap()).await
}

fn route_request(binary: &str, body: &Value) -> Request {
    let req = request(binary, "acme", "alice", body);
    if binary == "session-update" {
        return req.with_path_parameters(lambda_http::aws_lambda_events::query_map::QueryMap::from(
            std::collections::HashMap::from([("id".to_owned(), SESSION.to_owned())]),
        ));
    }
    req
}

/// Session routes need a session to act on.
async fn prepare(given: &TestApp, binary: &str) {
    if binary == "session-update" || binary == "session-end" {
        let started = call(
            given,
            "session-start",
            request("session-start", "acme", "alice", &json!({"id": SESSION})),
        )
        .await;
        assert_eq!(started.status, 201);
    }
}

#[tokio::test]
async fn every_route_succeeds_and_refuses_bad_input_by_name() {
    for route in routes() {
        let given = TestApp::spawn().await;
        prepare(&given, route.binary).await;
        let id = Uuid::new_v4();
        let ok = call(&given, route.binary, route_request(route.binary, &(route.valid)(id))).await;
        assert_eq!(ok.status, route.created, "{}: {}", route.binary, ok.body);
        assert_eq!(ok.body["success"], true);
        assert!(ok.body["rate_limit"]["remaining"].is_number());
        assert!(ok.body["performance"]["processing_latency_ms"].is_number());

        let bad = call(&given, route.binary, route_request(route.binary, &route.invalid)).await;
        assert_eq!(bad.status, 400, "{}: {}", route.binary, bad.body);
        assert_eq!(bad.body["errors"][0]["field"], route.invalid_field, "{}", route.binary);
    }
}

#[tokio::test]
async fn client_ids_are_idempotent_on_every_create_route() {
    let given = TestApp::spawn().await;
    for (binary, table) in [
        ("command-execution", "command_executions"),
        ("agent-interaction", "agent_interactions"),
        ("productivity", "productivity_metrics"),
        ("session-start", "user_sessions"),
    ] {
        let route = routes().into_iter().find(|r| r.binary == binary).unwrap();
        let id = Uuid::new_v4();
        let first = call(&given, binary, route_request(binary, &(route.valid)(id))).await;
        let second = call(&given, binary, route_request(binary, &(route.valid)(id))).await;
        assert_eq!((first.status, second.status), (201, 201), "{binary}");
        assert_eq!(first.body["data"], second.body["data"], "{binary}");
        assert_eq!(first.body["data"]["id"], id.to_string());
        assert_eq!(given.count("acme", table).await, 1, "{binary}");
    }
}

#[tokio::test]
async fn every_route_refuses_missing_tokens_wrong_types_and_oversize_bodies() {
    let given = TestApp::spawn_with(&[("COLLECTION_MAX_BODY_BYTES", "2048")]).await;
    for route in routes() {
        let body = (route.valid)(Uuid::new_v4());

        let mut anonymous = route_request(route.binary, &body);
        anonymous.headers_mut().remove("authorization");
        assert_eq!(
            call(&given, route.binary, anonymous).await.status,
            401,
            "{}",
            route.binary
        );

        let mut form = route_request(route.binary, &body);
        form.headers_mut().insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(call(&given, route.binary, form).await.status, 415, "{}", route.binary);

        let mut huge = route_request(route.binary, &body);
        *huge.body_mut() = Body::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(4096)));
        assert_eq!(call(&given, route.binary, huge).await.status, 413, "{}", route.binary);

        // Refused on size alone: a parser would have answered 400 for this body.
        let mut huge_garbage = route_request(route.binary, &body);
        *huge_garbage.body_mut() = Body::from("[".repeat(4096));
        let answer = call(&given, route.binary, huge_garbage).await;
        assert_eq!(answer.status, 413, "{}: {}", route.binary, answer.body);

        let mut bomb = route_request(route.binary, &body);
        bomb.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
        *bomb.body_mut() = Body::from(gzip_bomb());
        let answer = call(&given, route.binary, bomb).await;
        assert_eq!(answer.status, 415, "{}: {}", route.binary, answer.body);
        assert!(answer.body["message"].as_str().unwrap().contains("Content-Encoding"));
    }
}

/// Ten megabytes of zeros gzipped to about ten kilobytes, made by the system's `gzip`.
fn gzip_bomb() -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut gzip = Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip is installed");
    let mut stdin = gzip.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&vec![0u8; 10 << 20]).unwrap());
    let output = gzip.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success() && output.stdout.len() < 64 << 10);
    output.stdout
}

#[tokio::test]
async fn every_route_is_rate_limited() {
    for route in routes() {
        let given =
            TestApp::spawn_with(&[("RATE_LIMIT_MAX_REQUESTS", "1"), ("RATE_LIMIT_WINDOW_MS", "86400000")]).await;
        let first = call(
            &given,
            route.binary,
            route_request(route.binary, &(route.valid)(Uuid::new_v4())),
        )
        .await;
        assert_ne!(first.status, 429, "{}", route.binary);
        let second = call(
            &given,
            route.binary,
            route_request(route.binary, &(route.valid)(Uuid::new_v4())),
        )
        .await;
        assert_eq!(second.status, 429, "{}", route.binary);
        assert!(second.headers.contains_key("retry-after"));
    }
}

#[tokio::test]
async fn every_route_answers_503_when_the_database_is_unreachable() {
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/metrics", free_port());
    let given = TestApp::spawn_on(&unreachable, &[("DATABASE_TIMEOUT_MS", "1000")]).await;
    for route in routes() {
        let a = call(
            &given,
            route.binary,
            route_request(route.binary, &(route.valid)(Uuid::new_v4())),
        )
        .await;
        assert_eq!(a.status, 503, "{}: {}", route.binary, a.body);
        assert_eq!(a.body["retry_after"], 30);
        assert_eq!(a.body["message"], "Database temporarily unavailable");
    }
}

#[tokio::test]
async fn health_reports_each_dependency() {
    let given = TestApp::spawn().await;
    let req = lambda_http::request::from_str(integration_tests::event("health")).unwrap();
    let a = answer(health::handle(&given.stack.health, req).await.unwrap()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    for dependency in ["postgres", "dynamodb", "sqs"] {
        assert_eq!(a.body["data"]["checks"][dependency]["status"], "up", "{dependency}");
    }

    let unreachable = format!("postgres://postgres@127.0.0.1:{}/metrics", free_port());
    let sick = TestApp::spawn_on(&unreachable, &[("DATABASE_TIMEOUT_MS", "1000")]).await;
    let req = lambda_http::request::from_str(integration_tests::event("health")).unwrap();
    let a = answer(health::handle(&sick.stack.health, req).await.unwrap()).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["data"]["checks"]["postgres"]["status"], "down");
    assert_eq!(a.body["data"]["checks"]["sqs"]["status"], "up");
    assert!(!a.body.to_string().contains("127.0.0.1"), "no detail in a 5xx body");
}

#[tokio::test]
async fn health_reports_a_missing_queue_and_table() {
    let given = TestApp::spawn_with(&[
        ("BATCH_QUEUE_URL", "http://127.0.0.1:1/123456789012/nope"),
        ("RATE_LIMIT_TABLE_NAME", "no-such-table"),
    ])
    .await;
    let req = lambda_http::request::from_str(integration_tests::event("health")).unwrap();
    let a = answer(health::handle(&given.stack.health, req).await.unwrap()).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["data"]["checks"]["dynamodb"]["status"], "down");
    assert_eq!(a.body["data"]["checks"]["sqs"]["status"], "down");
    assert_eq!(a.body["data"]["checks"]["postgres"]["status"], "up");
}
