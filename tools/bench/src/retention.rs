//! Retention while ingest runs: `BENCH_RETENTION_ROWS` (default ten million) expired command
//! executions are inserted with `generate_series`, then the single-metric write path is timed
//! alone (`BENCH_RETENTION_INGEST_SECONDS`, default 10) and again while retention deletes every
//! expired row in chunks of `BENCH_RETENTION_CHUNK_ROWS` (default the function's 5000), one
//! statement each, as the scheduled function does. Reports ingest p95 before and during, their
//! ratio, rows deleted and the deletion rate. Nothing here is asserted.
//!
//! May use `stats` and `stack`, the service's crates and the PostgreSQL client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use shared::App;
use shared::adapters::postgres::lifecycle::{DEFAULT_CHUNK_ROWS, DEFAULT_PAUSE_MS, PgLifecycle};
use shared::domain::ids::OrgId;
use shared::domain::lifecycle::Retention;
use shared::ports::lifecycle::DataLifecycle;

use crate::stack::{Stack, command_request, connect_postgres, env, env_for, env_number, token};
use crate::stats::{Stats, ms, round3};

const ORG: &str = "retention_bench";
/// Rows per `INSERT … SELECT generate_series` statement.
const INSERT_STEP: u64 = 1_000_000;

/// Times single-metric writes of `org`, one after another, until `done` says so.
async fn ingest_until(app: &App, token: &str, mut done: impl FnMut() -> bool) -> Vec<f64> {
    let mut samples = Vec::new();
    while !done() {
        let started = Instant::now();
        let response = command_execution::handle(app, command_request(token))
            .await
            .expect("handler");
        assert_eq!(response.status(), 201, "the write path answered {}", response.status());
        samples.push(ms(started.elapsed()));
    }
    samples
}

pub async fn measure(stack: &Stack, results: &mut Map<String, Value>) {
    let rows: u64 = env_number("BENCH_RETENTION_ROWS", 10_000_000);
    let chunk: u32 = env_number("BENCH_RETENTION_CHUNK_ROWS", DEFAULT_CHUNK_ROWS);
    let pause_ms: u64 = env_number("BENCH_RETENTION_PAUSE_MS", DEFAULT_PAUSE_MS);
    let seconds: u64 = env_number("BENCH_RETENTION_INGEST_SECONDS", 10);
    let aws = shared::app::aws_config().await;
    let app = App::from_env(&env(&env_for(stack, &[])), &aws).expect("app");
    let token = token(ORG, "dev");
    // Provisions the tenant (and migration 0005's indexes).
    ingest_until(&app, &token, {
        let mut once = false;
        move || std::mem::replace(&mut once, true)
    })
    .await;

    let client = connect_postgres(&stack.database_url).await;
    let started = Instant::now();
    let mut inserted = 0;
    while inserted < rows {
        let n = (rows - inserted).min(INSERT_STEP) as i64;
        client
            .execute(
                "INSERT INTO \"org_retention_bench\".command_executions (id, organization_id, user_id, command_name, \
                 execution_time_ms, status, context, \"timestamp\") \
                 SELECT gen_random_uuid(), 'retention_bench', 'u' || (i % 50), 'build', i % 5000, 'success', '{}', \
                 now() - interval '200 days' + (i % 8640000) * interval '1 second' FROM generate_series(1::bigint, $1::bigint) AS i",
                &[&n],
            )
            .await
            .expect("insert expired rows");
        inserted += n as u64;
        eprintln!("  {inserted} expired rows inserted");
    }
    client
        .batch_execute("ANALYZE \"org_retention_bench\".command_executions")
        .await
        .expect("analyze");
    let insert_seconds = started.elapsed().as_secs_f64();

    let window = Duration::from_secs(seconds);
    let before_started = Instant::now();
    let before = ingest_until(&app, &token, || before_started.elapsed() >= window).await;

    let vars = env_for(
        stack,
        &[
            ("RETENTION_CHUNK_ROWS", chunk.to_string()),
            ("RETENTION_PAUSE_MS", pause_ms.to_string()),
        ],
    );
    let lifecycle = Arc::new(PgLifecycle::from_env(&env(&vars)).expect("lifecycle"));
    let org = OrgId::parse(ORG).expect("org");
    let deletion = tokio::spawn(async move {
        let started = Instant::now();
        let expired = lifecycle
            .delete_expired(
                &org,
                &Retention::default(),
                chrono::Utc::now(),
                Instant::now() + Duration::from_secs(24 * 3600),
            )
            .await
            .expect("retention");
        (expired, started.elapsed())
    });
    let during = ingest_until(&app, &token, || deletion.is_finished()).await;
    let (expired, took) = deletion.await.expect("deletion task");
    let deleted: u64 = expired.deleted.values().sum();

    let (before_stats, during_stats) = (Stats::of(&before), Stats::of(&during));
    let ratio = round3(during_stats.p95 / before_stats.p95);
    let rate = (deleted as f64 / took.as_secs_f64()).round();
    eprintln!(
        "  retention: {deleted} rows deleted in {:.1} s ({rate} rows/s, chunks of {chunk}, {pause_ms} ms apart); \
         ingest p95 {:.3} ms before, {:.3} ms during (x{ratio})",
        took.as_secs_f64(),
        before_stats.p95,
        during_stats.p95
    );
    results.insert(
        "retention_while_ingesting".into(),
        json!({
            "expired_rows_inserted": rows,
            "insert_seconds": round3(insert_seconds),
            "chunk_rows": chunk,
            "pause_ms": pause_ms,
            "rows_deleted": deleted,
            "complete": expired.complete,
            "deletion_seconds": round3(took.as_secs_f64()),
            "rows_deleted_per_second": rate,
            "ingest_before": before_stats.json(before.len()),
            "ingest_during": during_stats.json(during.len()),
            "ingest_p95_ratio_during_to_before": ratio,
        }),
    );
}
