//! A whole team on Claude Code hooks at the default budgets, at full size, over HTTP through the
//! local front: `BENCH_TEAM_DEVELOPERS` (50) developers of one organization each send one hook
//! event a second (60 a minute) for `BENCH_TEAM_SECONDS` (120), while a further identity of the
//! same organization sends 50 a second (3,000 a minute). Checked and reported: every developer's
//! event answered 2xx and stored exactly once; the runaway admitted no more than its own budget
//! allows (600 at once, then 10 a second), the rest refused by its own budget (`scope: user`).
//! The latencies are figures, never asserted.
//!
//! May use `stack` and `stats`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::stack::{Stack, connect_postgres, env, env_for, env_number, token};
use crate::stats::{Stats, ms};

const PATH: &str = "/api/v1/hooks/claude-code";
/// The runaway's rate, and the connections it spreads it over.
const RUNAWAY_PER_SECOND: u64 = 50;
const RUNAWAY_CONNECTIONS: u64 = 5;

type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// What one sender saw: each answer's status and wall time.
#[derive(Default)]
struct Answers {
    statuses: Vec<u16>,
    latencies_ms: Vec<f64>,
    scopes: Vec<String>,
}

pub async fn measure(stack: &Stack, results: &mut Map<String, Value>) {
    let developers: usize = env_number("BENCH_TEAM_DEVELOPERS", 50);
    let seconds: u64 = env_number("BENCH_TEAM_SECONDS", 120);
    let org = format!("bench-team-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let addr = serve_front_with_default_budgets(stack).await;
    let start = tokio::time::Instant::now() + Duration::from_millis(500);
    let began = Instant::now();
    let mut team = vec![];
    for dev in 0..developers {
        // Spread over the second, as real developers are.
        let offset = Duration::from_millis((dev as u64 * 1000) / developers as u64);
        let every = Duration::from_secs(1);
        let user = format!("dev{dev}");
        let bodies: Vec<String> = (0..seconds as usize).map(|n| hook_event(&user, n)).collect();
        team.push(tokio::spawn(send_on_schedule(
            addr,
            token(&org, &user),
            bodies,
            start + offset,
            every,
        )));
    }
    let mut runaway = vec![];
    let per_connection = seconds * RUNAWAY_PER_SECOND / RUNAWAY_CONNECTIONS;
    let every = Duration::from_micros(1_000_000 * RUNAWAY_CONNECTIONS / RUNAWAY_PER_SECOND);
    for c in 0..RUNAWAY_CONNECTIONS {
        let offset = Duration::from_micros(1_000_000 / RUNAWAY_PER_SECOND * c);
        let bodies = (0..per_connection as usize)
            .map(|n| hook_event("runaway", (c as usize * per_connection as usize + n) * 2))
            .collect();
        runaway.push(tokio::spawn(send_on_schedule(
            addr,
            token(&org, "runaway"),
            bodies,
            start + offset,
            every,
        )));
    }
    let team = merge(team).await;
    let runaway = merge(runaway).await;
    let elapsed = began.elapsed().as_secs_f64() - 0.5;
    results.insert(
        "team_load".into(),
        report(stack, &org, developers, seconds, elapsed, &team, &runaway).await,
    );
}

/// A local front at the stage's default budgets (the other sections raise them out of the way).
async fn serve_front_with_default_budgets(stack: &Stack) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let defaults = [
        (
            "RATE_LIMIT_MAX_REQUESTS",
            shared::config::DEFAULT_ORG_MAX_REQUESTS.to_string(),
        ),
        (
            "RATE_LIMIT_USER_MAX_REQUESTS",
            shared::config::DEFAULT_USER_MAX_REQUESTS.to_string(),
        ),
        ("RATE_LIMIT_WINDOW_MS", "60000".to_owned()),
    ];
    let vars = env_for(stack, &defaults);
    let aws = shared::app::aws_config().await;
    let front = local_front::Stack::from_env(&env(&vars), &aws).expect("stack");
    tokio::spawn(Arc::new(front.gateway().expect("gateway")).serve(listener));
    addr
}

/// Hook event `n` of `user`: pre and post tool use in turn, one tool use per pair.
fn hook_event(user: &str, n: usize) -> String {
    json!({
        "session_id": format!("session-{user}"),
        "hook_event_name": if n.is_multiple_of(2) { "PreToolUse" } else { "PostToolUse" },
        "tool_name": "Bash",
        "tool_input": {"command": "cargo test"},
        "tool_use_id": format!("toolu_{user}_{}", n / 2),
    })
    .to_string()
}

/// Sends `bodies` one every `every` from `first` on one connection (late sends go at once).
async fn send_on_schedule(
    addr: SocketAddr,
    bearer: String,
    bodies: Vec<String>,
    first: tokio::time::Instant,
    every: Duration,
) -> Answers {
    let mut sender = connect(addr).await;
    let mut answers = Answers::default();
    for (n, body) in bodies.into_iter().enumerate() {
        tokio::time::sleep_until(first + every * n as u32).await;
        let req = hyper::Request::post(PATH)
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        sender.ready().await.expect("connection ready");
        let started = Instant::now();
        let response = sender.send_request(req).await.expect("send");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        answers.latencies_ms.push(ms(started.elapsed()));
        answers.statuses.push(status);
        if status == 429 {
            let body: Value = serde_json::from_slice(&body).unwrap_or_default();
            answers
                .scopes
                .push(body["rate_limit"]["scope"].as_str().unwrap_or("?").to_owned());
        }
    }
    answers
}

async fn connect(addr: SocketAddr) -> Connection {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

async fn merge(tasks: Vec<tokio::task::JoinHandle<Answers>>) -> Answers {
    let mut all = Answers::default();
    for task in tasks {
        let answers = task.await.expect("sender");
        all.statuses.extend(answers.statuses);
        all.latencies_ms.extend(answers.latencies_ms);
        all.scopes.extend(answers.scopes);
    }
    all
}

async fn report(
    stack: &Stack,
    org: &str,
    developers: usize,
    seconds: u64,
    elapsed: f64,
    team: &Answers,
    runaway: &Answers,
) -> Value {
    let stored = stored_per_user(stack, org).await;
    let team_stored: i64 = stored
        .iter()
        .filter(|(user, _)| user != "runaway")
        .map(|(_, n)| n)
        .sum();
    let each_developer_complete = (0..developers).all(|dev| {
        stored
            .iter()
            .any(|(user, n)| *user == format!("dev{dev}") && *n == seconds as i64)
    });
    let ok = |answers: &Answers| answers.statuses.iter().filter(|s| (200..300).contains(*s)).count();
    let runaway_admitted = ok(runaway);
    // 600 at once, then one every 100 ms.
    let runaway_budget = shared::config::DEFAULT_USER_MAX_REQUESTS as f64 * (1.0 + elapsed / 60.0);
    let runaway_stored = stored.iter().find(|(user, _)| user == "runaway").map_or(0, |(_, n)| *n);
    let figures = json!({
        "developers": developers,
        "seconds": seconds,
        "elapsed_s": crate::stats::round3(elapsed),
        "team_sent": team.statuses.len(),
        "team_answered_2xx": ok(team),
        "team_stored": team_stored,
        "each_developer_stored_exactly_once": each_developer_complete,
        "team_events_lost": team.statuses.len() as i64 - team_stored.min(ok(team) as i64),
        "team_hook_latency": Stats::of(&team.latencies_ms).json(team.latencies_ms.len()),
        "runaway_sent": runaway.statuses.len(),
        "runaway_admitted": runaway_admitted,
        "runaway_budget": runaway_budget.floor(),
        "runaway_admitted_over_budget": (runaway_admitted as f64 - runaway_budget.floor()).max(0.0),
        "runaway_refusals_by_its_own_budget": runaway.scopes.iter().filter(|s| *s == "user").count(),
        "runaway_refusals_other": runaway.statuses.len() - runaway_admitted - runaway.scopes.iter().filter(|s| *s == "user").count(),
        "runaway_stored": runaway_stored,
        "runaway_stored_equals_admitted": runaway_stored == runaway_admitted as i64,
    });
    eprintln!("  team load: {figures}");
    figures
}

/// Hook events stored per user of `org`.
async fn stored_per_user(stack: &Stack, org: &str) -> Vec<(String, i64)> {
    let db = connect_postgres(&stack.database_url).await;
    let sql = format!("SELECT user_id, count(*) FROM \"org_{org}\".hook_events GROUP BY user_id");
    db.query(&sql, &[])
        .await
        .expect("count hook events")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}
