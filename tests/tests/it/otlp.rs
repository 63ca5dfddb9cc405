//! OTLP ingest on the real local services: a real OpenTelemetry exporter (the Rust
//! `opentelemetry-otlp` SDK, HTTP protobuf and HTTP JSON, gzip, delta and cumulative
//! temporality) and Claude Code's recorded exports reach `POST /otlp/v1/metrics` and
//! `POST /otlp/v1/logs` through the local front; the summary's `usage` then equals what was
//! sent, retries store nothing twice, and OTLP data lands on the hooks' session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::{TestApp, admin_token, http, token};
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider};
use opentelemetry::metrics::MeterProvider;
use opentelemetry_otlp::{Compression, LogExporter, MetricExporter, Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use serde_json::Value;

const SESSION: &str = "5f0c6f5e-7c1e-4c55-9a55-0e0a4b1d2c3e";
const MODEL: &str = "claude-opus-5-5";

/// How a test's exporter is set up.
#[derive(Clone, Copy)]
struct Exporter {
    protocol: Protocol,
    temporality: Temporality,
    gzip: bool,
}

fn headers(org: &str, user: &str) -> HashMap<String, String> {
    HashMap::from([("Authorization".to_owned(), format!("Bearer {}", token(org, user)))])
}

fn resource() -> Resource {
    Resource::builder().with_service_name("claude-code").build()
}

/// A meter provider exporting to the local front. Built, used and shut down on a blocking
/// thread: the SDK's reader and the blocking HTTP client run outside the async runtime.
fn meter_provider(addr: SocketAddr, org: &str, user: &str, how: Exporter) -> SdkMeterProvider {
    let mut builder = MetricExporter::builder()
        .with_http()
        .with_protocol(how.protocol)
        .with_endpoint(format!("http://{addr}/otlp/v1/metrics"))
        .with_headers(headers(org, user))
        .with_temporality(how.temporality)
        .with_timeout(Duration::from_secs(10));
    if how.gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    let reader = PeriodicReader::builder(builder.build().expect("exporter"))
        .with_interval(Duration::from_secs(3600))
        .build();
    SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource())
        .build()
}

/// Claude-Code-shaped usage of one developer in two exports: tokens by type, cost, lines.
fn export_two_intervals(addr: SocketAddr, org: &'static str, user: &'static str, how: Exporter) {
    let provider = meter_provider(addr, org, user, how);
    let meter = provider.meter("com.anthropic.claude_code");
    let tokens = meter.f64_counter("claude_code.token.usage").with_unit("tokens").build();
    let cost = meter.f64_counter("claude_code.cost.usage").with_unit("USD").build();
    let lines = meter.f64_counter("claude_code.lines_of_code.count").build();
    let at = |kind: &'static str| {
        [
            KeyValue::new("session.id", SESSION),
            KeyValue::new("user.id", "hashed-user"),
            KeyValue::new("model", MODEL),
            KeyValue::new("type", kind),
        ]
    };
    for (input, output, dollars, added) in [(100.0, 20.0, 0.25, 3.0), (140.0, 10.0, 0.5, 4.0)] {
        tokens.add(input, &at("input"));
        tokens.add(output, &at("output"));
        cost.add(dollars, &at("cost")[..3]);
        lines.add(
            added,
            &[KeyValue::new("session.id", SESSION), KeyValue::new("type", "added")],
        );
        provider.force_flush().expect("export");
    }
    provider.shutdown().expect("shutdown");
}

/// The summary's groups over the last day (the default span).
async fn usage_of(addr: SocketAddr, org: &str, user: &str, group_by: &str) -> Vec<Value> {
    usage_over(addr, org, user, &format!("group_by={group_by}")).await
}

async fn usage_over(addr: SocketAddr, org: &str, user: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/metrics/summary?{query}");
    // An admin of the organization reads every developer's rows.
    let (status, _, body) = http(
        addr,
        "GET",
        &path,
        Some(&admin_token(org, user)),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["groups"].as_array().unwrap().clone()
}

fn usage(groups: &[Value], key: &str) -> Value {
    groups
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key} in {groups:?}"))["usage"]
        .clone()
}

/// What [`export_two_intervals`] sent, summed: the usage alice's group must show.
fn assert_the_two_intervals_were_counted_once(groups: &[Value]) {
    let alice = usage(groups, "alice");
    assert_eq!(alice["input_tokens"], 240, "{alice}");
    assert_eq!(alice["output_tokens"], 30);
    assert_eq!(alice["cost_usd"], 0.75);
    assert_eq!(alice["lines_added"], 7);
}

async fn exported(given: &TestApp, org: &'static str, how: Exporter) -> Vec<Value> {
    let addr = given.serve_http().await;
    tokio::task::spawn_blocking(move || export_two_intervals(addr, org, "alice", how))
        .await
        .unwrap();
    usage_of(addr, org, "alice", "user").await
}

#[tokio::test]
async fn a_real_exporter_over_http_protobuf_with_delta_temporality_fills_the_summary() {
    // GIVEN the stack, and a developer's exporter as Claude Code configures it by default
    let given = TestApp::spawn().await;
    let how = Exporter {
        protocol: Protocol::HttpBinary,
        temporality: Temporality::Delta,
        gzip: false,
    };
    // WHEN it exports two intervals
    let groups = exported(&given, "otlp-delta", how).await;
    // THEN the user's usage is the sum of what was sent
    assert_the_two_intervals_were_counted_once(&groups);
}

#[tokio::test]
async fn a_cumulative_exporter_over_http_json_with_gzip_counts_each_token_once() {
    // GIVEN an exporter that sends running totals (the second export repeats the first's)
    let given = TestApp::spawn().await;
    let how = Exporter {
        protocol: Protocol::HttpJson,
        temporality: Temporality::Cumulative,
        gzip: true,
    };
    let groups = exported(&given, "otlp-cumulative", how).await;
    // THEN the totals are turned into deltas: the same figures as the delta exporter's
    assert_the_two_intervals_were_counted_once(&groups);
}

#[tokio::test]
async fn a_restarted_cumulative_series_counts_its_new_total_from_zero() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let how = Exporter {
        protocol: Protocol::HttpBinary,
        temporality: Temporality::Cumulative,
        gzip: false,
    };
    // GIVEN two runs of the same exporter (a restart: a new start time, totals from zero)
    tokio::task::spawn_blocking(move || {
        export_two_intervals(addr, "otlp-restart", "alice", how);
        export_two_intervals(addr, "otlp-restart", "alice", how);
    })
    .await
    .unwrap();
    // THEN both runs are counted, each once
    let alice = usage(&usage_of(addr, "otlp-restart", "alice", "user").await, "alice");
    assert_eq!(alice["input_tokens"], 480, "{alice}");
}

#[tokio::test]
async fn log_events_from_a_real_exporter_count_requests_and_errors_by_model() {
    let logs = integration_tests::logs();
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    // GIVEN a developer's logs exporter sending Claude Code's events
    tokio::task::spawn_blocking(move || {
        let exporter = LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://{addr}/otlp/v1/logs"))
            .with_headers(headers("otlp-logs", "bob"))
            .build()
            .expect("exporter");
        let provider = SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        let logger = provider.logger("com.anthropic.claude_code.events");
        for (sequence, name) in [
            "api_request",
            "api_request",
            "api_error",
            "tool_result",
            "plugin_loaded",
        ]
        .into_iter()
        .enumerate()
        {
            let mut record = logger.create_log_record();
            record.set_body(AnyValue::from(format!("claude_code.{name}")));
            record.set_timestamp(std::time::SystemTime::now());
            record.add_attribute("event.name", name);
            record.add_attribute("event.sequence", sequence as i64);
            record.add_attribute("session.id", SESSION);
            record.add_attribute("model", MODEL);
            record.add_attribute("input_tokens", 120);
            record.add_attribute("duration_ms", "37");
            logger.emit(record);
        }
        provider.force_flush().expect("export");
        provider.shutdown().expect("shutdown");
    })
    .await
    .unwrap();
    // THEN requests and errors are counted per model; the unknown event is dropped
    let by_model = usage_of(addr, "otlp-logs", "bob", "model").await;
    let model = usage(&by_model, MODEL);
    assert_eq!(
        (model["api_requests"].clone(), model["api_errors"].clone()),
        (2.into(), 1.into()),
        "{model}"
    );
    assert_eq!(given.count("otlp-logs", "otlp_events").await, 4);
    // AND the export's log line, also its CloudWatch metrics, counts the unknown event
    let written = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = written
        .lines()
        .find(|l| l.contains("\"OtlpItemsUnknown\"") && l.contains("\"org\":\"otlp-logs\""))
        .expect("an otlp export line");
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (line["OtlpItemsStored"].as_f64(), line["OtlpItemsUnknown"].as_f64()),
        (Some(4.0), Some(1.0)),
        "{line}"
    );
}

/// A raw OTLP/HTTP post of `body` (bytes); the status and the response body.
async fn post_bytes(
    addr: SocketAddr,
    path: &str,
    token: &str,
    content_type: &str,
    gzip: bool,
    body: &[u8],
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let encoding = if gzip { "Content-Encoding: gzip\r\n" } else { "" };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\n\
         {encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&raw[9..12]).parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

const RECORDED_METRICS: &[u8] = include_bytes!("../../../events/otlp/metrics.pb");
const RECORDED_LOGS: &[u8] = include_bytes!("../../../events/otlp/logs.pb");
const RECORDED_LOGS_JSON: &str = include_str!("../../../events/otlp/logs.json");
const RECORDED_METRICS_JSON: &str = include_str!("../../../events/otlp/metrics.json");

#[tokio::test]
async fn claude_codes_recorded_exports_sent_twice_are_counted_once_on_the_hooks_session() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let token = token("otlp-recorded", "dev");
    // GIVEN Claude Code's recorded exports, each sent twice (an exporter's retry), as protobuf
    // and as JSON
    for _ in 0..2 {
        for (path, body, content_type) in [
            ("/otlp/v1/metrics", RECORDED_METRICS_JSON.as_bytes(), "application/json"),
            ("/otlp/v1/logs", RECORDED_LOGS_JSON.as_bytes(), "application/json"),
        ] {
            let (status, answer) = post_bytes(addr, path, &token, content_type, false, body).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        }
    }
    for (path, body) in [("/otlp/v1/metrics", RECORDED_METRICS), ("/otlp/v1/logs", RECORDED_LOGS)] {
        let (status, _) = post_bytes(addr, path, &token, "application/x-protobuf", false, body).await;
        assert_eq!(status, 200);
    }
    // AND a hook event of the JSON recording's session
    let hook = serde_json::json!({"session_id": "628c2061-0941-40c6-896f-63efa727f5fc", "hook_event_name": "Stop"});
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/v1/hooks/claude-code",
        Some(&token),
        "application/json",
        &hook.to_string(),
    )
    .await;
    assert_eq!(status, 204);
    // THEN the recorded figures are counted once per recording (two sessions: JSON and protobuf)
    // (recorded on 2026-12-02 around 05:00 UTC)
    let span = "group_by=user&since=2026-12-01T00:00:00Z&until=2026-12-03T00:00:00Z";
    let dev = usage(&usage_over(addr, "otlp-recorded", "dev", span).await, "dev");
    assert_eq!(dev["input_tokens"], 2 * 240, "{dev}");
    assert_eq!(dev["api_requests"], 2 * 2);
    // AND the hook landed on the session the OTLP data started: one session per Claude session
    assert_eq!(given.count("otlp-recorded", "user_sessions").await, 2);
    assert_eq!(given.count("otlp-recorded", "hook_events").await, 1);
}

#[tokio::test]
async fn over_http_a_bomb_a_wrong_token_and_garbage_are_refused_with_otlp_statuses() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let token = token("otlp-refusals", "dev");
    // A gzip bomb: 4 MiB of zeros in about 4 KiB (over 200:1, under the 1 MiB body limit).
    let bomb = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 4 << 20]).unwrap();
        encoder.finish().unwrap()
    };
    let (status, _) = post_bytes(addr, "/otlp/v1/metrics", &token, "application/x-protobuf", true, &bomb).await;
    assert_eq!(status, 400);
    let (status, _) = post_bytes(
        addr,
        "/otlp/v1/metrics",
        "not-a-token",
        "application/x-protobuf",
        false,
        RECORDED_METRICS,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = post_bytes(
        addr,
        "/otlp/v1/logs",
        &token,
        "application/json",
        false,
        b"{\"resourceLogs\": 7}",
    )
    .await;
    assert_eq!(status, 400);
    let status_body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        status_body["message"].as_str().unwrap().starts_with("body: "),
        "{status_body}"
    );
}

#[tokio::test]
async fn an_exporter_told_to_wait_by_a_429_retries_after_retry_after_and_keeps_every_point_once() {
    let logs = integration_tests::logs();
    // GIVEN an organization allowed one request every two seconds
    let given = TestApp::spawn_with(&[("RATE_LIMIT_MAX_REQUESTS", "1"), ("RATE_LIMIT_WINDOW_MS", "2000")]).await;
    let addr = given.serve_http().await;
    let how = Exporter {
        protocol: Protocol::HttpBinary,
        temporality: Temporality::Delta,
        gzip: false,
    };
    // WHEN the real exporter sends two exports back to back (the second is refused with 429)
    tokio::task::spawn_blocking(move || export_two_intervals(addr, "otlp-throttled", "alice", how))
        .await
        .unwrap();
    // THEN it was refused at least once, waited as Retry-After said, and nothing was lost or doubled
    let written = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let refused = written
        .lines()
        .filter(|l| l.contains("\"org\":\"otlp-throttled\"") && l.contains("\"RateLimited\":1"))
        .count();
    assert!(refused >= 1, "the second export was not rate limited");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_the_two_intervals_were_counted_once(&usage_of(addr, "otlp-throttled", "alice", "user").await);
}
