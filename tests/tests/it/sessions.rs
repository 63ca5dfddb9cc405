//! The session lifecycle on the real PostgreSQL: start, merge updates, end once, ownership across
//! users and organizations, idempotent starts, and the reaper.

use integration_tests::{TestApp, answer, request};
use lambda_http::RequestExt;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use serde_json::{Value, json};
use uuid::Uuid;

async fn start(given: &TestApp, org: &str, user: &str, body: Value) -> integration_tests::Answer {
    answer(
        session_start::handle(&given.app, request("session-start", org, user, &body))
            .await
            .unwrap(),
    )
    .await
}

async fn update(given: &TestApp, org: &str, user: &str, id: Uuid, body: Value) -> integration_tests::Answer {
    let req = request("session-update", org, user, &body).with_path_parameters(QueryMap::from(
        std::collections::HashMap::from([("id".to_owned(), id.to_string())]),
    ));
    answer(session_update::handle(&given.app, req).await.unwrap()).await
}

async fn end(given: &TestApp, org: &str, user: &str, body: Value) -> integration_tests::Answer {
    answer(
        session_end::handle(&given.app, request("session-end", org, user, &body))
            .await
            .unwrap(),
    )
    .await
}

async fn row(given: &TestApp, org: &str, id: Uuid) -> tokio_postgres::Row {
    given
        .db()
        .await
        .query_one(
            &format!(
                "SELECT user_id, status, commands_executed, agents_used, context, session_end, total_duration_ms, \
                 productivity_score, session_start FROM \"org_{org}\".user_sessions WHERE id = $1"
            ),
            &[&id],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_session_lives_from_start_to_end() {
    let given = TestApp::spawn().await;
    let started = start(&given, "acme", "alice", json!({"context": {"editor": "claude-code"}})).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id: Uuid = started.body["data"]["id"].as_str().unwrap().parse().unwrap();

    let a = update(
        &given,
        "acme",
        "alice",
        id,
        json!({"commands_executed": 4, "agents_used": ["planner", "coder"], "context": {"branch": "main"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = update(
        &given,
        "acme",
        "alice",
        id,
        json!({"commands_executed": 2, "agents_used": ["coder", "reviewer"]}),
    )
    .await;
    assert_eq!(
        a.body["data"]["commands_executed"], 4,
        "the running total never goes down"
    );
    assert_eq!(a.body["data"]["agents_used"], json!(["planner", "coder", "reviewer"]));

    let ended = end(
        &given,
        "acme",
        "alice",
        json!({"session_id": id, "productivity_score": 82.5, "commands_executed": 9}),
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.body["data"]["status"], "completed");

    let r = row(&given, "acme", id).await;
    assert_eq!(r.get::<_, String>(0), "alice");
    assert_eq!(r.get::<_, String>(1), "completed");
    assert_eq!(r.get::<_, i32>(2), 9);
    assert_eq!(r.get::<_, Vec<String>>(3), ["planner", "coder", "reviewer"]);
    assert_eq!(r.get::<_, Value>(4), json!({"editor": "claude-code", "branch": "main"}));
    let session_end: chrono::DateTime<chrono::Utc> = r.get(5);
    let session_start: chrono::DateTime<chrono::Utc> = r.get(8);
    let duration: i64 = r.get(6);
    assert_eq!(
        duration,
        (session_end - session_start).num_milliseconds(),
        "computed by the server"
    );
    assert_eq!(r.get::<_, f64>(7), 82.5);
    assert_eq!(ended.body["data"]["total_duration_ms"], duration);
}

#[tokio::test]
async fn an_ended_session_cannot_be_ended_again_or_updated() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    assert_eq!(start(&given, "acme", "alice", json!({"id": id})).await.status, 201);
    assert_eq!(
        end(&given, "acme", "alice", json!({"session_id": id})).await.status,
        200
    );
    let again = end(&given, "acme", "alice", json!({"session_id": id})).await;
    assert_eq!(again.status, 409);
    assert!(again.body["message"].as_str().unwrap().contains("already ended"));
    let late = update(&given, "acme", "alice", id, json!({"commands_executed": 50})).await;
    assert_eq!(late.status, 409);
    assert_eq!(row(&given, "acme", id).await.get::<_, i32>(2), 0, "nothing changed");
}

#[tokio::test]
async fn another_user_of_the_organization_cannot_touch_a_session() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    start(&given, "acme", "alice", json!({"id": id})).await;
    assert_eq!(
        update(&given, "acme", "bob", id, json!({"commands_executed": 7}))
            .await
            .status,
        403
    );
    assert_eq!(end(&given, "acme", "bob", json!({"session_id": id})).await.status, 403);
    let r = row(&given, "acme", id).await;
    assert_eq!((r.get::<_, String>(1), r.get::<_, i32>(2)), ("active".to_owned(), 0));
}

#[tokio::test]
async fn another_organization_cannot_see_a_session() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    start(&given, "acme", "alice", json!({"id": id})).await;
    // Same user name, same session id, other organization: a different schema, so no such session.
    assert_eq!(
        update(&given, "globex", "alice", id, json!({"commands_executed": 7}))
            .await
            .status,
        404
    );
    assert_eq!(
        end(&given, "globex", "alice", json!({"session_id": id})).await.status,
        404
    );
    let r = row(&given, "acme", id).await;
    assert_eq!((r.get::<_, String>(1), r.get::<_, i32>(2)), ("active".to_owned(), 0));
}

#[tokio::test]
async fn unknown_sessions_are_not_found() {
    let given = TestApp::spawn().await;
    assert_eq!(
        update(&given, "acme", "alice", Uuid::new_v4(), json!({})).await.status,
        404
    );
    assert_eq!(
        end(&given, "acme", "alice", json!({"session_id": Uuid::new_v4()}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn starting_again_with_the_same_id_keeps_one_session() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    let body = json!({"id": id, "session_start": "2025-09-08T09:00:00Z"});
    let first = start(&given, "acme", "alice", body.clone()).await;
    let second = start(&given, "acme", "alice", body).await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(first.body["data"], second.body["data"]);
    assert_eq!(given.count("acme", "user_sessions").await, 1);
    let session_start: chrono::DateTime<chrono::Utc> = row(&given, "acme", id).await.get(8);
    assert_eq!(session_start.to_rfc3339(), "2025-09-08T09:00:00+00:00");
}

#[tokio::test]
async fn the_reaper_abandons_silent_sessions_in_every_organization() {
    let given = TestApp::spawn().await;
    let (silent, lively, other_org) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    start(&given, "acme", "alice", json!({"id": silent})).await;
    start(&given, "acme", "alice", json!({"id": lively})).await;
    start(&given, "globex", "carol", json!({"id": other_org})).await;
    let db = given.db().await;
    for (org, id) in [("acme", silent), ("globex", other_org)] {
        db.execute(
            &format!("UPDATE \"org_{org}\".user_sessions SET updated_at = now() - interval '2 hours' WHERE id = $1"),
            &[&id],
        )
        .await
        .unwrap();
    }

    let result = given
        .stack
        .reaper
        .handle(local_front::scheduler::scheduled_event())
        .await
        .unwrap();

    assert_eq!(result["abandoned"], 2);
    assert_eq!(row(&given, "acme", silent).await.get::<_, String>(1), "abandoned");
    assert_eq!(row(&given, "acme", lively).await.get::<_, String>(1), "active");
    assert_eq!(row(&given, "globex", other_org).await.get::<_, String>(1), "abandoned");
    let r = row(&given, "acme", silent).await;
    let session_end: chrono::DateTime<chrono::Utc> = r.get(5);
    assert!(
        session_end < chrono::Utc::now() - chrono::Duration::minutes(110),
        "ends at the last activity"
    );

    // A silent session takes no more updates, but a late end still completes it.
    assert_eq!(update(&given, "acme", "alice", silent, json!({})).await.status, 409);
    let ended = end(&given, "acme", "alice", json!({"session_id": silent})).await;
    assert_eq!(ended.status, 200);
    assert_eq!(ended.body["data"]["status"], "completed");

    let again = given
        .stack
        .reaper
        .handle(local_front::scheduler::scheduled_event())
        .await
        .unwrap();
    assert_eq!(again["abandoned"], 0);
}

#[tokio::test]
async fn the_idle_timeout_is_configurable() {
    let given = TestApp::spawn_with(&[("SESSION_IDLE_TIMEOUT_MS", "100")]).await;
    let id = Uuid::new_v4();
    start(&given, "acme", "alice", json!({"id": id})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let result = given
        .stack
        .reaper
        .handle(local_front::scheduler::scheduled_event())
        .await
        .unwrap();
    assert_eq!(result["abandoned"], 1);
}
