//! The batch path on the real services: endpoint → SQS (moto) → worker → PostgreSQL, with
//! redelivery, poison messages, outages and the importer.

use integration_tests::{
    PgCluster, TestApp, answer, deliver, fresh_database_on, http, receive_all, request, sqs, token,
};
use serde_json::{Value, json};
use shared::domain::batch::{Envelope, Metrics, Source};
use shared::domain::ids::{Caller, OrgId, UserId};

fn spec_batch() -> Value {
    json!({
        "command_executions": [{
            "command_name": "generate_component", "execution_time_ms": 1200, "status": "success",
            "command_args": {"type": "react"}, "context": {"project": "web_app"}
        }],
        "agent_interactions": [{
            "agent_name": "frontend-developer", "interaction_type": "tool_call", "input_tokens": 300,
            "output_tokens": 800, "processing_time_ms": 2100, "success": true,
            "metadata": {"task": "component_creation"}
        }],
        "productivity_metrics": [{
            "metric_type": "completion_rate", "value": 8.5, "unit": "tasks_per_hour",
            "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z",
            "dimensions": {"complexity": "medium"}
        }]
    })
}

fn envelope(org: &str, commands: usize) -> Envelope {
    let caller = Caller::member(OrgId::parse(org).unwrap(), UserId::parse("alice").unwrap());
    let items: Vec<Value> = (0..commands)
        .map(|i| json!({"command_name": "build", "execution_time_ms": i, "status": "success"}))
        .collect();
    Envelope::new(
        &caller,
        Source::Import,
        Metrics::from_request(&json!({ "command_executions": items }), 1000).unwrap(),
    )
}

async fn enqueue(given: &TestApp, body: &str) {
    sqs()
        .await
        .send_message()
        .queue_url(&given.queue_url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

async fn post_batch(given: &TestApp, body: &Value) -> integration_tests::Answer {
    answer(
        batch::handle(&given.stack.batch, request("batch", "acme", "alice", body))
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_batch_is_written_under_its_user_id_exactly_as_the_credential_names_it() {
    // GIVEN a user whose id looks like markup (ids are not text: `bob<b>` is not `bob`)
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    for user in ["bob<b>", "bob"] {
        // WHEN each sends a batch
        let (status, _, answer) = http(
            addr,
            "POST",
            "/api/v1/metrics/batch",
            Some(&token("acme", user)),
            "application/json",
            &spec_batch().to_string(),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    }
    given.drain().await;
    // THEN the worker writes each batch under its own sender, none dead-lettered
    let rows = given
        .db()
        .await
        .query(
            "SELECT user_id, count(*) FROM \"org_acme\".command_executions GROUP BY user_id ORDER BY user_id",
            &[],
        )
        .await
        .unwrap();
    let per_user: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(per_user, [("bob".to_owned(), 1), ("bob<b>".to_owned(), 1)]);
    assert!(integration_tests::receive_all(&given.dead_letter_url).await.is_empty());
}

#[tokio::test]
async fn the_specification_example_over_http_ends_up_as_rows() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let body = spec_batch().to_string();
    let (status, _, answer) = http(
        addr,
        "POST",
        "/api/v1/metrics/batch",
        Some(&token("acme", "alice")),
        "application/json",
        &body,
    )
    .await;
    let response = (status, answer);
    assert_eq!(response.0, 202, "{}", response.1);
    assert_eq!(response.1["data"]["command_executions"], 1);
    assert_eq!(response.1["data"]["agent_interactions"], 1);
    assert_eq!(response.1["data"]["productivity_metrics"], 1);
    assert_eq!(response.1["data"]["user_sessions"], 0);

    given.drain().await;

    for table in ["command_executions", "agent_interactions", "productivity_metrics"] {
        assert_eq!(given.count("acme", table).await, 1, "{table}");
    }
    let id = response.1["data"]["ids"]["agent_interactions"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let row = given
        .db()
        .await
        .query_one(
            "SELECT user_id, input_tokens, output_tokens FROM \"org_acme\".agent_interactions WHERE id::text = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice", "user from the token");
    assert_eq!((row.get::<_, i64>(1), row.get::<_, i64>(2)), (300, 800));
}

#[tokio::test]
async fn a_message_delivered_twice_even_concurrently_writes_each_metric_once() {
    let given = TestApp::spawn().await;
    let message = envelope("acme", 7).to_message().unwrap();
    // Two deliveries through the queue, and the worker racing itself on the same message.
    enqueue(&given, &message).await;
    enqueue(&given, &message).await;
    given.drain().await;
    let records = |id: &str| {
        json!([
            {"messageId": format!("{id}-a"), "body": message.clone()},
            {"messageId": format!("{id}-b"), "body": message.clone()}
        ])
    };
    let racing: Vec<_> = ["x", "y", "z"]
        .into_iter()
        .map(|id| {
            let (worker, records) = (given.stack.worker.clone(), records(id));
            tokio::spawn(async move { deliver(&worker, records).await })
        })
        .collect();
    for run in racing {
        assert!(run.await.unwrap().is_empty());
    }
    assert_eq!(given.count("acme", "command_executions").await, 7);
}

#[tokio::test]
async fn a_poison_message_among_good_ones_fails_alone_and_reaches_the_dead_letter_queue() {
    let given = TestApp::spawn().await;
    enqueue(&given, &envelope("acme", 2).to_message().unwrap()).await;
    enqueue(
        &given,
        r#"{"version": 1, "organization_id": "acme", "command_executions": "lots"}"#,
    )
    .await;
    enqueue(&given, &envelope("globex", 3).to_message().unwrap()).await;

    given.drain().await;

    assert_eq!(given.count("acme", "command_executions").await, 2);
    assert_eq!(given.count("globex", "command_executions").await, 3);
    let dead = receive_all(&given.dead_letter_url).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].body().unwrap().contains("lots"), "the original body is kept");
    let reason = dead[0].message_attributes().unwrap()["failure_reason"]
        .string_value()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("batch_id") && reason.contains("command_executions"),
        "{reason}"
    );
    assert!(receive_all(&given.queue_url).await.is_empty(), "nothing left to retry");
}

#[tokio::test]
async fn with_the_database_down_every_message_fails_and_is_written_once_it_is_back() {
    let cluster = PgCluster::start();
    let database_url = fresh_database_on(&cluster.url("postgres")).await;
    let given = TestApp::spawn_on(&database_url, &[("DATABASE_TIMEOUT_MS", "1500")]).await;
    for org in ["acme", "acme", "globex"] {
        enqueue(&given, &envelope(org, 4).to_message().unwrap()).await;
    }
    cluster.stop();

    let poller = given.poller().await;
    let (received, failed) = poller.poll_once().await.unwrap();
    assert_eq!((received, failed), (3, 3), "every message reported failed");

    cluster.restart();
    given.drain().await;
    assert_eq!(given.count("acme", "command_executions").await, 8);
    assert_eq!(given.count("globex", "command_executions").await, 4);
    assert!(receive_all(&given.dead_letter_url).await.is_empty());
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_moved_to_the_dead_letter_queue_by_sqs() {
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/x", integration_tests::free_port());
    let given = TestApp::spawn_on(&unreachable, &[("DATABASE_TIMEOUT_MS", "500")]).await;
    let message = envelope("acme", 1).to_message().unwrap();
    enqueue(&given, &message).await;

    // Each delivery fails; after maxReceiveCount (3 in tests) SQS redrives it.
    let deliveries = given.drain().await;

    assert_eq!(deliveries, integration_tests::TEST_QUEUE.max_receive_count as usize);
    let dead = receive_all(&given.dead_letter_url).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body().unwrap(), message);
}

#[tokio::test]
async fn the_batch_endpoint_locates_errors_and_limits_size() {
    let given = TestApp::spawn_with(&[("COLLECTION_MAX_BODY_BYTES", "3000000")]).await;
    let mut body = spec_batch();
    body["agent_interactions"][0]["input_tokens"] = json!(-1);
    let a = post_batch(&given, &body).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["errors"][0]["field"], "agent_interactions[0].input_tokens");

    let many = json!({"command_executions": vec![spec_batch()["command_executions"][0].clone(); 21]});
    let a = post_batch(&given, &many).await;
    assert_eq!(a.status, 400);
    assert!(a.body["errors"][0]["message"].as_str().unwrap().contains("at most 20"));

    // A request whose envelope cannot fit one SQS message is refused, not split.
    let mut huge = spec_batch();
    huge["command_executions"][0]["status"] = json!("error");
    huge["command_executions"][0]["error_message"] = json!("x".repeat(9_000));
    huge["command_executions"] = json!(vec![huge["command_executions"][0].clone(); 18]);
    let mut big_context = serde_json::Map::new();
    for i in 0..50 {
        big_context.insert(format!("k{i}"), json!("y".repeat(19_000)));
    }
    huge["productivity_metrics"][0]["dimensions"] = Value::Object(big_context);
    let a = post_batch(&given, &huge).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(receive_all(&given.queue_url).await.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn an_unreachable_queue_is_a_503_and_nothing_is_acknowledged() {
    let dead = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{}", integration_tests::free_port()))
        .load()
        .await;
    let database_url = integration_tests::fresh_database().await;
    let given = TestApp::spawn_with_aws(
        &database_url,
        &[("RATE_LIMIT_TIMEOUT_MS", "300"), ("COLLECTION_TIMEOUT_MS", "1000")],
        &dead,
    )
    .await;
    let a = post_batch(&given, &spec_batch()).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.body["message"], "Queue temporarily unavailable");
    assert_eq!(a.headers["retry-after"], "30");
}

#[tokio::test]
async fn the_importers_output_is_consumed_by_the_worker_and_a_second_import_adds_nothing() {
    let given = TestApp::spawn().await;
    let mut file = String::new();
    for i in 0..45 {
        file.push_str(
            &json!({"kind": "command_execution", "user_id": format!("user{}", i % 3), "command_name": "lint",
            "execution_time_ms": i, "status": "success", "timestamp": "2024-03-01T12:00:00Z"})
            .to_string(),
        );
        file.push('\n');
    }
    file.push_str(r#"{"kind":"user_session","session_start":"2024-03-01T09:00:00Z","session_end":"2024-03-01T11:30:00Z","agents_used":["coder"]}"#);
    file.push('\n');
    let org = OrgId::parse("acme").unwrap();
    let importer = UserId::parse("importer").unwrap();

    for _ in 0..2 {
        let plan = metrics_import::plan(file.as_bytes(), &org, &importer, 10).unwrap();
        assert!(plan.invalid.is_empty());
        let report = metrics_import::send(&sqs().await, &given.queue_url, &plan.envelopes, |_| {}).await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.sent_metrics, 46);
        given.drain().await;
    }

    assert_eq!(given.count("acme", "command_executions").await, 45);
    assert_eq!(given.count("acme", "user_sessions").await, 1);
    let db = given.db().await;
    let kept: i64 = db
        .query_one(
            "SELECT count(*) FROM \"org_acme\".command_executions WHERE \"timestamp\" = '2024-03-01T12:00:00Z'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 45, "historical timestamps are kept");
    let session = db
        .query_one(
            "SELECT status, total_duration_ms, agents_used FROM \"org_acme\".user_sessions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(session.get::<_, String>(0), "completed");
    assert_eq!(session.get::<_, i64>(1), 9_000_000);
    assert_eq!(session.get::<_, Vec<String>>(2), ["coder"]);
}

#[tokio::test]
async fn envelopes_match_their_published_json_schema() {
    let api = Envelope::new(
        &Caller::member(OrgId::parse("acme").unwrap(), UserId::parse("alice").unwrap()),
        Source::Api,
        Metrics::from_request(&spec_batch(), 20).unwrap(),
    );
    let file = r#"{"kind":"user_session","session_start":"2024-03-01T09:00:00Z","status":"abandoned","session_end":"2024-03-01T09:10:00Z","productivity_score":50}"#;
    let imported = metrics_import::plan(
        file.as_bytes(),
        &OrgId::parse("acme").unwrap(),
        &UserId::parse("i").unwrap(),
        10,
    )
    .unwrap()
    .envelopes
    .remove(0);
    let mut invalid: Value = serde_json::from_str(&api.to_message().unwrap()).unwrap();
    invalid["command_executions"][0].as_object_mut().unwrap().remove("id");
    let messages = [
        api.to_message().unwrap(),
        imported.to_message().unwrap(),
        invalid.to_string(),
    ];

    let verdicts = validate_with_schema(&messages);

    assert_eq!(verdicts, [true, true, false]);
    assert!(
        Envelope::parse(&messages[2]).is_err(),
        "the worker refuses what the schema refuses"
    );
}

/// Validates each document against `schemas/batch-envelope.schema.json` with the Python
/// `jsonschema` package of the local virtualenv (installed by `make test`).
fn validate_with_schema(documents: &[String]) -> Vec<bool> {
    let root = integration_tests::repo_root();
    let python = integration_tests::venv_python();
    let script = "import json, sys, jsonschema\n\
                  schema = json.load(open(sys.argv[1]))\n\
                  validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())\n\
                  for line in sys.stdin:\n    print(validator.is_valid(json.loads(line)))\n";
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(root.join("schemas/batch-envelope.schema.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        for document in documents {
            writeln!(stdin, "{document}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l == "True")
        .collect()
}
