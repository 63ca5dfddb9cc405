//! Organization settings over HTTP against the served local front (real DynamoDB item in moto,
//! real PostgreSQL): roles, validation, the legacy override item's migration, and each setting
//! reaching the route it governs.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{TestApp, admin_token, http, token};
use serde_json::{Value, json};

const SETTINGS: &str = "/api/v1/organization/settings";

/// A stack whose functions re-read settings on every request, served over HTTP.
async fn served() -> (TestApp, std::net::SocketAddr) {
    let given = TestApp::spawn_with(&[("SETTINGS_CACHE_MS", "0")]).await;
    let addr = given.serve_http().await;
    (given, addr)
}

async fn patch(addr: std::net::SocketAddr, bearer: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = http(
        addr,
        "PATCH",
        SETTINGS,
        Some(bearer),
        "application/json",
        &body.to_string(),
    )
    .await;
    (status, body)
}

async fn command(addr: std::net::SocketAddr, bearer: &str) -> u16 {
    let body = json!({"command_name": "build", "execution_time_ms": 5, "status": "success"});
    http(
        addr,
        "POST",
        "/api/v1/metrics/command-execution",
        Some(bearer),
        "application/json",
        &body.to_string(),
    )
    .await
    .0
}

#[tokio::test]
async fn members_read_admins_write_and_every_bad_field_is_named() {
    let (_given, addr) = served().await;
    let (admin, member) = (admin_token("acme", "lead"), token("acme", "alice"));
    // A member may read but not write.
    let (status, _, read) = http(addr, "GET", SETTINGS, Some(&member), "application/json", "").await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"]["settings"]["data_retention"]["user_sessions_days"], 365);
    assert_eq!(patch(addr, &member, &json!({"otlp": {"enabled": false}})).await.0, 403);
    // An admin's invalid write names each field and stores nothing.
    let (status, refused) = patch(
        addr,
        &admin,
        &json!({"data_retention": {"otlp_days": 0}, "alerts": {"webhook_url": "ftp://x"}, "colour": 1}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let mut fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["alerts.webhook_url", "colour", "data_retention.otlp_days"]);
    // A valid one is stored, seen by a member, and only in its organization.
    let (status, written) = patch(addr, &admin, &json!({"data_retention": {"otlp_days": 30}})).await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["data"]["version"], 1);
    let (_, _, read) = http(addr, "GET", SETTINGS, Some(&member), "application/json", "").await;
    assert_eq!(read["data"]["settings"]["data_retention"]["otlp_days"], 30);
    let (_, _, other) = http(
        addr,
        "GET",
        SETTINGS,
        Some(&token("globex", "bob")),
        "application/json",
        "",
    )
    .await;
    assert_eq!(other["data"]["settings"]["data_retention"]["otlp_days"], 90);
}

#[tokio::test]
async fn a_rate_limit_set_by_an_admin_is_what_the_routes_admit() {
    let (_given, addr) = served().await;
    let admin = admin_token("acme", "lead");
    let limits = json!({"rate_limiting": {"window_ms": 86_400_000, "max_requests": 3}});
    assert_eq!(patch(addr, &admin, &limits).await.0, 200);
    let alice = token("acme", "alice");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(command(addr, &alice).await);
    }
    // The admin's write itself was counted in the same bucket, under the old limits: at most
    // three more pass, and the rest are refused.
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert!(created <= 3 && statuses.contains(&429), "{statuses:?}");
    // Another organization keeps the stage's limits.
    assert_eq!(command(addr, &token("globex", "bob")).await, 201);
}

#[tokio::test]
async fn batch_size_otlp_and_content_settings_govern_their_routes() {
    let (given, addr) = served().await;
    let admin = admin_token("acme", "lead");
    let alice = token("acme", "alice");
    let batch = json!({"command_executions": vec![json!({"command_name": "b", "execution_time_ms": 1, "status": "success"}); 25]})
        .to_string();
    let post_batch = || {
        http(
            addr,
            "POST",
            "/api/v1/metrics/batch",
            Some(&alice),
            "application/json",
            &batch,
        )
    };
    assert_eq!(post_batch().await.0, 400, "25 is over the stage's 20");
    assert_eq!(
        patch(addr, &admin, &json!({"performance": {"batch_size_limit": 30}}))
            .await
            .0,
        200
    );
    let (status, _, accepted) = post_batch().await;
    assert_eq!(status, 202, "{accepted}");

    let otlp = include_str!("../../../events/otlp/metrics.json");
    let send_otlp = || http(addr, "POST", "/otlp/v1/metrics", Some(&alice), "application/json", otlp);
    assert_eq!(send_otlp().await.0, 200);
    assert_eq!(patch(addr, &admin, &json!({"otlp": {"enabled": false}})).await.0, 200);
    assert_eq!(send_otlp().await.0, 403, "an exporter does not retry a 403");
    assert_eq!(patch(addr, &admin, &json!({"otlp": {"enabled": null}})).await.0, 200);
    assert_eq!(send_otlp().await.0, 200, "null restores the default");
    drop(given);
}

#[tokio::test]
async fn a_legacy_override_item_is_read_and_then_migrated_by_the_first_write() {
    let (given, addr) = served().await;
    let table = &given.table;
    integration_tests::dynamo()
        .await
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S("limits#acme".into()))
        .item("max_requests", AttributeValue::N("50".into()))
        .item("batch_size", AttributeValue::N("100".into()))
        .send()
        .await
        .unwrap();
    let admin = admin_token("acme", "lead");
    let (_, _, read) = http(addr, "GET", SETTINGS, Some(&admin), "application/json", "").await;
    assert_eq!(read["data"]["settings"]["rate_limiting"]["max_requests"], 50);
    assert_eq!(read["data"]["settings"]["performance"]["batch_size_limit"], 100);
    let (status, written) = patch(addr, &admin, &json!({"live": {"max_connections": 3}})).await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(
        written["data"]["overrides"],
        json!({"rate_limiting": {"max_requests": 50}, "performance": {"batch_size_limit": 100}, "live": {"max_connections": 3}})
    );
    let item = integration_tests::dynamo()
        .await
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S("limits#acme".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(
        !item.contains_key("max_requests") && !item.contains_key("batch_size"),
        "{item:?}"
    );
    assert!(item.contains_key("settings"));
}

#[tokio::test]
async fn a_webhook_gets_a_secret_admins_see_and_members_see_only_its_origin() {
    let (_given, addr) = served().await;
    let admin = admin_token("acme", "lead");
    let url = "https://hooks.example.com/services/T000/B000/XXXX";
    let (_, written) = patch(addr, &admin, &json!({"alerts": {"webhook_url": url}})).await;
    assert!(
        written["data"]["webhook_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let (_, _, member) = http(
        addr,
        "GET",
        SETTINGS,
        Some(&token("acme", "alice")),
        "application/json",
        "",
    )
    .await;
    assert_eq!(
        member["data"]["settings"]["alerts"]["webhook_url"],
        "https://hooks.example.com"
    );
    assert!(member["data"].get("webhook_secret").is_none());
}
