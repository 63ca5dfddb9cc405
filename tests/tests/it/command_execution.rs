//! The command-execution handler on the real PostgreSQL and DynamoDB (moto).

use integration_tests::{TestApp, answer, command_execution_request, spec_command_example};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn the_event_fixture_is_stored_in_its_organizations_schema() {
    let given = TestApp::spawn().await;
    let req = lambda_http::request::from_str(integration_tests::COMMAND_EXECUTION_EVENT).unwrap();
    // The fixture carries a token for org "demo" signed with the local default secret; re-sign
    // it with the test secret, keeping everything else of the event.
    let mut req = req;
    integration_tests::authorize(&mut req, "demo", "dev-user");

    let a = answer(command_execution::handle(&given.app, req).await.unwrap()).await;

    assert_eq!(a.status, 201, "{}", a.body);
    let id: Uuid = a.body["data"]["id"].as_str().unwrap().parse().unwrap();
    let row = given
        .db()
        .await
        .query_one(
            "SELECT organization_id, user_id, command_name, command_args, execution_time_ms, status, context \
             FROM \"org_demo\".command_executions WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "demo");
    assert_eq!(row.get::<_, String>(1), "dev-user");
    assert_eq!(row.get::<_, String>(2), "claude_code_generate");
    assert_eq!(
        row.get::<_, serde_json::Value>(3),
        json!({"language": "typescript", "framework": "express"})
    );
    assert_eq!(row.get::<_, f64>(4), 1250.0);
    assert_eq!(row.get::<_, String>(5), "success");
    assert_eq!(row.get::<_, serde_json::Value>(6)["complexity"], "medium");
    // The developer's own budget (600 a minute) is the one with fewer requests left.
    assert_eq!(a.headers["x-ratelimit-limit"], "600");
    assert_eq!(a.body["rate_limit"]["scope"], "user");
}

#[tokio::test]
async fn two_organizations_never_see_each_others_rows() {
    let given = TestApp::spawn().await;
    for org in ["acme", "globex", "acme"] {
        let a = answer(
            command_execution::handle(&given.app, command_execution_request(org, &spec_command_example()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 201);
    }
    assert_eq!(given.count("acme", "command_executions").await, 2);
    assert_eq!(given.count("globex", "command_executions").await, 1);
    let foreign: i64 = given
        .db()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM \"org_acme\".command_executions WHERE organization_id <> 'acme') + \
                    (SELECT count(*) FROM \"org_globex\".command_executions WHERE organization_id <> 'globex')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0);
}

#[tokio::test]
async fn a_new_organizations_first_requests_race_and_create_one_schema() {
    let given = TestApp::spawn().await;
    let requests = (0..16).map(|_| {
        let app = given.app.clone();
        tokio::spawn(async move {
            answer(
                command_execution::handle(&app, command_execution_request("newcorp", &spec_command_example()))
                    .await
                    .unwrap(),
            )
            .await
            .status
        })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap(), 201);
    }
    let db = given.db().await;
    let schemas: i64 = db
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname = 'org_newcorp'", &[])
        .await
        .unwrap()
        .get(0);
    let registered: i64 = db
        .query_one(
            "SELECT count(*) FROM public.tenants WHERE organization_id = 'newcorp'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((schemas, registered), (1, 1));
    assert_eq!(given.count("newcorp", "command_executions").await, 16);
}

#[tokio::test]
async fn a_client_id_sent_again_returns_the_stored_record_and_writes_nothing() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    let mut body = spec_command_example();
    body["id"] = json!(id.to_string());
    let sends = (0..6).map(|_| {
        let app = given.app.clone();
        let body = body.clone();
        tokio::spawn(async move {
            answer(
                command_execution::handle(&app, command_execution_request("acme", &body))
                    .await
                    .unwrap(),
            )
            .await
        })
    });
    let mut created = vec![];
    for send in sends.collect::<Vec<_>>() {
        let a = send.await.unwrap();
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.body["data"]["id"], id.to_string());
        created.push(a.body["data"]["created_at"].clone());
    }
    assert!(
        created.windows(2).all(|w| w[0] == w[1]),
        "every answer names the one stored row"
    );
    assert_eq!(given.count("acme", "command_executions").await, 1);
}

#[tokio::test]
async fn sanitised_text_is_what_gets_stored() {
    let given = TestApp::spawn().await;
    let mut body = spec_command_example();
    body["status"] = json!("error");
    body["error_message"] = json!("boom<script>fetch('//evil')</script> in Vec<String>");
    let a = answer(
        command_execution::handle(&given.app, command_execution_request("acme", &body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 201);
    let stored: String = given
        .db()
        .await
        .query_one("SELECT error_message FROM \"org_acme\".command_executions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "boom in Vec<String>");
}

#[tokio::test]
async fn invalid_bodies_store_nothing_and_name_every_field() {
    let given = TestApp::spawn().await;
    let a = answer(
        command_execution::handle(
            &given.app,
            command_execution_request(
                "acme",
                &json!({"command_name": "", "execution_time_ms": -1, "status": "ok", "user_id": "x"}),
            ),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);
    let fields: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["user_id", "command_name", "execution_time_ms", "status"]);
    let schemas: i64 = given
        .db()
        .await
        .query_one("SELECT count(*) FROM public.tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0, "a refused request provisions nothing");
}
