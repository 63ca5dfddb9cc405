//! Trust in what is stored (issue "nothing acknowledged ever lost, users never collide"), on
//! the real PostgreSQL and moto:
//! - every value the validator accepts is a value PostgreSQL stores, on the single routes and
//!   through the batch worker (a property test over generated metrics of every kind);
//! - a message the database refuses is dead-lettered at once with its reason;
//! - ids: repeated in one batch → a located 400; another user's id → 409 on the single routes
//!   and the dead-letter queue (with the metrics named) on the batch path; the same user's id
//!   stays idempotent;
//! - bounds: a batch-size override past one envelope, limits whose arithmetic would overflow, a
//!   session context that would grow without end, repeated query parameters, text that
//!   sanitising empties, a key named twice in one object, context keys that markup removal would
//!   merge; commits are durable.

use integration_tests::{TestApp, answer, deliver, receive_all, request, token};
use lambda_http::RequestExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use shared::domain::batch::{Envelope, Metrics, Source};
use shared::domain::identified::Identify;
use shared::domain::ids::{Caller, OrgId, UserId};
use shared::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use shared::domain::sessions::{SessionImport, SessionStart};
use uuid::Uuid;

fn caller(org: &str, user: &str) -> Caller {
    Caller::member(OrgId::parse(org).unwrap(), UserId::parse(user).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Parity: accepted by the validator ⇒ stored by PostgreSQL.

/// RFC 3339 times with every precision the validator accepts (down to nanoseconds), from a year
/// before the epoch (refused: the earliest accepted is 1970-01-01 in UTC, which offsets cross)
/// to now.
fn time() -> impl Strategy<Value = String> {
    (
        1969i32..=2026,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        0usize..=9,
        any::<u32>(),
        -14i32..=14,
    )
        .prop_map(|(year, month, day, h, m, s, digits, fraction, offset)| {
            let fraction = match digits {
                0 => String::new(),
                n => format!(".{:0>9}", fraction % 1_000_000_000)[..=n].to_owned(),
            };
            let zone = if offset == 0 {
                "Z".to_owned()
            } else {
                format!("{}{:02}:00", if offset < 0 { '-' } else { '+' }, offset.abs())
            };
            format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{fraction}{zone}")
        })
}

/// A period from a fixed start with nanoseconds: 0 ns to 1 s long, most often shorter than a
/// microsecond or a few microseconds (the cases where rounding decides).
fn period() -> impl Strategy<Value = (String, String)> {
    (0u32..8, 0u32..1_000_000_000).prop_map(|(scale, nanos)| {
        let start = chrono::DateTime::parse_from_rfc3339("2025-09-08T10:30:00.123456789Z").unwrap();
        let gap = chrono::Duration::nanoseconds(i64::from(nanos) / 10i64.pow(scale.min(9)).max(1));
        let end = start + gap;
        (
            start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            end.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        )
    })
}

fn number(max: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(max),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(1e-7),
        (0.0..=max),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,100}",
        any::<String>().prop_map(|s| s.chars().take(100).collect()),
        Just("a\u{0}b<b>c</b>\u{feff}é🎉".to_owned()),
        Just("Vec<String> <!-- x --> 'quoted' \"double\" \\ back".to_owned()),
    ]
}

fn object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        number(1e300).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let nested = leaf.prop_recursive(4, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map(text(), inner, 0..4).prop_map(|m| json!(m)),
        ]
    });
    prop::collection::hash_map(text(), nested, 0..6).prop_map(|m| json!(m))
}

fn command() -> impl Strategy<Value = Value> {
    (
        "[a-zA-Z0-9_-]{1,100}",
        number(300_000.0),
        prop::sample::select(vec!["success", "error", "timeout", "cancelled"]),
        proptest::option::of(text()),
        object(),
        proptest::option::of(time()),
    )
        .prop_map(|(name, ms, status, error, args, at)| {
            json!({"id": Uuid::new_v4(), "command_name": name, "execution_time_ms": ms, "status": status,
                   "error_message": error, "command_args": args, "context": {}, "timestamp": at})
        })
}

fn agent() -> impl Strategy<Value = Value> {
    (
        text(),
        prop::sample::select(vec!["tool_call", "delegation", "response"]),
        0i64..=1_000_000_000,
        number(86_400_000.0),
        any::<bool>(),
        object(),
        proptest::option::of(time()),
    )
        .prop_map(|(name, kind, tokens, ms, success, metadata, at)| {
            json!({"id": Uuid::new_v4(), "agent_name": name, "interaction_type": kind, "input_tokens": tokens,
                   "output_tokens": 1_000_000_000 - tokens, "processing_time_ms": ms, "success": success,
                   "metadata": metadata, "timestamp": at})
        })
}

fn productivity() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["completion_rate", "error_rate", "efficiency_score"]),
        number(100.0),
        text(),
        period(),
        object(),
    )
        .prop_map(|(kind, value, unit, (start, end), dimensions)| {
            json!({"id": Uuid::new_v4(), "metric_type": kind, "value": value, "unit": unit,
                   "period_start": start, "period_end": end, "dimensions": dimensions})
        })
}

fn session() -> impl Strategy<Value = Value> {
    (
        period(),
        any::<bool>(),
        0i64..=10_000_000,
        proptest::option::of(number(100.0)),
        object(),
    )
        .prop_map(|((start, end), ended, commands, score, context)| {
            json!({"id": Uuid::new_v4(), "session_start": start, "session_end": if ended { Some(end) } else { None },
                   "commands_executed": commands, "productivity_score": score, "context": context,
                   "agents_used": ["a", "<b>b</b>"]})
        })
}

/// The generated metrics the validator accepts, one list per kind.
fn accepted(commands: &[Value], agents: &[Value], productivity: &[Value], sessions: &[Value]) -> Metrics {
    fn keep<T>(
        items: &[Value],
        parse: fn(&Value, &str) -> Result<T, Vec<shared::domain::validation::FieldError>>,
    ) -> Vec<T> {
        items.iter().filter_map(|item| parse(item, "").ok()).collect()
    }
    Metrics {
        command_executions: keep(commands, CommandExecution::from_json),
        agent_interactions: keep(agents, AgentInteraction::from_json),
        productivity_metrics: keep(productivity, ProductivityMetric::from_json),
        user_sessions: keep(sessions, SessionImport::from_json),
    }
}

#[test]
fn every_metric_the_validator_accepts_is_stored_by_postgresql_on_both_paths() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let given = runtime.block_on(TestApp::spawn());
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(64, |n| (n / 500).max(16));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(command(), 0..6),
        prop::collection::vec(agent(), 0..6),
        prop::collection::vec(productivity(), 0..6),
        prop::collection::vec(session(), 0..6),
    );
    let stored = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |(commands, agents, productivity, sessions)| {
            let metrics = accepted(&commands, &agents, &productivity, &sessions);
            if metrics.total() == 0 {
                return Ok(());
            }
            stored.set(stored.get() + metrics.total());
            runtime.block_on(async {
                // Single path: each metric through the store the routes use.
                let single = caller("parity", "alice");
                let store = given.app.store.as_ref();
                for m in &metrics.command_executions {
                    store
                        .insert_command_execution(&single, &m.clone().identified())
                        .await
                        .map_err(fail)?;
                }
                for m in &metrics.agent_interactions {
                    store
                        .insert_agent_interaction(&single, &m.clone().identified())
                        .await
                        .map_err(fail)?;
                }
                for m in &metrics.productivity_metrics {
                    store
                        .insert_productivity_metric(&single, &m.clone().identified())
                        .await
                        .map_err(fail)?;
                }
                for s in &metrics.user_sessions {
                    let start = SessionStart {
                        id: s.id,
                        session_start: Some(s.session_start),
                        context: s.context.clone(),
                    };
                    store.start_session(&single, &start.identified()).await.map_err(fail)?;
                }
                // Worker path: the same metrics as one queued envelope, through the worker.
                let envelope = Envelope::new(&caller("parity-batch", "alice"), Source::Import, metrics.clone());
                let body = envelope.to_message().map_err(fail)?;
                let failed = deliver(&given.stack.worker, json!([{"messageId": "m", "body": body}])).await;
                prop_assert!(failed.is_empty(), "the worker failed the envelope");
                Ok(())
            })
        })
        .unwrap();
    runtime.block_on(async {
        assert!(
            receive_all(&given.dead_letter_url).await.is_empty(),
            "nothing dead-lettered"
        );
        let mut in_batches = 0;
        for table in [
            "command_executions",
            "agent_interactions",
            "productivity_metrics",
            "user_sessions",
        ] {
            in_batches += given.count("parity-batch", table).await;
        }
        assert_eq!(
            in_batches as usize,
            stored.get(),
            "every accepted metric stored by the worker"
        );
    });
}

fn fail(err: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("refused by the real store: {err}"))
}

#[tokio::test]
async fn a_period_shorter_than_a_microsecond_is_refused_by_the_validator_not_the_database() {
    let given = TestApp::spawn().await;
    let body = json!({"metric_type": "efficiency_score", "value": 50, "unit": "index",
                      "period_start": "2025-09-08T10:00:00.000000100Z", "period_end": "2025-09-08T10:00:00.000000900Z"});
    let response = answer(
        productivity::handle(&given.app, request("productivity", "acme", "alice", &body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["errors"][0]["field"], "period_end");

    let batch = json!({"productivity_metrics": [{"metric_type": "efficiency_score", "value": 1, "unit": "index",
        "period_start": "2025-09-08T10:00:00.000000100Z", "period_end": "2025-09-08T10:00:00.000000900Z"}]});
    let response = answer(
        batch::handle(&given.stack.batch, request("batch", "acme", "alice", &batch))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(
        response.body["errors"][0]["field"],
        "productivity_metrics[0].period_end"
    );
}

// ---------------------------------------------------------------------------------------------
// Poison: what the database refuses is dead-lettered at once, with its reason.

#[tokio::test]
async fn an_envelope_the_database_refuses_is_dead_lettered_at_the_first_delivery_with_its_reason() {
    let given = TestApp::spawn().await;
    // GIVEN a tenant whose table refuses what the validator accepts (a stricter constraint)
    let setup = Envelope::new(&caller("strict", "alice"), Source::Import, one_command(10.0));
    assert!(
        deliver(
            &given.stack.worker,
            json!([{"messageId": "setup", "body": setup.to_message().unwrap()}])
        )
        .await
        .is_empty()
    );
    given
        .db()
        .await
        .batch_execute(
            "ALTER TABLE \"org_strict\".command_executions ADD CONSTRAINT command_executions_execution_time_ms_quick CHECK (execution_time_ms < 1000)",
        )
        .await
        .unwrap();
    // WHEN an envelope it refuses is delivered once
    let refused = Envelope::new(&caller("strict", "alice"), Source::Import, one_command(5000.0));
    let failed = deliver(
        &given.stack.worker,
        json!([{"messageId": "poison", "body": refused.to_message().unwrap()}]),
    )
    .await;
    // THEN it is not retried but forwarded at once, saying why
    assert!(failed.is_empty(), "a permanent refusal is not retried: {failed:?}");
    let dead = receive_all(&given.dead_letter_url).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].message_attributes().unwrap()["failure_reason"]
        .string_value()
        .unwrap()
        .to_owned();
    assert!(reason.contains("23514") && reason.contains("quick"), "{reason}");
    assert_eq!(given.count("strict", "command_executions").await, 1);
}

fn one_command(ms: f64) -> Metrics {
    Metrics::from_request(
        &json!({"command_executions": [{"command_name": "build", "execution_time_ms": ms, "status": "success"}]}),
        1000,
    )
    .unwrap()
    .with_ids()
}

// ---------------------------------------------------------------------------------------------
// Ids: repeated in a batch, taken by another user, idempotent for the same user.

#[tokio::test]
async fn two_metrics_with_the_same_id_in_one_batch_are_a_located_400_and_nothing_is_queued() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    let command = |ms: u32| json!({"id": id, "command_name": "build", "execution_time_ms": ms, "status": "success"});
    let body = json!({"command_executions": [command(1), command(2), command(3)]});
    let response = answer(
        batch::handle(&given.stack.batch, request("batch", "acme", "alice", &body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.body);
    let fields: Vec<&str> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["command_executions[1].id", "command_executions[2].id"]);
    assert!(receive_all(&given.queue_url).await.is_empty(), "nothing queued");
}

async fn create(given: &TestApp, binary: &str, user: &str, body: &Value) -> integration_tests::Answer {
    let req = request(binary, "acme", user, body);
    let app = &given.app;
    let response = match binary {
        "command-execution" => command_execution::handle(app, req).await,
        "agent-interaction" => agent_interaction::handle(app, req).await,
        "productivity" => productivity::handle(app, req).await,
        "session-start" => session_start::handle(app, req).await,
        other => panic!("unknown route {other}"),
    };
    answer(response.unwrap()).await
}

#[tokio::test]
async fn an_id_another_user_took_is_a_409_that_says_nothing_of_their_record() {
    let given = TestApp::spawn().await;
    for (binary, table, body) in [
        (
            "command-execution",
            "command_executions",
            json!({"command_name": "build", "execution_time_ms": 5, "status": "success"}),
        ),
        (
            "agent-interaction",
            "agent_interactions",
            json!({"agent_name": "coder", "interaction_type": "response",
            "input_tokens": 1, "output_tokens": 2, "processing_time_ms": 3, "success": true}),
        ),
        (
            "productivity",
            "productivity_metrics",
            json!({"metric_type": "efficiency_score", "value": 71, "unit": "index",
            "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"}),
        ),
        ("session-start", "user_sessions", json!({})),
    ] {
        let id = Uuid::new_v4();
        let mut with_id = body.clone();
        with_id["id"] = json!(id);
        // GIVEN alice stored a record under an id
        let first = create(&given, binary, "alice", &with_id).await;
        assert_eq!(first.status, 201, "{binary}: {}", first.body);
        // WHEN bob sends his own record with the same id
        let taken = create(&given, binary, "bob", &with_id).await;
        // THEN he gets 409, with nothing of alice's record, and nothing changes
        assert_eq!(taken.status, 409, "{binary}: {}", taken.body);
        assert_eq!(taken.body["success"], false);
        let text = taken.body.to_string();
        assert!(
            !text.contains("alice") && !text.contains(first.body["data"]["created_at"].as_str().unwrap()),
            "{text}"
        );
        assert_eq!(given.count("acme", table).await, 1, "{binary}");
        // AND alice sending it again is still idempotent
        let again = create(&given, binary, "alice", &with_id).await;
        assert_eq!(
            (again.status, &again.body["data"]),
            (201, &first.body["data"]),
            "{binary}"
        );
    }
}

#[tokio::test]
async fn a_batch_metric_whose_id_another_user_took_is_dead_lettered_by_name_and_the_rest_written() {
    let given = TestApp::spawn().await;
    let taken = Uuid::new_v4();
    let alice = json!({"id": taken, "command_name": "build", "execution_time_ms": 5, "status": "success"});
    assert_eq!(create(&given, "command-execution", "alice", &alice).await.status, 201);
    // WHEN bob's batch carries alice's id among others
    let body = json!({"command_executions": [
        {"command_name": "test", "execution_time_ms": 1, "status": "success"},
        {"id": taken, "command_name": "lint", "execution_time_ms": 2, "status": "error"},
    ]});
    let accepted = answer(
        batch::handle(&given.stack.batch, request("batch", "acme", "bob", &body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    given.drain().await;
    // THEN bob's other metric is written, alice's record is untouched, and the taken one is in
    // the dead-letter queue with its location
    assert_eq!(given.count("acme", "command_executions").await, 2);
    let rows = given
        .db()
        .await
        .query(
            "SELECT user_id, command_name FROM \"org_acme\".command_executions WHERE id = $1",
            &[&taken],
        )
        .await
        .unwrap();
    assert_eq!(
        (rows[0].get::<_, &str>(0), rows[0].get::<_, &str>(1)),
        ("alice", "build")
    );
    let dead = receive_all(&given.dead_letter_url).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].message_attributes().unwrap()["failure_reason"]
        .string_value()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains(&format!("command_executions[1].id {taken}")),
        "{reason}"
    );
    assert!(receive_all(&given.queue_url).await.is_empty(), "not retried");
}

// ---------------------------------------------------------------------------------------------
// Bounds.

#[tokio::test]
async fn a_batch_size_override_past_one_envelope_is_refused_so_no_202_is_refused_later() {
    let given = TestApp::spawn().await;
    let org = OrgId::parse("acme").unwrap();
    integration_tests::dynamo()
        .await
        .put_item()
        .table_name(&given.table)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(shared::adapters::dynamodb::DynamoRateLimiter::override_key(
                &org,
            )),
        )
        .item("batch_size", aws_sdk_dynamodb::types::AttributeValue::N("5000".into()))
        .send()
        .await
        .unwrap();
    let items: Vec<Value> = (0..1001)
        .map(|i| json!({"command_name": "b", "execution_time_ms": i, "status": "success"}))
        .collect();
    let body = json!({"command_executions": items});
    let response = answer(
        batch::handle(&given.stack.batch, request("batch", "acme", "alice", &body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert!(
        response.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 20 metrics"),
        "{}",
        response.body
    );
    assert!(receive_all(&given.queue_url).await.is_empty(), "nothing queued");
}

#[tokio::test]
async fn limits_whose_arithmetic_would_overflow_are_ignored_with_a_log_line_not_a_500_or_a_lockout() {
    let logs = integration_tests::logs();
    // Developers' budgets above the organization's, so the organization's is the one reported.
    let given = TestApp::spawn_with(&[("RATE_LIMIT_USER_MAX_REQUESTS", "100000")]).await;
    let org = OrgId::parse("acme").unwrap();
    let n = |v: &str| aws_sdk_dynamodb::types::AttributeValue::N(v.into());
    integration_tests::dynamo()
        .await
        .put_item()
        .table_name(&given.table)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(shared::adapters::dynamodb::DynamoRateLimiter::override_key(
                &org,
            )),
        )
        .item("max_requests", n("1"))
        .item("window_ms", n("31536000000"))
        .item("burst_allowance", n("18446744073709551615"))
        .send()
        .await
        .unwrap();
    let body = json!({"command_name": "build", "execution_time_ms": 5, "status": "success"});
    for _ in 0..3 {
        let response = create(&given, "command-execution", "alice", &body).await;
        assert_eq!(response.status, 201, "{}", response.body);
        assert_eq!(response.body["rate_limit"]["limit"], 12_000, "the defaults apply");
        assert_eq!(response.body["rate_limit"]["scope"], "organization");
    }
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("ignoring invalid stored settings"), "{logged:.2000}");
}

/// Alice's request to a session route, with the session `id` as its path parameter.
fn session_request(binary: &str, id: Uuid, body: Value) -> lambda_http::Request {
    request(binary, "acme", "alice", &body).with_path_parameters(
        lambda_http::aws_lambda_events::query_map::QueryMap::from(std::collections::HashMap::from([(
            "id".to_owned(),
            id.to_string(),
        )])),
    )
}

#[tokio::test]
async fn a_session_context_cannot_grow_past_its_bounds_by_merging_updates() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    assert_eq!(
        create(&given, "session-start", "alice", &json!({"id": id}))
            .await
            .status,
        201
    );
    let update = |context: Value| session_request("session-update", id, json!({"context": context}));
    // 50 keys merged in five updates fit; the 51st key does not.
    for round in 0..5 {
        let keys: serde_json::Map<String, Value> = (0..10).map(|i| (format!("k{round}_{i}"), json!(i))).collect();
        let ok = answer(
            session_update::handle(&given.app, update(Value::Object(keys)))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let full = answer(
        session_update::handle(&given.app, update(json!({"one_more": 1})))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(full.status, 400, "{}", full.body);
    assert_eq!(full.body["errors"][0]["field"], "context");
    // An existing key may still change.
    let ok = answer(
        session_update::handle(&given.app, update(json!({"k0_0": "changed"})))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let stored: Value = given
        .db()
        .await
        .query_one("SELECT context FROM \"org_acme\".user_sessions WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.as_object().unwrap().len(), 50);
    assert_eq!(stored["k0_0"], "changed");
}

#[tokio::test]
async fn a_session_context_cannot_pass_its_size_by_updates_each_within_it_and_a_full_one_still_ends() {
    let given = TestApp::spawn().await;
    let id = Uuid::new_v4();
    assert_eq!(
        create(&given, "session-start", "alice", &json!({"id": id}))
            .await
            .status,
        201
    );
    let call = |binary: &'static str, body: Value| session_request(binary, id, body);
    // Each update is 25 KB: the first two fit, the third would take the session past 64 KiB.
    for (key, status) in [("a", 200), ("b", 200), ("c", 400)] {
        let body = json!({"context": {key: "x".repeat(25_000)}});
        let response = answer(
            session_update::handle(&given.app, call("session-update", body))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(response.status, status, "{key}: {}", response.body);
    }
    // A full session still takes heartbeats and ends.
    let heartbeat = answer(
        session_update::handle(&given.app, call("session-update", json!({})))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(heartbeat.status, 200, "{}", heartbeat.body);
    let end = answer(
        session_end::handle(&given.app, call("session-end", json!({"session_id": id})))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(end.status, 200, "{}", end.body);
    assert_eq!(end.body["data"]["status"], "completed");
    assert!(end.body["data"]["context"].get("c").is_none());
}

#[tokio::test]
async fn text_that_sanitising_empties_is_a_400_naming_the_field() {
    let given = TestApp::spawn().await;
    let body = json!({"agent_name": "<script>x</script>", "interaction_type": "response", "input_tokens": 1,
                      "output_tokens": 2, "processing_time_ms": 3, "success": true});
    let response = create(&given, "agent-interaction", "alice", &body).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["errors"][0]["field"], "agent_name");
    assert_eq!(given_rows(&given, "agent_interactions").await, 0);
}

async fn given_rows(given: &TestApp, table: &str) -> i64 {
    let exists: bool = given
        .db()
        .await
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("\"org_acme\".{table}")],
        )
        .await
        .unwrap()
        .get(0);
    if exists { given.count("acme", table).await } else { 0 }
}

#[tokio::test]
async fn a_repeated_query_parameter_is_a_400_naming_it() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let (status, _, body) = integration_tests::http(
        addr,
        "GET",
        "/api/v1/metrics/summary?limit=5&limit=6",
        Some(&token("acme", "alice")),
        "",
        "",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "limit");
}

/// POSTs `body` to `path` as alice of acme and asserts a 400 whose first error names `field`;
/// returns the answer.
async fn refused_naming(addr: std::net::SocketAddr, path: &str, body: &str, field: &str) -> Value {
    let (status, _, answer) = integration_tests::http(
        addr,
        "POST",
        path,
        Some(&token("acme", "alice")),
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 400, "{path}: {answer}");
    assert_eq!(answer["errors"][0]["field"], field, "{path}: {answer}");
    answer
}

#[tokio::test]
async fn a_key_named_twice_in_a_body_is_a_400_naming_it_and_nothing_is_stored() {
    // GIVEN bodies where a reader keeping the first key and one keeping the last would disagree
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let command = r#"{"command_name": "ls", "execution_time_ms": 5, "status": "success", "status": "error"}"#;
    let nested = r#"{"command_name": "ls", "execution_time_ms": 5, "status": "success",
                     "context": {"branch": "main", "branch": "prod"}}"#;
    let batch = r#"{"command_executions": [{"command_name": "a", "execution_time_ms": 1, "status": "success"},
                    {"command_name": "b", "execution_time_ms": 1, "status": "success", "context": {"k": 1, "k": 2}}]}"#;
    let hook = format!(
        r#"{{"session_id": "{}", "hook_event_name": "SessionStart", "source": "startup", "source": "resume"}}"#,
        Uuid::new_v4()
    );
    let cases = [
        ("/api/v1/metrics/command-execution", command, "status"),
        ("/api/v1/metrics/command-execution", nested, "context.branch"),
        ("/api/v1/metrics/batch", batch, "command_executions[1].context.k"),
        ("/api/v1/hooks/claude-code", hook.as_str(), "source"),
    ];
    for (path, body, field) in cases {
        // WHEN each is sent THEN it is refused, naming the key by its path
        refused_naming(addr, path, body, field).await;
    }
    // AND nothing was stored or queued
    for table in ["command_executions", "user_sessions", "hook_events"] {
        assert_eq!(given_rows(&given, table).await, 0, "{table}");
    }
    assert!(receive_all(&given.queue_url).await.is_empty(), "nothing queued");
}

#[tokio::test]
async fn context_keys_that_markup_removal_would_merge_are_a_400_naming_the_field() {
    let given = TestApp::spawn().await;
    let body = json!({"command_name": "ls", "execution_time_ms": 5, "status": "success",
                      "context": {"<b>env</b>": "prod", "env": "dev"}});
    let response = create(&given, "command-execution", "alice", &body).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["errors"][0]["field"], "context");
    assert_eq!(given_rows(&given, "command_executions").await, 0);
    // Markup in a key that merges with no other is removed, as before
    let body = json!({"command_name": "ls", "execution_time_ms": 5, "status": "success",
                      "context": {"<b>env</b>": "prod"}});
    assert_eq!(create(&given, "command-execution", "alice", &body).await.status, 201);
}

#[tokio::test]
async fn a_time_before_the_epoch_is_a_400_never_a_202_dead_lettered_or_a_session_stuck() {
    // GIVEN times PostgreSQL or chrono would not read back (year 0000 in UTC is `1 BC`)
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let before = "0000-01-01T00:00:00+01:00";
    let cases = [
        (
            "/api/v1/metrics/batch",
            json!({"command_executions": [{"command_name": "a", "execution_time_ms": 1, "status": "success",
                                           "timestamp": before}]}),
            "command_executions[0].timestamp",
        ),
        (
            "/api/v1/metrics/session/start",
            json!({"session_start": before}),
            "session_start",
        ),
        (
            "/api/v1/metrics/command-execution",
            json!({"command_name": "a", "execution_time_ms": 1, "status": "success",
                   "timestamp": "1969-12-31T23:59:59Z"}),
            "timestamp",
        ),
    ];
    for (path, body, field) in cases {
        // WHEN each is sent THEN it is refused, naming the field, and nothing is kept
        let answer = refused_naming(addr, path, &body.to_string(), field).await;
        assert_eq!(
            answer["errors"][0]["message"],
            "Must not be before 1970-01-01T00:00:00Z"
        );
    }
    assert!(receive_all(&given.queue_url).await.is_empty(), "nothing queued");
    for table in ["command_executions", "user_sessions"] {
        assert_eq!(given_rows(&given, table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn commits_are_durable_on_the_servers_the_tests_run_against() {
    let given = TestApp::spawn().await;
    let setting: String = given
        .db()
        .await
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, "on", "an acknowledged write must survive PostgreSQL crashing");
}
