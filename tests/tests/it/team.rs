//! A whole team on Claude Code hooks at the default budgets, over HTTP on the real services:
//! every developer's events are answered 2xx and stored exactly once while a runaway colleague
//! of the same organization is refused by its own budget. (The full-size scenario — 50
//! developers for two minutes — is `make bench` section `team`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use integration_tests::{TestApp, http, token};
use serde_json::{Value, json};

const PATH: &str = "/api/v1/hooks/claude-code";

/// One tool use's hook event of `user`, numbered `n`.
fn hook_event(user: &str, n: usize, event: &str) -> String {
    json!({
        "session_id": format!("session-{user}"),
        "hook_event_name": event,
        "tool_name": "Bash",
        "tool_input": {"command": "cargo test"},
        "tool_use_id": format!("toolu_{user}_{}", n / 2),
    })
    .to_string()
}

/// Sends `bodies` with `clients` connections at once; the status and body of each answer.
async fn send_all(addr: SocketAddr, bearer: String, bodies: Vec<String>, clients: usize) -> Vec<(u16, Value)> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (bodies, next, bearer) = (bodies.clone(), next.clone(), bearer.clone());
            tokio::spawn(async move {
                let mut answers = vec![];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break answers };
                    let (status, _, body) = http(addr, "POST", PATH, Some(&bearer), "application/json", body).await;
                    answers.push((status, body));
                }
            })
        })
        .collect();
    let mut answers = vec![];
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    answers
}

async fn stored_events(given: &TestApp, user: &str) -> i64 {
    let db = given.db().await;
    let sql = "SELECT count(*) FROM \"org_acme\".hook_events WHERE user_id = $1";
    db.query_one(sql, &[&user]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_team_loses_no_hook_event_while_a_runaway_colleague_is_refused_by_its_own_budget() {
    // GIVEN the default budgets (600 a minute per developer, 12,000 per organization)
    let logs = integration_tests::logs();
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let team: Vec<String> = (0..10).map(|i| format!("dev{i}")).collect();
    let per_developer = 30;
    let runaway_sends = 900;

    // WHEN ten developers send 30 hook events each while a runaway sends 900 as fast as it can
    let started = Instant::now();
    let mut sends = vec![];
    for user in &team {
        let bodies = (0..per_developer)
            .map(|n| {
                hook_event(
                    user,
                    n,
                    if n.is_multiple_of(2) {
                        "PreToolUse"
                    } else {
                        "PostToolUse"
                    },
                )
            })
            .collect();
        sends.push(tokio::spawn(send_all(addr, token("acme", user), bodies, 2)));
    }
    let runaway_bodies = (0..runaway_sends)
        .map(|n| hook_event("runaway", n * 2, "PreToolUse"))
        .collect();
    let runaway = tokio::spawn(send_all(addr, token("acme", "runaway"), runaway_bodies, 16));
    let mut team_answers = vec![];
    for send in sends {
        team_answers.push(send.await.unwrap());
    }
    let runaway_answers = runaway.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();

    // THEN every developer's event is answered 204 and stored exactly once
    for (user, answers) in team.iter().zip(&team_answers) {
        let refused: Vec<_> = answers.iter().filter(|(status, _)| *status != 204).collect();
        assert!(refused.is_empty(), "{user}: {refused:?}");
        assert_eq!(stored_events(&given, user).await, per_developer as i64, "{user}");
    }
    // AND the runaway got its own budget (600 at once, then 10 a second) and no more
    let admitted = runaway_answers.iter().filter(|(status, _)| *status == 204).count();
    let refill = (elapsed * 10.0).ceil() as usize;
    assert!(
        (600..=600 + refill).contains(&admitted),
        "{admitted} admitted in {elapsed:.1} s"
    );
    for (status, body) in runaway_answers.iter().filter(|(status, _)| *status != 204) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["rate_limit"]["scope"], "user", "{body}");
        assert!(body["rate_limit"]["retry_after"].as_u64().unwrap() >= 1);
    }
    // AND each admitted event of the runaway is stored once, the refused ones not at all
    assert_eq!(stored_events(&given, "runaway").await, admitted as i64);
    // AND each refusal is one log line counted in the RateLimited metric the hook alarm watches
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let refusals: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains(r#""user":"runaway""#) && line.contains(r#""RateLimited":1"#))
        .collect();
    assert_eq!(refusals.len(), runaway_answers.len() - admitted);
    for line in refusals {
        assert!(line.contains(r#""Route":"POST /api/v1/hooks/claude-code""#), "{line}");
        assert!(line.contains("rate limited (user)"), "{line}");
    }
}
