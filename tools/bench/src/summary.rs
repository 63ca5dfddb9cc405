//! `GET /api/v1/metrics/summary` over `BENCH_SUMMARY_ROWS` (default 1,000,000) command executions
//! written by the worker's write path (which keeps the aggregates): 20 users working 09:00-17:00
//! UTC for 30 days, each using 15 of 30 commands. Also the specification's per-user query (count
//! and average since a time) on the aggregates alone, and as a baseline over the raw rows.
//!
//! May use `stats`, `stack` and `ingest` (whose `feed` writes the rows), `metrics_summary` and
//! the service's crates.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::app::{FromEnv, Reader};
use shared::domain::batch::{Envelope, Source};

use crate::stack::{Stack, authorized_request, caller, connect_postgres, env, env_for, env_number, metrics};
use crate::stats::{Stats, ms, round3};

const SUMMARY_EVENT: &str = include_str!("../../../events/metrics-summary.json");

/// The organization whose rows are written and queried.
const ORG: &str = "summary_bench";
const USERS: usize = 20;
const DAYS: i64 = 30;
const COMMANDS: usize = 30;
const METRICS_PER_MESSAGE: usize = 500;
/// Requests or queries run before the samples are kept.
const WARM_UP: usize = 10;
const SUMMARY_RUNS: usize = 300;
const SUMMARY_WITH_P95_RUNS: usize = 60;
const QUERY_RUNS: usize = 300;
const RAW_SCANS: usize = 6;

pub async fn measure(stack: &Stack, results: &mut Map<String, Value>) {
    let rows: usize = env_number("BENCH_SUMMARY_ROWS", 1_000_000);
    let vars = env_for(stack, &[("DATABASE_MAX_CONNECTIONS", "8".into())]);
    let aws = shared::app::aws_config().await;
    let worker = Arc::new(batch_worker::Worker::from_env(&env(&vars), &aws).expect("worker"));
    let now = Utc::now();
    let messages = rows.div_ceil(METRICS_PER_MESSAGE);
    let written = Instant::now();
    write_rows(&worker, messages, now).await;
    let write_seconds = written.elapsed().as_secs_f64();

    // Settled tables, as autovacuum leaves them in service: the write upserted each aggregate
    // row many times, and without VACUUM the figures also depended on whether autovacuum had
    // cleared those dead versions before the queries ran.
    let admin = connect_postgres(&stack.database_url).await;
    admin.batch_execute("VACUUM ANALYZE").await.expect("vacuum analyze");
    let app = Reader::from_env(&env(&vars), &aws).expect("app");
    let token = crate::stack::token(ORG, "user00");
    // The last 30 days, from an arbitrary minute: whole days from daily rows, the rest hourly.
    let since = now - chrono::Duration::days(DAYS);
    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let handler = time_summaries(&app, &token, &since_text, false, SUMMARY_RUNS).await;
    let handler_p95 = time_summaries(&app, &token, &since_text, true, SUMMARY_WITH_P95_RUNS).await;
    let by_grouping: Map<String, Value> = GROUPINGS
        .iter()
        .map(|grouping| {
            let samples: Vec<f64> = handler
                .iter()
                .filter(|(g, _)| g == grouping)
                .map(|(_, ms)| *ms)
                .collect();
            (grouping.to_string(), Stats::of(&samples).json(samples.len()))
        })
        .collect();
    eprintln!("  summary handler p50 / p95 by grouping (ms): {}", {
        let show = |(g, v): (&String, &Value)| format!("{g} {} / {}", v["p50_ms"], v["p95_ms"]);
        by_grouping.iter().map(show).collect::<Vec<_>>().join(", ")
    });
    let (handler, handler_p95) = (durations(&handler), durations(&handler_p95));
    let query_only = time_aggregates_query(&app, &since_text, now).await;
    let scan = time_raw_scans(&stack.database_url, since).await;
    let written_rows = messages * METRICS_PER_MESSAGE;
    results.insert(
        "summary_over_raw_rows".into(),
        json!({
            "rows": written_rows,
            "write_seconds": round3(write_seconds),
            "write_metrics_per_second": (written_rows as f64 / write_seconds).round(),
            "summary_handler_ms": Stats::of(&handler).json(SUMMARY_RUNS),
            "summary_handler_by_grouping_ms": by_grouping,
            "summary_handler_with_p95_ms": Stats::of(&handler_p95).json(SUMMARY_WITH_P95_RUNS),
            "per_user_query_on_aggregates_ms": Stats::of(&query_only).json(QUERY_RUNS),
            "raw_per_user_scan_ms": Stats::of(&scan).json(RAW_SCANS),
            "specification_10k_query_ms": 8.7,
        }),
    );
}

/// `messages` envelopes of the users' working days through the worker, ten to an SQS event.
async fn write_rows(worker: &Arc<batch_worker::Worker>, messages: usize, now: DateTime<Utc>) {
    let first_day = chrono::DurationRound::duration_trunc(now, chrono::Duration::days(1)).expect("day")
        - chrono::Duration::days(DAYS - 1);
    let events = (0..messages).step_by(crate::ingest::MESSAGES_PER_EVENT).map(|first| {
        (first..(first + crate::ingest::MESSAGES_PER_EVENT).min(messages))
            .map(|m| message(m, first_day))
            .collect()
    });
    assert_eq!(crate::ingest::feed(worker, events).await, 0);
}

/// The `m`th envelope: one user's metrics at minutes of the working days spread by a prime stride.
fn message(m: usize, first_day: DateTime<Utc>) -> String {
    let working_minutes = DAYS as usize * 8 * 60;
    let user = m % USERS;
    let caller = caller(ORG, &format!("user{user:02}"));
    let items: Vec<Value> = (0..METRICS_PER_MESSAGE)
        .map(|k| {
            let i = m * METRICS_PER_MESSAGE + k;
            let minute = i * 7919 % working_minutes;
            let at = first_day
                + chrono::Duration::days((minute / 480) as i64)
                + chrono::Duration::hours(9)
                + chrono::Duration::minutes((minute % 480) as i64);
            json!({"command_name": format!("cmd{:02}", (user + i % 15) % COMMANDS), "execution_time_ms": (i % 977) as f64 / 3.0,
                   "status": if i.is_multiple_of(11) { "error" } else { "success" }, "timestamp": at.to_rfc3339()})
        })
        .collect();
    Envelope::new(&caller, Source::Import, metrics(items, 1000))
        .to_message()
        .expect("message")
}

/// The summary's groupings the benchmark asks for, in turn.
const GROUPINGS: [&str; 3] = ["user", "command", "day"];

/// Each of `runs` summary requests (the `GROUPINGS` in turn), after warm-up: its grouping and
/// milliseconds.
async fn time_summaries(app: &Reader, token: &str, since: &str, p95: bool, runs: usize) -> Vec<(&'static str, f64)> {
    let mut samples = Vec::new();
    for i in 0..runs + WARM_UP {
        let group_by = GROUPINGS[i % GROUPINGS.len()];
        let query: std::collections::HashMap<String, String> = [
            ("group_by".to_owned(), group_by.to_owned()),
            ("since".to_owned(), since.to_owned()),
            ("p95".to_owned(), p95.to_string()),
        ]
        .into();
        let req = lambda_http::RequestExt::with_query_string_parameters(
            authorized_request(SUMMARY_EVENT, token),
            lambda_http::aws_lambda_events::query_map::QueryMap::from(query),
        );
        let began = Instant::now();
        let response = metrics_summary::handle(app, req).await.expect("summary");
        assert_eq!(response.status(), 200, "{:?}", response.body());
        if i >= WARM_UP {
            samples.push((group_by, ms(began.elapsed())));
        }
    }
    samples
}

fn durations(samples: &[(&str, f64)]) -> Vec<f64> {
    samples.iter().map(|(_, ms)| *ms).collect()
}

/// The specification's query (count and average time per user since a time) alone: the
/// aggregates' statement and its decoding, without authentication and rate limiting.
async fn time_aggregates_query(app: &Reader, since: &str, now: DateTime<Utc>) -> Vec<f64> {
    let query =
        shared::domain::summary::SummaryQuery::parse([("group_by", "user"), ("since", since)], now).expect("query");
    let caller = caller(ORG, "user00");
    let mut samples = Vec::new();
    for i in 0..QUERY_RUNS + WARM_UP {
        let began = Instant::now();
        app.store.aggregates(&caller, &query).await.expect("aggregates");
        if i >= WARM_UP {
            samples.push(ms(began.elapsed()));
        }
    }
    samples
}

/// The same query over the raw rows, the baseline.
async fn time_raw_scans(database_url: &str, since: DateTime<Utc>) -> Vec<f64> {
    let raw = connect_postgres(database_url).await;
    let mut samples = Vec::new();
    for _ in 0..RAW_SCANS {
        let began = Instant::now();
        raw.query(
            "SELECT user_id, count(*), avg(execution_time_ms) FROM \"org_summary_bench\".command_executions \
             WHERE \"timestamp\" >= $1 GROUP BY user_id",
            &[&since],
        )
        .await
        .expect("raw query");
        samples.push(ms(began.elapsed()));
    }
    samples
}
