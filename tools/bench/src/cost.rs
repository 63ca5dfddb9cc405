//! What one million metrics cost on AWS through each path, at list prices, from this run's
//! measurements: each path's functions run as release binaries under the Lambda Runtime API
//! stand-in (as the `functions` section runs them), and their billed durations (rounded up to the
//! millisecond per invocation, as Lambda bills), log bytes and peak memory are measured; the
//! requests each path makes of API Gateway, DynamoDB and SQS are counted from its shape and the
//! run's DynamoDB calls per admitted request (the `in_process` section).
//!
//! Live updates are on, as deployed: each write's connections lookup is counted, and the measured
//! durations include one connected dashboard's push. Left out, and said so in the output:
//! PostgreSQL (a provisioned server, not per request), the WebSocket messages themselves
//! ($1.00 per million per connected dashboard), data transfer, and free tiers.
//!
//! May use `stats`, `stack` and `functions` (to start a binary), and the service's crates.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use serde_json::{Map, Value, json};
use shared::domain::batch::{Envelope, Source};
use tokio::io::AsyncReadExt;

use crate::functions::{peak_rss_kb, repository, start_with_stdout};
use crate::stack::{Stack, caller, env_number, metrics};
use crate::stats::{Stats, round3};

/// AWS list prices, us-east-1, first pricing tier, as published on the AWS pricing pages in
/// August 2025 (dollars). Check them before deciding: prices and tiers change.
mod price {
    pub const AS_OF: &str = "2025-08, us-east-1, first tier, no free tier";
    /// API Gateway HTTP API, per request (each 512 KB of a request is metered as one).
    pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
    /// Lambda, per request.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// Lambda arm64, per GB-second of billed duration.
    pub const LAMBDA_ARM64_GB_SECOND: f64 = 0.000_013_333_4;
    /// DynamoDB on-demand, per write request unit (a write of up to 1 KB; a failed conditional
    /// write is charged too).
    pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand, per read request unit (an eventually consistent read of up to 4 KB is
    /// half of one).
    pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
    /// SQS standard queue, per request (each 64 KB chunk of a request's payload is one).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// CloudWatch Logs, per GB ingested (standard class).
    pub const LOG_GB: f64 = 0.50;
}

/// Bytes Lambda's own START, END and REPORT lines add to each invocation's log (approximate).
const PLATFORM_LOG_BYTES: f64 = 300.0;
/// Read units of the live-update connections lookup each writer makes per stored batch of
/// records (an eventually consistent query of a few connections), with live updates on.
const LIVE_LOOKUP_READ_UNITS: f64 = 0.5;
/// SQS messages per worker invocation (the event source mapping's `BatchSize` in template.yaml).
const MESSAGES_PER_WORKER_EVENT: usize = 10;
const SQS_CHUNK: f64 = 64.0 * 1024.0;
const METRICS: f64 = 1e6;

/// One function's invocations as measured: billed milliseconds and log bytes per invocation.
struct Invocations {
    billed_ms: Stats,
    log_bytes: f64,
    peak_rss_mb: f64,
    n: usize,
}

impl Invocations {
    /// Lambda's price of one invocation at `memory_mb` (duration and request).
    fn lambda_cost(&self, memory_mb: f64) -> f64 {
        price::LAMBDA_REQUEST + self.billed_ms.mean / 1e3 * memory_mb / 1024.0 * price::LAMBDA_ARM64_GB_SECOND
    }

    fn log_cost(&self) -> f64 {
        (self.log_bytes + PLATFORM_LOG_BYTES) / 1e9 * price::LOG_GB
    }

    fn json(&self) -> Value {
        json!({
            "invocations": self.n,
            "billed_ms": self.billed_ms.json(self.n),
            "log_bytes_per_invocation": self.log_bytes.round(),
            "peak_rss_mb": round3(self.peak_rss_mb),
        })
    }
}

/// A path's cost of one million metrics, by service.
#[derive(Default)]
struct Bill {
    api_gateway: f64,
    lambda: f64,
    dynamodb: f64,
    sqs: f64,
    logs: f64,
}

impl Bill {
    fn total(&self) -> f64 {
        self.api_gateway + self.lambda + self.dynamodb + self.sqs + self.logs
    }

    fn json(&self) -> Value {
        let cents = |x: f64| (x * 1e4).round() / 1e4;
        json!({
            "api_gateway": cents(self.api_gateway), "lambda": cents(self.lambda),
            "dynamodb": cents(self.dynamodb), "sqs": cents(self.sqs), "logs": cents(self.logs),
            "total": cents(self.total()),
        })
    }
}

pub async fn measure(stack: &Stack, results: &mut Map<String, Value>) {
    let memory_mb = configured_memory_mb();
    // DynamoDB calls per admitted request (each an UpdateItem of a small item: one write unit):
    // the leases section's figure for many containers serving developers spread over them, the
    // costliest case measured; else the in_process section's (one container).
    let limiter_writes = results
        .get("rate_limit_leases")
        .and_then(|leases| leases["contention_within_budget"]["calls_per_admitted_request"].as_f64())
        .or_else(|| {
            results
                .get("dynamodb_round_trips_per_admitted_request")
                .and_then(Value::as_f64)
        })
        .unwrap_or(f64::NAN);
    let n = ((300.0 * env_number("BENCH_SCALE", 1.0)) as usize).max(40);
    let fixture = |name: &str| {
        std::fs::read_to_string(repository().join("events").join(format!("{name}.json"))).expect("event fixture")
    };

    let single = invoke("command-execution", stack, repeat(fixture("command-execution"), n)).await;
    let hook = invoke("claude-code-hook", stack, repeat(fixture("claude-code-hook"), n)).await;
    let batch_route = invoke("batch", stack, batch_requests(&fixture("batch"), 20, n)).await;
    let (worker_20_events, envelope_20_bytes) = worker_events(20, Source::Api, n / 5);
    let worker_20 = invoke("batch-worker", stack, worker_20_events).await;
    let (worker_500_events, envelope_500_bytes) = worker_events(500, Source::Import, (n / 15).max(10));
    let worker_500 = invoke("batch-worker", stack, worker_500_events).await;
    let otlp_metrics = invoke("otlp-metrics", stack, repeat(fixture("otlp-metrics"), n)).await;
    let otlp_logs = invoke("otlp-logs", stack, repeat(fixture("otlp-logs"), n)).await;
    let (points, records) = otlp_fixture_records(&fixture("otlp-metrics"), &fixture("otlp-logs"));

    let live_lookup = LIVE_LOOKUP_READ_UNITS * price::DYNAMODB_READ_UNIT;
    let per_request = |route: &Invocations, metrics_per_request: f64| Bill {
        api_gateway: price::HTTP_API_REQUEST * METRICS / metrics_per_request,
        lambda: route.lambda_cost(memory_mb) * METRICS / metrics_per_request,
        dynamodb: (limiter_writes * price::DYNAMODB_WRITE_UNIT + live_lookup) * METRICS / metrics_per_request,
        sqs: 0.0,
        logs: route.log_cost() * METRICS / metrics_per_request,
    };
    let worker_part =
        |bill: &mut Bill, worker: &Invocations, per_envelope: f64, envelope_bytes: f64, slot_writes: f64| {
            let envelopes = METRICS / per_envelope;
            let events = envelopes / MESSAGES_PER_WORKER_EVENT as f64;
            bill.lambda += worker.lambda_cost(memory_mb) * events;
            bill.logs += worker.log_cost() * events;
            // Received ten at a time (their payload in 64 KB chunks), deleted ten at a time.
            let receive = (MESSAGES_PER_WORKER_EVENT as f64 * envelope_bytes / SQS_CHUNK).ceil();
            bill.sqs += (receive + 1.0) * events * price::SQS_REQUEST;
            bill.dynamodb += (slot_writes * price::DYNAMODB_WRITE_UNIT + live_lookup) * envelopes;
        };

    let mut paths: Vec<(&str, Bill)> = vec![
        (
            "single route (POST /api/v1/metrics/command-execution)",
            per_request(&single, 1.0),
        ),
        ("hook (POST /api/v1/hooks/claude-code)", per_request(&hook, 1.0)),
    ];
    // Batch of 20 through the route: the route's request, its limiter and slot writes and its
    // SendMessage; then the worker (which frees the slot: one more write).
    let mut batch = per_request(&batch_route, 20.0);
    // The route stores nothing itself (no live lookup); it takes a batch slot.
    batch.dynamodb += (price::DYNAMODB_WRITE_UNIT - live_lookup) * METRICS / 20.0;
    batch.sqs += (envelope_20_bytes / SQS_CHUNK).ceil() * price::SQS_REQUEST * METRICS / 20.0;
    worker_part(&mut batch, &worker_20, 20.0, envelope_20_bytes, 1.0);
    paths.push(("batch of 20 (POST /api/v1/metrics/batch, then the worker)", batch));
    // Batch of 500 by the importer: SendMessageBatch of ten straight to the queue, then the worker.
    let mut import = Bill::default();
    let send = (MESSAGES_PER_WORKER_EVENT as f64 * envelope_500_bytes / SQS_CHUNK).ceil();
    import.sqs += send * price::SQS_REQUEST * METRICS / 500.0 / MESSAGES_PER_WORKER_EVENT as f64;
    worker_part(&mut import, &worker_500, 500.0, envelope_500_bytes, 0.0);
    paths.push(("batch of 500 via metrics-import (SQS, then the worker)", import));
    paths.push((
        "OTLP metrics export (POST /otlp/v1/metrics), per million points",
        per_request(&otlp_metrics, points),
    ));
    paths.push((
        "OTLP logs export (POST /otlp/v1/logs), per million events",
        per_request(&otlp_logs, records),
    ));

    eprintln!(
        "  cost of 1,000,000 metrics at AWS list prices ({}), {memory_mb} MB arm64, {:.3} DynamoDB writes per admitted request:",
        price::AS_OF,
        limiter_writes
    );
    eprintln!(
        "  {:<66} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "path", "API GW", "Lambda", "DynamoDB", "SQS", "logs", "total $"
    );
    for (name, bill) in &paths {
        eprintln!(
            "  {name:<66} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
            bill.api_gateway,
            bill.lambda,
            bill.dynamodb,
            bill.sqs,
            bill.logs,
            bill.total()
        );
    }
    eprintln!(
        "  not included: PostgreSQL, WebSocket messages to dashboards ($1.00 per million per connected dashboard), data transfer, free tiers"
    );
    let measured = json!({
        "command-execution": single.json(), "claude-code-hook": hook.json(), "batch_20": batch_route.json(),
        "batch-worker_10x20": worker_20.json(), "batch-worker_10x500": worker_500.json(),
        "otlp-metrics": otlp_metrics.json(), "otlp-logs": otlp_logs.json(),
    });
    results.insert(
        "cost_per_million_metrics".into(),
        json!({
            "prices_as_of": price::AS_OF,
            "memory_mb": memory_mb,
            "dynamodb_writes_per_admitted_request": round3(limiter_writes),
            "envelope_bytes": {"20": envelope_20_bytes, "500": envelope_500_bytes},
            "otlp_records_per_export": {"metrics_points": points, "logs_events": records},
            "paths": paths.iter().map(|(name, bill)| (name.to_string(), bill.json())).collect::<Map<_, _>>(),
            "invocations": measured,
            "not_included": ["PostgreSQL", "WebSocket messages to connected dashboards", "data transfer", "free tiers"],
        }),
    );
}

/// `event` `n` times.
fn repeat(event: String, n: usize) -> Vec<String> {
    vec![event; n]
}

/// `n` batch-route requests of `size` command executions each, on the batch fixture.
fn batch_requests(fixture: &str, size: usize, n: usize) -> Vec<String> {
    let mut event: Value = serde_json::from_str(fixture).expect("batch fixture");
    let items: Vec<Value> = (0..size)
        .map(|k| json!({"command_name": "lint", "execution_time_ms": 100 + k, "status": "success", "command_args": {"path": "src/"}, "context": {"project": "web_app"}}))
        .collect();
    let body = json!({ "command_executions": items }).to_string();
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["body"] = json!(body);
    repeat(event.to_string(), n)
}

/// `n` SQS events of ten new envelopes of `size` metrics each, and one envelope's size in bytes.
fn worker_events(size: usize, source: Source, n: usize) -> (Vec<String>, f64) {
    let who = caller("cost", "importer");
    let envelope = || {
        let items: Vec<Value> = (0..size)
            .map(|k| json!({"command_name": "lint", "execution_time_ms": k, "status": "success", "command_args": {"path": "src/"}, "context": {"project": "web_app"}}))
            .collect();
        Envelope::new(&who, source, metrics(items, 1000))
            .to_message()
            .expect("message")
    };
    let bytes = envelope().len() as f64;
    let events = (0..n)
        .map(|_| {
            let records: Vec<Value> = (0..MESSAGES_PER_WORKER_EVENT)
                .map(|_| json!({"messageId": uuid::Uuid::new_v4().to_string(), "body": envelope(), "eventSource": "aws:sqs"}))
                .collect();
            json!({ "Records": records }).to_string()
        })
        .collect();
    (events, bytes)
}

/// Runs `name`'s release binary on `events`; the first few (cold caches, a new schema) are not
/// counted.
async fn invoke(name: &str, stack: &Stack, events: Vec<String>) -> Invocations {
    const WARM_UP: usize = 5;
    let release_dir = std::env::var("BENCH_RELEASE_DIR").unwrap_or_else(|_| "target/release".into());
    let binary = Path::new(&release_dir).join(name);
    assert!(
        binary.exists(),
        "no release binary at {} (bench.sh builds it)",
        binary.display()
    );
    let (api, mut child) = start_with_stdout(&binary, name, stack).await;
    let log_bytes = Arc::new(AtomicU64::new(0));
    let mut stdout = child.stdout.take().expect("stdout");
    let counting = log_bytes.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read) = stdout.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            counting.fetch_add(read as u64, Ordering::Relaxed);
        }
    });
    let total = events.len();
    for event in events.iter().take(WARM_UP) {
        api.push(event.clone());
    }
    api.wait_for(WARM_UP.min(total)).await;
    let logged_before = log_bytes.load(Ordering::Relaxed);
    for event in events.into_iter().skip(WARM_UP) {
        api.push(event);
    }
    api.wait_for(total).await;
    // The last lines may still be in the pipe.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let peak_rss_mb = child.id().and_then(peak_rss_kb).unwrap_or(0) as f64 / 1024.0;
    let _ = child.kill().await;
    assert!(api.errors().is_empty(), "{name}: {:?}", api.errors().first());
    let billed: Vec<f64> = api
        .billed_durations()
        .iter()
        .skip(WARM_UP)
        .map(|d| (d.as_secs_f64() * 1e3).ceil())
        .collect();
    let n = billed.len();
    Invocations {
        billed_ms: Stats::of(&billed),
        log_bytes: (log_bytes.load(Ordering::Relaxed) - logged_before) as f64 / n as f64,
        peak_rss_mb,
        n,
    }
}

/// `FunctionMemorySize`'s default in template.yaml, in MB: what every function is given.
fn configured_memory_mb() -> f64 {
    let template = std::fs::read_to_string(repository().join("template.yaml")).expect("template.yaml");
    template
        .lines()
        .skip_while(|line| line.trim() != "FunctionMemorySize:")
        .find_map(|line| line.trim().strip_prefix("Default:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("FunctionMemorySize's default in template.yaml")
}

/// The data points of the OTLP metrics fixture and the log records of the logs fixture: the
/// records one export of each stores.
fn otlp_fixture_records(metrics_event: &str, logs_event: &str) -> (f64, f64) {
    let body = |event: &str| {
        let event: Value = serde_json::from_str(event).expect("fixture");
        base64::engine::general_purpose::STANDARD
            .decode(event["body"].as_str().expect("body"))
            .expect("base64 body")
    };
    let metrics = ExportMetricsServiceRequest::decode(body(metrics_event).as_slice()).expect("metrics export");
    let points: usize = metrics
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(d)) => d.data_points.len(),
            Some(Data::Gauge(d)) => d.data_points.len(),
            Some(Data::Histogram(d)) => d.data_points.len(),
            Some(Data::ExponentialHistogram(d)) => d.data_points.len(),
            Some(Data::Summary(d)) => d.data_points.len(),
            None => 0,
        })
        .sum();
    let logs = ExportLogsServiceRequest::decode(body(logs_event).as_slice()).expect("logs export");
    let records: usize = logs
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    (points as f64, records as f64)
}
