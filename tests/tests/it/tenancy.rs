//! Tenancy over HTTP: organization B can neither read, change nor end organization A's objects on
//! any route, even when it sends A's ids; hostile organization ids are refused before any SQL; legal
//! ids reach SQL quoted (ids that differ only in case are separate schemas).

use integration_tests::{SECRET, TestApp, http, token};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use uuid::Uuid;

/// The create routes with a body carrying the client id and a marker that tells the writers apart.
fn creates(id: Uuid, marker: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "/api/v1/metrics/command-execution",
            "command_executions",
            json!({"id": id, "command_name": marker, "execution_time_ms": 10, "status": "success"}),
        ),
        (
            "/api/v1/metrics/agent-interaction",
            "agent_interactions",
            json!({"id": id, "agent_name": marker, "interaction_type": "response", "input_tokens": 1,
                   "output_tokens": 2, "processing_time_ms": 3, "success": true}),
        ),
        (
            "/api/v1/metrics/productivity",
            "productivity_metrics",
            json!({"id": id, "metric_type": "efficiency_score", "value": 71, "unit": marker,
                   "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"}),
        ),
        (
            "/api/v1/metrics/session/start",
            "user_sessions",
            json!({"id": id, "context": {"owner": marker}}),
        ),
    ]
}

/// The marker column of each table, as the create bodies above fill it.
fn marker_of(table: &str) -> &'static str {
    match table {
        "command_executions" => "command_name",
        "agent_interactions" => "agent_name",
        "productivity_metrics" => "unit",
        _ => "context->>'owner'",
    }
}

async fn markers(given: &TestApp, org: &str, table: &str, id: Uuid) -> Vec<String> {
    given
        .column(
            &format!("SELECT {} FROM \"org_{org}\".{table} WHERE id = $1", marker_of(table)),
            &[&id],
        )
        .await
}

#[tokio::test]
async fn no_organization_can_read_change_or_end_another_organizations_objects() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let (acme, globex) = (token("acme", "alice"), token("globex", "alice"));
    let id = Uuid::new_v4();

    for (path, _, body) in creates(id, "acme") {
        let (status, _, answer) = http(addr, "POST", path, Some(&acme), "application/json", &body.to_string()).await;
        assert_eq!(status, 201, "{path}: {answer}");
    }
    let batch_id = Uuid::new_v4();
    let batch = |marker: &str| {
        json!({"command_executions": [{"id": batch_id, "command_name": marker, "execution_time_ms": 1, "status": "success"}]})
            .to_string()
    };
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/v1/metrics/batch",
        Some(&acme),
        "application/json",
        &batch("acme"),
    )
    .await;
    assert_eq!(status, 202);

    // The same user name sends A's ids with its own content on every route.
    for (path, _, body) in creates(id, "globex") {
        let (status, _, answer) = http(addr, "POST", path, Some(&globex), "application/json", &body.to_string()).await;
        assert_eq!(status, 201, "{path}: {answer}");
        assert_ne!(
            answer["data"].get("context"),
            Some(&json!({"owner": "acme"})),
            "{path} leaked A's record"
        );
    }
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/v1/metrics/batch",
        Some(&globex),
        "application/json",
        &batch("globex"),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _, _) = http(
        addr,
        "PUT",
        &format!("/api/v1/metrics/session/{id}"),
        Some(&globex),
        "application/json",
        r#"{"commands_executed": 99}"#,
    )
    .await;
    assert_eq!(status, 200, "B updates its own session with that id, not A's");
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/v1/metrics/session/end",
        Some(&globex),
        "application/json",
        &json!({"session_id": id}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "B ends its own session with that id, not A's");
    given.drain().await;

    for (_, table, _) in creates(id, "") {
        assert_eq!(
            markers(&given, "acme", table, id).await,
            ["acme"],
            "A's {table} untouched"
        );
        assert_eq!(
            markers(&given, "globex", table, id).await,
            ["globex"],
            "B's {table} in B's schema"
        );
    }
    assert_eq!(markers(&given, "acme", "command_executions", batch_id).await, ["acme"]);
    assert_eq!(
        markers(&given, "globex", "command_executions", batch_id).await,
        ["globex"]
    );
    let session = given
        .db()
        .await
        .query_one(
            "SELECT status, commands_executed FROM \"org_acme\".user_sessions WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (session.get::<_, String>(0), session.get::<_, i32>(1)),
        ("active".to_owned(), 0),
        "A's session neither changed nor ended"
    );
}

#[tokio::test]
async fn a_session_id_known_only_to_another_organization_is_not_found() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let (status, _, started) = http(
        addr,
        "POST",
        "/api/v1/metrics/session/start",
        Some(&token("acme", "alice")),
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(status, 201);
    let id = started["data"]["id"].as_str().unwrap().to_owned();
    let globex = token("globex", "alice");
    let (status, _, answer) = http(
        addr,
        "PUT",
        &format!("/api/v1/metrics/session/{id}"),
        Some(&globex),
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(!answer.to_string().contains("acme"), "a 404 names nothing of A's");
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/v1/metrics/session/end",
        Some(&globex),
        "application/json",
        &json!({"session_id": id}).to_string(),
    )
    .await;
    assert_eq!(status, 404);
}

fn signed_for(org: &str) -> String {
    let claims = json!({"sub": "alice", "org_id": org, "exp": chrono::Utc::now().timestamp() + 600});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn organization_ids_with_identifier_tricks_are_refused_before_any_sql() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let long = "a".repeat(49);
    let hostile = [
        "acme\"; DROP SCHEMA public CASCADE; --",
        "acme\"",
        "..",
        "../public",
        "public.tenants",
        "acme tenant",
        "ünïcode",
        "acme\u{0}",
        "acme\n",
        "",
        long.as_str(),
        "pg_catalog\".\"pg_class",
    ];
    let session = Uuid::new_v4();
    let routes = [
        ("POST", "/api/v1/metrics/command-execution".to_owned()),
        ("POST", "/api/v1/metrics/agent-interaction".to_owned()),
        ("POST", "/api/v1/metrics/productivity".to_owned()),
        ("POST", "/api/v1/metrics/session/start".to_owned()),
        ("PUT", format!("/api/v1/metrics/session/{session}")),
        ("POST", "/api/v1/metrics/session/end".to_owned()),
        ("POST", "/api/v1/metrics/batch".to_owned()),
        ("POST", "/api/v1/hooks/claude-code".to_owned()),
    ];
    for org in hostile {
        let bearer = signed_for(org);
        for (method, path) in &routes {
            let (status, _, answer) = http(addr, method, path, Some(&bearer), "application/json", "{}").await;
            assert_eq!(status, 401, "{org:?} on {method} {path}: {answer}");
            assert!(answer["message"].as_str().unwrap().contains("org_id"), "{answer}");
        }
    }
    let db = given.db().await;
    let schemas: i64 = db
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'org_%'", &[])
        .await
        .unwrap()
        .get(0);
    let tenants: i64 = db
        .query_one("SELECT count(*) FROM public.tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((schemas, tenants), (0, 0), "nothing reached the database");
    assert_eq!(receive_count(&given).await, 0, "nothing reached the queue");
}

async fn receive_count(given: &TestApp) -> usize {
    integration_tests::receive_all(&given.queue_url).await.len()
}

#[tokio::test]
async fn legal_ids_reach_sql_quoted_so_case_and_punctuation_are_kept() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let orgs = ["Acme", "acme", "ACME", "a-c_m-e", "select"];
    for org in orgs {
        let body = json!({"command_name": org, "execution_time_ms": 1, "status": "success"}).to_string();
        let (status, _, answer) = http(
            addr,
            "POST",
            "/api/v1/metrics/command-execution",
            Some(&token(org, "alice")),
            "application/json",
            &body,
        )
        .await;
        assert_eq!(status, 201, "{org}: {answer}");
    }
    let db = given.db().await;
    for org in orgs {
        let names: Vec<String> = db
            .query(
                &format!("SELECT command_name FROM \"org_{org}\".command_executions"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(names, [org], "{org} has its own schema with only its row");
    }
}
