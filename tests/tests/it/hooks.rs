//! The Claude Code hook endpoint over HTTP on the real services: every event of `events/claude-code/`
//! becomes the stored metrics, the answer is an empty 204, repeats store nothing twice, secrets
//! are redacted and large fields truncated before storage.

use std::net::SocketAddr;

use integration_tests::{TestApp, http_raw, repo_root, token};
use serde_json::{Value, json};
use shared::domain::hooks::KNOWN_EVENTS;

const PATH: &str = "/api/v1/hooks/claude-code";
const SESSION: &str = "0b9e3c8a-5f1d-4c2e-9a7b-3d6f8e1c2a40";

/// The recorded-shape payloads in the order Claude Code sends them, with an event this version
/// does not know before the session ends.
fn events() -> Vec<&'static str> {
    let (ending, rest) = KNOWN_EVENTS.split_last().unwrap();
    rest.iter().copied().chain(["TeammateIdle", *ending]).collect()
}

fn fixture(name: &str) -> Value {
    let path = repo_root().join(format!("events/claude-code/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Posts a hook body as Claude Code does; the status and the raw response body.
async fn post(addr: SocketAddr, bearer: &str, body: &Value) -> (u16, String) {
    let (status, _, body) = http_raw(addr, "POST", PATH, Some(bearer), "application/json", &body.to_string()).await;
    (status, body)
}

async fn scalar(given: &TestApp, sql: &str) -> i64 {
    given.db().await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn counts(given: &TestApp) -> [i64; 4] {
    [
        scalar(given, "SELECT count(*) FROM \"org_acme\".hook_events").await,
        scalar(given, "SELECT count(*) FROM \"org_acme\".command_executions").await,
        scalar(given, "SELECT count(*) FROM \"org_acme\".agent_interactions").await,
        scalar(given, "SELECT count(*) FROM \"org_acme\".user_sessions").await,
    ]
}

/// Every text column and payload the hook path writes, for one organization.
async fn everything_stored(given: &TestApp, org: &str) -> String {
    let sql = format!(
        "SELECT string_agg(t, ' ') FROM (\
           SELECT payload::text AS t FROM \"org_{org}\".hook_events \
           UNION ALL SELECT concat_ws(' ', command_name, command_args::text, error_message, context::text) FROM \"org_{org}\".command_executions \
           UNION ALL SELECT concat_ws(' ', agent_name, metadata::text) FROM \"org_{org}\".agent_interactions \
           UNION ALL SELECT context::text FROM \"org_{org}\".user_sessions) AS kept"
    );
    given
        .db()
        .await
        .query_one(&sql, &[])
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

#[tokio::test]
async fn by_default_no_prompt_command_output_error_or_path_reaches_the_database() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let bearer = token("acme", "alice");
    for name in events() {
        assert_eq!(post(addr, &bearer, &fixture(name)).await.0, 204, "{name}");
    }
    let stored = everything_stored(&given, "acme").await;
    for content in [
        "Add a login form",
        "GITHUB_TOKEN",
        "npm test",
        "s3cr3t-pw",
        "PASS src/login",
        "/home/dev",
        "exit code 1",
        "Run the unit tests",
    ] {
        assert!(!stored.contains(content), "{content:?} reached the database");
    }
    // The metrics are whole all the same.
    assert_eq!(counts(&given).await, [12, 2, 1, 1]);
    assert!(
        stored.contains("\"tool_shape\": {\"program\": \"export\"}"),
        "{stored:.500}"
    );

    // The same session with content opted in keeps the (redacted) input.
    let opted_in = TestApp::spawn_with(&[("HOOK_CONTENT", "redacted")]).await;
    let addr = opted_in.serve_http().await;
    for name in events() {
        assert_eq!(post(addr, &bearer, &fixture(name)).await.0, 204, "{name}");
    }
    let stored = everything_stored(&opted_in, "acme").await;
    assert!(stored.contains("npm test") && stored.contains("[REDACTED]") && !stored.contains("ghp_R4nd0m"));
}

#[tokio::test]
async fn an_organization_override_in_dynamodb_opts_into_redacted_content() {
    // GIVEN a stage keeping metrics only, and acme's override item asking for redacted content
    let given = TestApp::spawn().await;
    let org = shared::domain::ids::OrgId::parse("acme").unwrap();
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
        .item(
            "hook_content",
            aws_sdk_dynamodb::types::AttributeValue::S("redacted".into()),
        )
        .send()
        .await
        .unwrap();
    let addr = given.serve_http().await;
    // WHEN acme and globex send the same tool use
    for org in ["acme", "globex"] {
        assert_eq!(post(addr, &token(org, "alice"), &fixture("PostToolUse")).await.0, 204);
    }
    // THEN acme keeps the redacted command, globex only its shape
    assert!(everything_stored(&given, "acme").await.contains("npm test"));
    let globex = everything_stored(&given, "globex").await;
    assert!(
        !globex.contains("npm test") && globex.contains("\"program\": \"export\""),
        "{globex:.300}"
    );
}

#[tokio::test]
async fn every_event_is_answered_with_an_empty_204_and_becomes_metrics() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let bearer = token("acme", "alice");
    for name in events() {
        let (status, body) = post(addr, &bearer, &fixture(name)).await;
        assert_eq!(status, 204, "{name}: {body}");
        assert_eq!(body, "", "{name}: any text would be injected into Claude's context");
    }
    assert_eq!(counts(&given).await, [12, 2, 1, 1]);

    let db = given.db().await;
    let commands = db
        .query(
            "SELECT command_name, status, error_message, command_args, context FROM \"org_acme\".command_executions \
             ORDER BY status DESC",
            &[],
        )
        .await
        .unwrap();
    let (name, status): (String, String) = (commands[0].get(0), commands[0].get(1));
    assert_eq!((name.as_str(), status.as_str()), ("Bash", "success"));
    // By default a command keeps its content-free shape, not what was run.
    let args: Value = commands[0].get(3);
    assert_eq!(args, json!({"program": "export"}));
    let context: Value = commands[0].get(4);
    assert_eq!(context["tool_use_id"], "toolu_01A2B3C4D5E6F7G8H9J0K1L2");
    assert_eq!(context["claude_session_id"], SESSION);
    let (status, error): (String, Option<String>) = (commands[1].get(1), commands[1].get(2));
    assert_eq!(status, "error");
    assert_eq!(error.as_deref(), Some("tool use failed (content not kept)"));

    let agent = db
        .query_one(
            "SELECT agent_name, interaction_type, success, metadata FROM \"org_acme\".agent_interactions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(agent.get::<_, String>(0), "code-reviewer");
    assert_eq!(agent.get::<_, String>(1), "delegation");
    assert_eq!(agent.get::<_, Value>(3)["agent_id"], "agent-7f3a9c21");

    let session = db
        .query_one(
            "SELECT user_id, status, commands_executed, agents_used, context, total_duration_ms \
             FROM \"org_acme\".user_sessions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(session.get::<_, String>(0), "alice", "the user comes from the token");
    assert_eq!(session.get::<_, String>(1), "completed");
    assert_eq!(session.get::<_, i32>(2), 2);
    assert_eq!(session.get::<_, Vec<String>>(3), ["code-reviewer"]);
    let context: Value = session.get(4);
    assert_eq!(context["start_source"], "startup");
    assert_eq!(context["model"], "claude-sonnet-4-5");
    assert_eq!(context["end_reason"], "prompt_input_exit");
    assert!(session.get::<_, Option<i64>>(5).is_some());

    let unknown: Value = db
        .query_one(
            "SELECT payload FROM \"org_acme\".hook_events WHERE event_name = 'TeammateIdle'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Kept, with its metadata only: unknown fields may be content.
    assert_eq!(unknown["hook_event_name"], "TeammateIdle");
    assert_eq!(unknown["session_id"], SESSION);
    assert!(
        unknown.get("teammate").is_none() && unknown.get("new_field").is_none(),
        "{unknown}"
    );
}

#[tokio::test]
async fn a_tool_use_is_timed_from_its_pre_tool_use() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let bearer = token("acme", "alice");
    post(addr, &bearer, &fixture("PreToolUse")).await;
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    post(addr, &bearer, &fixture("PostToolUse")).await;
    let elapsed: f64 = given
        .db()
        .await
        .query_one("SELECT execution_time_ms FROM \"org_acme\".command_executions", &[])
        .await
        .unwrap()
        .get(0);
    assert!(elapsed >= 120.0, "at least the time between the two events: {elapsed}");

    // Without its PreToolUse a tool use is still stored, with no duration.
    let mut orphan = fixture("PostToolUse");
    orphan["tool_use_id"] = json!("toolu_without_a_pre");
    post(addr, &bearer, &orphan).await;
    let orphan_ms: f64 = given
        .db()
        .await
        .query_one(
            "SELECT execution_time_ms FROM \"org_acme\".command_executions WHERE context->>'tool_use_id' = 'toolu_without_a_pre'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphan_ms, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_twice_even_concurrently_are_stored_once() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let bearer = token("acme", "alice");
    for name in events() {
        let sends: Vec<_> = (0..3)
            .map(|_| {
                let (bearer, body) = (bearer.clone(), fixture(name));
                tokio::spawn(async move { post(addr, &bearer, &body).await.0 })
            })
            .collect();
        for send in sends {
            assert_eq!(send.await.unwrap(), 204, "{name}");
        }
    }
    for name in events() {
        assert_eq!(post(addr, &bearer, &fixture(name)).await.0, 204);
    }
    assert_eq!(counts(&given).await, [12, 2, 1, 1]);
    let commands_executed = scalar(
        &given,
        "SELECT commands_executed::bigint FROM \"org_acme\".user_sessions",
    )
    .await;
    assert_eq!(commands_executed, 2);
}

/// Claude Code runs tools in parallel, so a session's tool uses arrive together: a count taken as
/// each event is kept would miss the ones kept beside it and leave the session short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_uses_arriving_together_are_all_counted_in_their_session() {
    // GIVEN five Claude sessions, each started
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let bearer = token("acme", "alice");
    const SESSIONS: usize = 5;
    const TOOL_USES: usize = 10;
    let event = |session: usize, name: &str, tool_use: Option<usize>| {
        let mut body = fixture(name);
        body["session_id"] = json!(format!("parallel-{session}"));
        if let Some(n) = tool_use {
            body["tool_use_id"] = json!(format!("toolu_parallel_{n}"));
        }
        body
    };
    for session in 0..SESSIONS {
        assert_eq!(post(addr, &bearer, &event(session, "SessionStart", None)).await.0, 204);
    }
    // AND each event's statement slow to commit, as on a durable server (the tests' server does
    // not wait for its flush), so the events of one session are kept side by side
    given
        .db()
        .await
        .batch_execute(
            "CREATE FUNCTION \"org_acme\".slow_commit() RETURNS trigger LANGUAGE plpgsql \
               AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$; \
             CREATE TRIGGER slow_commit AFTER INSERT ON \"org_acme\".hook_events \
               FOR EACH ROW EXECUTE FUNCTION \"org_acme\".slow_commit();",
        )
        .await
        .unwrap();
    // WHEN each session's tool uses are all sent at once, then the session ends
    for session in 0..SESSIONS {
        let sends: Vec<_> = (0..TOOL_USES)
            .map(|n| {
                let (bearer, body) = (bearer.clone(), event(session, "PostToolUse", Some(n)));
                tokio::spawn(async move { post(addr, &bearer, &body).await.0 })
            })
            .collect();
        for send in sends {
            assert_eq!(send.await.unwrap(), 204);
        }
        // THEN the session counts every one of them already (the end below recounts too)
        let counted = scalar(
            &given,
            &format!(
                "SELECT commands_executed::bigint FROM \"org_acme\".user_sessions \
                 WHERE context->>'claude_session_id' = 'parallel-{session}'"
            ),
        )
        .await;
        assert_eq!(counted, TOOL_USES as i64, "session {session} before its end");
        assert_eq!(post(addr, &bearer, &event(session, "SessionEnd", None)).await.0, 204);
    }
    // AND after its end, every session still counts every one of its tool uses
    let rows = given
        .db()
        .await
        .query(
            "SELECT context->>'claude_session_id', commands_executed::bigint, status \
             FROM \"org_acme\".user_sessions ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let sessions: Vec<(String, i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let expected: Vec<(String, i64, String)> = (0..SESSIONS)
        .map(|s| (format!("parallel-{s}"), TOOL_USES as i64, "completed".to_owned()))
        .collect();
    assert_eq!(sessions, expected);
}

#[tokio::test]
async fn secrets_are_redacted_and_large_fields_truncated_before_storage() {
    // An organization (here: the stage) that opted into keeping content.
    let given = TestApp::spawn_with(&[("HOOK_CONTENT", "redacted")]).await;
    let addr = given.serve_http().await;
    let bearer = token("acme", "alice");
    let mut post_tool_use = fixture("PostToolUse");
    post_tool_use["tool_input"]["env"] = json!({"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG", "PATH": "/usr/bin"});
    post_tool_use["tool_response"]["stdout"] = json!(format!(
        "Authorization: Bearer abcdefghijklmnop\n{}",
        "line of build output\n".repeat(10_000)
    ));
    for body in [fixture("PreToolUse"), post_tool_use] {
        assert_eq!(post(addr, &bearer, &body).await.0, 204);
    }
    let db = given.db().await;
    let stored: Vec<String> = db
        .query(
            "SELECT payload::text FROM \"org_acme\".hook_events \
             UNION ALL SELECT command_args::text FROM \"org_acme\".command_executions \
             UNION ALL SELECT context::text FROM \"org_acme\".command_executions",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for text in &stored {
        for secret in [
            "ghp_R4nd0mT0k3nV4lu3F0rT3st1ng0000",
            "s3cr3t-pw",
            "wJalrXUtnFEMI",
            "abcdefghijklmnop",
        ] {
            assert!(!text.contains(secret), "{secret} stored in {text:.300}");
        }
    }
    assert!(stored.iter().any(|t| t.contains("[REDACTED]")));
    assert!(stored.iter().any(|t| t.contains("/usr/bin")), "ordinary values stay");
    let stdout: String = db
        .query_one(
            "SELECT payload->'tool_response'->>'stdout' FROM \"org_acme\".hook_events WHERE event_name = 'PostToolUse'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stdout.chars().count() < 2_100,
        "{} characters kept",
        stdout.chars().count()
    );
    assert!(stdout.contains("[truncated: "), "the cut says so");
}

#[tokio::test]
async fn what_cannot_be_keyed_is_refused_by_name_and_nothing_is_stored() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let bearer = token("acme", "alice");
    for (body, field) in [
        (json!({"hook_event_name": "Stop"}), "session_id"),
        (json!({"session_id": SESSION}), "hook_event_name"),
        (json!({"session_id": 42, "hook_event_name": "Stop"}), "session_id"),
        (
            json!({"session_id": SESSION, "hook_event_name": "Stop\u{0}"}),
            "hook_event_name",
        ),
        (
            json!({"session_id": SESSION, "hook_event_name": "PostToolUse", "tool_use_id": ["x"]}),
            "tool_use_id",
        ),
    ] {
        let (status, answer) = post(addr, &bearer, &body).await;
        assert_eq!(status, 400, "{body}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let (status, _) = post(
        addr,
        &bearer,
        &json!({"session_id": SESSION, "hook_event_name": "x".repeat(201)}),
    )
    .await;
    assert_eq!(status, 400);
    let schemas = scalar(&given, "SELECT count(*) FROM pg_namespace WHERE nspname = 'org_acme'").await;
    assert_eq!(schemas, 0, "nothing reached the database");
}
