//! Organization settings over HTTP against the served local front (real DynamoDB item in moto,
//! real PostgreSQL): roles, validation, the legacy override item's migration, and each setting
//! reaching the route it governs.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{TestApp, admin_token, http, token};
use serde_json::{Value, json};

const SETTINGS: &str = "/api/v1/organization/settings";

/// A stack whose functions re-read settings on every request, whose operators let admins raise
/// the batch size to 100, served over HTTP.
async fn served() -> (TestApp, std::net::SocketAddr) {
    let given = TestApp::spawn_with(&[
        ("SETTINGS_CACHE_MS", "0"),
        (
            "ORGANIZATION_SETTINGS_CEILINGS",
            r#"{"performance": {"batch_size_limit": 100}}"#,
        ),
    ])
    .await;
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
    // Capacity past the stage's ceiling, and a processing time under the database's own
    // timeout, are refused by name; lowering is an admin's choice.
    let (status, refused) = patch(
        addr,
        &admin,
        &json!({"performance": {"concurrent_requests": 1000, "processing_timeout_ms": 100}, "live": {"max_connections": 100000}}),
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
    assert_eq!(
        fields,
        [
            "live.max_connections",
            "performance.concurrent_requests",
            "performance.processing_timeout_ms"
        ]
    );
    // The stage's rate over a day's window would be a day's requests at once: refused by name.
    let (status, refused) = patch(
        addr,
        &admin,
        &json!({"rate_limiting": {"window_ms": 86_400_000, "max_requests": 17_280_000, "user_max_requests": 864_000}}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "rate_limiting.max_requests", "{refused}");
    assert_eq!(
        refused["errors"][1]["field"], "rate_limiting.user_max_requests",
        "{refused}"
    );
    assert_eq!(
        patch(addr, &admin, &json!({"live": {"max_connections": 10}})).await.0,
        200
    );
    // A valid one is stored, seen by a member, and only in its organization.
    let (status, written) = patch(addr, &admin, &json!({"data_retention": {"otlp_days": 30}})).await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["data"]["version"], 2);
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

#[tokio::test]
async fn racing_batches_never_exceed_the_organizations_concurrent_requests_until_the_worker_writes_them() {
    // GIVEN acme allows five batches in flight, and no worker is running
    let (given, addr) = served().await;
    let admin = admin_token("acme", "lead");
    assert_eq!(
        patch(addr, &admin, &json!({"performance": {"concurrent_requests": 5}}))
            .await
            .0,
        200
    );
    let body =
        json!({"command_executions": [{"command_name": "b", "execution_time_ms": 1, "status": "success"}]}).to_string();
    // WHEN twenty batches race
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let (body, bearer) = (body.clone(), token("acme", &format!("dev{i}")));
            tokio::spawn(async move {
                http(
                    addr,
                    "POST",
                    "/api/v1/metrics/batch",
                    Some(&bearer),
                    "application/json",
                    &body,
                )
                .await
            })
        })
        .collect();
    let mut accepted = 0;
    for send in sends {
        let (status, _, answer) = send.await.unwrap();
        match status {
            202 => accepted += 1,
            429 => assert_eq!(answer["rate_limit"]["scope"], "batches_in_flight", "{answer}"),
            other => panic!("{other}: {answer}"),
        }
    }
    // THEN exactly five are accepted; once the worker has written them, more are
    assert_eq!(accepted, 5);
    assert_eq!(given.drain().await, 5);
    let (status, _, answer) = http(
        addr,
        "POST",
        "/api/v1/metrics/batch",
        Some(&token("acme", "late")),
        "application/json",
        &body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test]
async fn a_batch_the_worker_cannot_write_in_time_comes_back_and_keeps_its_slot_until_written() {
    // GIVEN acme allows one batch in flight and a second to write one (the stage's database
    // timeout, the shortest allowed), and its table is locked
    let given = TestApp::spawn_with(&[("SETTINGS_CACHE_MS", "0"), ("DATABASE_TIMEOUT_MS", "1000")]).await;
    let addr = given.serve_http().await;
    let (admin, alice) = (admin_token("acme", "lead"), token("acme", "alice"));
    let body =
        json!({"command_executions": [{"command_name": "b", "execution_time_ms": 1, "status": "success"}]}).to_string();
    let send = || {
        http(
            addr,
            "POST",
            "/api/v1/metrics/batch",
            Some(&alice),
            "application/json",
            &body,
        )
    };
    assert_eq!(command(addr, &alice).await, 201, "the schema exists");
    let limits = json!({"performance": {"concurrent_requests": 1, "processing_timeout_ms": 1000}});
    assert_eq!(patch(addr, &admin, &limits).await.0, 200);
    assert_eq!(send().await.0, 202);
    let mut locker = given.db().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE \"org_acme\".command_executions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // WHEN the worker gets the batch
    let (received, failed) = given.poller().await.poll_once().await.unwrap();
    // THEN it gives up within the organization's budget (or the database's, the same here): the
    // message will come back, and the batch still holds its slot
    assert_eq!((received, failed), (1, 1));
    assert_eq!(send().await.0, 429, "still in flight");
    lock.rollback().await.unwrap();
    // Once written, the slot is free again.
    assert!(given.drain().await >= 1);
    assert_eq!(given.count("acme", "command_executions").await, 2);
    assert_eq!(send().await.0, 202);
}
