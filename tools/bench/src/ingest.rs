//! Sustained worker ingest: many 500-metric envelopes of four organizations fed to the worker as
//! SQS events of ten, two events at a time; metrics stored per second. Also how the summary
//! section writes its rows (`feed`).
//!
//! May use `stats` and `stack`, `batch_worker` and the service's crates.

use std::sync::Arc;
use std::time::Instant;

use batch_worker::Worker;
use serde_json::{Map, Value, json};
use shared::domain::batch::{Envelope, Source};

use crate::stack::{Sizes, Stack, caller, env, env_for, metrics, sqs_event};
use crate::stats::round3;

/// Messages per SQS event.
pub const MESSAGES_PER_EVENT: usize = 10;
/// SQS events handled at the same time.
const EVENTS_AT_A_TIME: usize = 2;

pub async fn measure(stack: &Stack, sizes: &Sizes, results: &mut Map<String, Value>) {
    let vars = env_for(
        stack,
        &[
            ("WORKER_CONCURRENCY", "4".into()),
            ("DATABASE_MAX_CONNECTIONS", "8".into()),
        ],
    );
    let aws = shared::app::aws_config().await;
    let worker = Arc::new(Worker::from_env(&env(&vars), &aws).expect("worker"));
    let events = ingest_events(sizes);
    // Warm up: provision the organizations' schemas.
    worker
        .handle(sqs_event(vec![events[0][0].clone()]))
        .await
        .expect("warm-up");
    let total_metrics = events.len() * MESSAGES_PER_EVENT * sizes.ingest_per_message;
    let started = Instant::now();
    let failures = feed(&worker, events.into_iter()).await;
    let elapsed = started.elapsed();
    assert_eq!(failures, 0);
    results.insert(
        "worker_sustained_ingest".into(),
        json!({
            "metrics": total_metrics,
            "metrics_per_message": sizes.ingest_per_message,
            "seconds": round3(elapsed.as_secs_f64()),
            "metrics_per_second": (total_metrics as f64 / elapsed.as_secs_f64()).round(),
        }),
    );
}

/// The SQS events' bodies: envelopes of `ingest_per_message` metrics, the organizations in turn.
fn ingest_events(sizes: &Sizes) -> Vec<Vec<String>> {
    let orgs = ["ingest_a", "ingest_b", "ingest_c", "ingest_d"];
    let envelope = |m: usize| {
        let caller = caller(orgs[m % orgs.len()], "importer");
        let items: Vec<Value> = (0..sizes.ingest_per_message)
            .map(|k| json!({"command_name": "lint", "execution_time_ms": k, "status": "success", "context": {"k": k}}))
            .collect();
        Envelope::new(&caller, Source::Import, metrics(items, 1000))
            .to_message()
            .expect("message")
    };
    (0..sizes.ingest_messages.div_ceil(MESSAGES_PER_EVENT))
        .map(|event| {
            (0..MESSAGES_PER_EVENT)
                .map(|i| envelope(event * MESSAGES_PER_EVENT + i))
                .collect()
        })
        .collect()
}

/// Feeds `events` (each the bodies of one SQS event) to `worker`, `EVENTS_AT_A_TIME` at a time,
/// taking the next event only when one is admitted; the number of failed messages.
pub async fn feed(worker: &Arc<Worker>, events: impl Iterator<Item = Vec<String>>) -> usize {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(EVENTS_AT_A_TIME));
    let mut running = tokio::task::JoinSet::new();
    for bodies in events {
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        let worker = worker.clone();
        running.spawn(async move {
            let response = worker.handle(sqs_event(bodies)).await.expect("worker");
            drop(permit);
            response.batch_item_failures.len()
        });
    }
    let mut failures = 0;
    while let Some(joined) = running.join_next().await {
        failures += joined.expect("task");
    }
    failures
}
