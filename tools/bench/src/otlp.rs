//! Claude Code's OpenTelemetry export over HTTP through the local front: one developer's 60 s of
//! metrics (`POST /otlp/v1/metrics`) and 100 log events (`POST /otlp/v1/logs`), in protobuf as
//! Claude Code sends them, plain and gzip-compressed, interleaved round by round with the
//! single-metric route (`POST /api/v1/metrics/command-execution`) on the same connection and
//! stack. The figures are each export's latency and its cost per data point (or event) as a
//! ratio to the single-metric request's latency; nothing is asserted about timings.
//!
//! The exports are built from the recorded Claude Code 2.1.328 exports (`events/otlp/*.pb`):
//! their resource, scope and attributes, with time stamps of the last minute and points, event
//! sequences and prompt ids new in every export, so that every export is stored in full (the
//! answers are checked to refuse nothing, and the stored rows are counted at the end).
//!
//! May use `stats`, `stack` and `http` (for the front and the single-metric request), and the
//! OTLP message types, prost and flate2 to build the bodies.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, Metric, NumberDataPoint, Sum};
use prost::Message;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::http::{Connection, WARM_UP, post_command, serve_front};
use crate::stack::{Sizes, Stack, caller, connect_postgres, token};
use crate::stats::{Stats, ms, round3};

const RECORDED_METRICS: &[u8] = include_bytes!("../../../events/otlp/metrics.pb");
const RECORDED_LOGS: &[u8] = include_bytes!("../../../events/otlp/logs.pb");

const ORG: &str = "bench-otlp";
const USER: &str = "bench-dev";
/// The window one metrics export covers (Claude Code's default export interval).
const INTERVAL_NS: u64 = 60_000_000_000;
/// Log events per logs export.
const EVENTS_PER_EXPORT: usize = 100;
/// The two models of the developer's minute.
const MODELS: [&str; 2] = ["claude-opus-5-5", "claude-haiku-4-5"];
/// Token counts per type (`input`, `output`, `cacheRead`, `cacheCreation`) and cost in USD, per model.
const TOKENS: [[f64; 4]; 2] = [[3_412.0, 1_875.0, 91_240.0, 6_530.0], [1_210.0, 164.0, 12_800.0, 0.0]];
const COSTS: [f64; 2] = [0.3471, 0.0052];

/// One kind of export, measured in its own column.
#[derive(Clone, Copy)]
enum Kind {
    Metrics { gzip: bool },
    Logs { gzip: bool },
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Metrics { gzip: false },
        Kind::Metrics { gzip: true },
        Kind::Logs { gzip: false },
        Kind::Logs { gzip: true },
    ];

    /// Its name in the results file.
    fn key(self) -> &'static str {
        match self {
            Kind::Metrics { gzip: false } => "metrics_export",
            Kind::Metrics { gzip: true } => "metrics_export_gzip",
            Kind::Logs { gzip: false } => "logs_export",
            Kind::Logs { gzip: true } => "logs_export_gzip",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Metrics { .. } => "/otlp/v1/metrics",
            Kind::Logs { .. } => "/otlp/v1/logs",
        }
    }

    fn gzip(self) -> bool {
        matches!(self, Kind::Metrics { gzip: true } | Kind::Logs { gzip: true })
    }
}

/// What the samples of one kind of export are, and the last body's sizes.
#[derive(Default)]
struct Column {
    samples: Vec<f64>,
    items: usize,
    body_bytes: usize,
    uncompressed_bytes: usize,
}

pub async fn measure(stack: &Stack, sizes: &Sizes, results: &mut Map<String, Value>) {
    let (addr, mut sender) = serve_front(stack, false).await;
    let token = token(ORG, USER);
    let mut exports = Exports::recorded();
    // A round is one request of each kind; a quarter of the HTTP section's requests of each.
    let (rounds, warm_up) = ((sizes.http / 4).max(20), WARM_UP / 4);
    let mut single = Vec::with_capacity(rounds);
    let mut columns: Vec<Column> = Kind::ALL.iter().map(|_| Column::default()).collect();
    let mut stored = (0, 0);
    for round in 0..rounds + warm_up {
        let kept = round >= warm_up;
        let elapsed = post_command(&mut sender, addr, &token).await;
        if kept {
            single.push(ms(elapsed));
        }
        for (kind, column) in Kind::ALL.into_iter().zip(&mut columns) {
            // Built and compressed before the clock starts, as the exporter does.
            let (plain, items) = exports.next(kind);
            let uncompressed_bytes = plain.len();
            let body = if kind.gzip() { gzip(&plain) } else { plain };
            let body_bytes = body.len();
            let elapsed = post_export(&mut sender, addr, &token, kind, body).await;
            match kind {
                Kind::Metrics { .. } => stored.0 += items,
                Kind::Logs { .. } => stored.1 += items,
            }
            if kept {
                column.samples.push(ms(elapsed));
                (column.items, column.body_bytes, column.uncompressed_bytes) = (items, body_bytes, uncompressed_bytes);
            }
        }
    }
    assert_eq!(count_stored(stack).await, stored, "every point and event is stored");
    let single = Stats::of(&single);
    let mut out = Map::new();
    out.insert("rounds".into(), json!(rounds));
    out.insert("single_metric_over_http".into(), single.json(rounds));
    eprintln!(
        "\n{:<42} {:>9} {:>9} {:>9}  {:>16} {:>16}",
        "OTLP over HTTP (ms)", "p50", "p95", "p99", "item/single p50", "item/single p95"
    );
    eprintln!(
        "{:<42} {:>9.3} {:>9.3} {:>9.3}",
        "single_metric_over_http", single.p50, single.p95, single.p99
    );
    for (kind, column) in Kind::ALL.into_iter().zip(columns) {
        let stats = Stats::of(&column.samples);
        let per_item = |latency: f64| latency / column.items as f64;
        let (ratio50, ratio95) = (per_item(stats.p50) / single.p50, per_item(stats.p95) / single.p95);
        let mut figures = stats.json(rounds);
        let fields = figures.as_object_mut().expect("object");
        fields.insert("items".into(), json!(column.items));
        fields.insert("body_bytes".into(), json!(column.body_bytes));
        fields.insert("uncompressed_bytes".into(), json!(column.uncompressed_bytes));
        fields.insert("per_item_p50_ms".into(), json!(round3(per_item(stats.p50))));
        fields.insert("per_item_p95_ms".into(), json!(round3(per_item(stats.p95))));
        fields.insert("per_item_p50_over_single_metric_p50".into(), json!(round3(ratio50)));
        fields.insert("per_item_p95_over_single_metric_p95".into(), json!(round3(ratio95)));
        fields.insert(
            "p50_over_single_metric_p50".into(),
            json!(round3(stats.p50 / single.p50)),
        );
        fields.insert(
            "p95_over_single_metric_p95".into(),
            json!(round3(stats.p95 / single.p95)),
        );
        eprintln!(
            "{:<42} {:>9.3} {:>9.3} {:>9.3}  {:>16.3} {:>16.3}",
            format!("{} ({} items, {} B)", kind.key(), column.items, column.body_bytes),
            stats.p50,
            stats.p95,
            stats.p99,
            ratio50,
            ratio95
        );
        out.insert(kind.key().into(), figures);
    }
    results.insert("otlp".into(), Value::Object(out));
}

/// One export over the kept-alive connection; its wall time. The answer must be a 200 that
/// refuses nothing.
async fn post_export(sender: &mut Connection, addr: SocketAddr, token: &str, kind: Kind, body: Vec<u8>) -> Duration {
    let mut req = hyper::Request::post(kind.path())
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-protobuf");
    if kind.gzip() {
        req = req.header("content-encoding", "gzip");
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    sender.ready().await.expect("connection ready");
    let started = Instant::now();
    let response = sender.send_request(req).await.expect("send");
    let status = response.status();
    let answer = response.into_body().collect().await.expect("body").to_bytes();
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{}: {}", kind.path(), String::from_utf8_lossy(&answer));
    let refused = match kind {
        Kind::Metrics { .. } => ExportMetricsServiceResponse::decode(answer).map(|a| a.partial_success.is_some()),
        Kind::Logs { .. } => ExportLogsServiceResponse::decode(answer).map(|a| a.partial_success.is_some()),
    };
    assert!(!refused.expect("an OTLP answer"), "{}: nothing refused", kind.path());
    elapsed
}

/// The points and events stored for the benchmark's developer.
async fn count_stored(stack: &Stack) -> (usize, usize) {
    let client = connect_postgres(&stack.database_url).await;
    let schema = caller(ORG, USER).org.schema_name();
    let count = async |table: &str| {
        let row = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[])
            .await
            .expect("count");
        row.get::<_, i64>(0) as usize
    };
    (count("otlp_points").await, count("otlp_events").await)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Builds the exports, each new: its points at their own time, its events with their own
/// sequence numbers and prompt ids.
struct Exports {
    metrics: ExportMetricsServiceRequest,
    logs: ExportLogsServiceRequest,
    /// The last export's time: the next one is later, by a nanosecond at least.
    last_ns: u64,
    /// Exports built so far.
    count: i64,
}

impl Exports {
    fn recorded() -> Self {
        Exports {
            metrics: ExportMetricsServiceRequest::decode(RECORDED_METRICS).expect("recorded metrics"),
            logs: ExportLogsServiceRequest::decode(RECORDED_LOGS).expect("recorded logs"),
            last_ns: 0,
            count: 0,
        }
    }

    /// The next export of `kind` in protobuf, and how many points or events it carries.
    fn next(&mut self, kind: Kind) -> (Vec<u8>, usize) {
        let now = chrono::Utc::now().timestamp_nanos_opt().expect("now") as u64;
        self.last_ns = now.max(self.last_ns + 1);
        self.count += 1;
        match kind {
            Kind::Metrics { .. } => {
                let export = minute_of_metrics(&self.metrics, self.last_ns);
                let points = export.resource_metrics[0].scope_metrics[0]
                    .metrics
                    .iter()
                    .map(|m| match &m.data {
                        Some(Data::Sum(sum)) => sum.data_points.len(),
                        _ => 0,
                    })
                    .sum();
                (export.encode_to_vec(), points)
            }
            Kind::Logs { .. } => {
                let export = hundred_events(&self.logs, self.last_ns, self.count * EVENTS_PER_EXPORT as i64);
                (export.encode_to_vec(), EVENTS_PER_EXPORT)
            }
        }
    }
}

/// An attribute with a text value.
fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// `attrs` with `key` set to `value` (replaced where present, else added).
fn set(attrs: &mut Vec<KeyValue>, key: &str, value: any_value::Value) {
    let value = Some(AnyValue { value: Some(value) });
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => attrs.push(KeyValue {
            key: key.to_owned(),
            value,
            ..Default::default()
        }),
    }
}

/// 60 s of one developer's metrics ending at `time_ns`, as Claude Code exports them (delta sums):
/// tokens of the four types and the cost for each of two models, active time (user and CLI),
/// lines added and removed, and a session count; 15 points.
fn minute_of_metrics(recorded: &ExportMetricsServiceRequest, time_ns: u64) -> ExportMetricsServiceRequest {
    let mut export = recorded.clone();
    let scope = &mut export.resource_metrics[0].scope_metrics[0];
    let template = |name: &str| -> (Metric, Vec<KeyValue>) {
        let metric = scope
            .metrics
            .iter()
            .find(|m| m.name == name)
            .expect("recorded metric")
            .clone();
        let attrs = match &metric.data {
            Some(Data::Sum(sum)) => sum.data_points[0].attributes.clone(),
            _ => panic!("{name} is recorded as a sum"),
        };
        (metric, attrs)
    };
    // The attributes every point carries: the user's, the session's, the terminal's.
    let (_, session_attrs) = template("claude_code.active_time.total");
    let common: Vec<KeyValue> = session_attrs.into_iter().filter(|kv| kv.key != "type").collect();
    let point = |extra: &[(&str, &str)], value: f64| NumberDataPoint {
        attributes: common
            .iter()
            .cloned()
            .chain(extra.iter().map(|(k, v)| text(k, v)))
            .collect(),
        start_time_unix_nano: time_ns - INTERVAL_NS,
        time_unix_nano: time_ns,
        value: Some(Number::AsDouble(value)),
        ..Default::default()
    };
    let sum = |(metric, _): (Metric, Vec<KeyValue>), points: Vec<NumberDataPoint>| Metric {
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..metric
    };
    let per_model = |k: usize| [("model", MODELS[k]), ("query_source", "main"), ("effort", "medium")];
    let tokens = (0..MODELS.len())
        .flat_map(|k| {
            ["input", "output", "cacheRead", "cacheCreation"]
                .into_iter()
                .zip(TOKENS[k])
                .map(move |(kind, n)| (k, kind, n))
        })
        .map(|(k, kind, n)| {
            let [a, b, c] = per_model(k);
            point(&[a, b, c, ("type", kind)], n)
        })
        .collect();
    let costs = (0..MODELS.len()).map(|k| point(&per_model(k), COSTS[k])).collect();
    let lines = Metric {
        name: "claude_code.lines_of_code.count".into(),
        description:
            "Count of lines of code modified, with the 'type' attribute indicating whether lines were added or removed"
                .into(),
        unit: "count".into(),
        ..Default::default()
    };
    scope.metrics = vec![
        sum(
            template("claude_code.session.count"),
            vec![point(&[("start_type", "fresh")], 1.0)],
        ),
        sum(template("claude_code.cost.usage"), costs),
        sum(template("claude_code.token.usage"), tokens),
        sum(
            template("claude_code.active_time.total"),
            vec![point(&[("type", "user")], 21.4), point(&[("type", "cli")], 33.9)],
        ),
        sum(
            (lines, vec![]),
            vec![point(&[("type", "added")], 148.0), point(&[("type", "removed")], 37.0)],
        ),
    ];
    export
}

/// 100 of a developer's events over the minute ending at `time_ns`, numbered from `sequence`:
/// two prompts, each followed by 16 API requests with a tool decision and result each and a last
/// API request (2 user_prompt, 34 api_request, 32 tool_decision, 32 tool_result), every fourth
/// API request on the second model.
fn hundred_events(recorded: &ExportLogsServiceRequest, time_ns: u64, sequence: i64) -> ExportLogsServiceRequest {
    let mut export = recorded.clone();
    let scope = &mut export.resource_logs[0].scope_logs[0];
    let template = |name: &str| -> LogRecord {
        scope
            .log_records
            .iter()
            .find(|r| {
                r.attributes.iter().any(|kv| {
                    kv.key == "event.name"
                        && matches!(&kv.value, Some(AnyValue { value: Some(any_value::Value::StringValue(v)) }) if v == name)
                })
            })
            .unwrap_or_else(|| panic!("recorded {name}"))
            .clone()
    };
    let [prompt, decision, request, result] =
        ["user_prompt", "tool_decision", "api_request", "tool_result"].map(template);
    let mut names = Vec::with_capacity(EVENTS_PER_EXPORT);
    for _ in 0..2 {
        names.push(&prompt);
        for _ in 0..16 {
            names.extend([&request, &decision, &result]);
        }
        names.push(&request);
    }
    assert_eq!(names.len(), EVENTS_PER_EXPORT);
    let step = INTERVAL_NS / EVENTS_PER_EXPORT as u64;
    let mut prompt_id = String::new();
    let mut requests = 0;
    scope.log_records = names
        .into_iter()
        .enumerate()
        .map(|(j, template)| {
            let mut record = template.clone();
            let at = time_ns - INTERVAL_NS + (j as u64 + 1) * step;
            (record.time_unix_nano, record.observed_time_unix_nano) = (at, at);
            let stamp =
                chrono::DateTime::from_timestamp_nanos(at as i64).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            if std::ptr::eq(template, &prompt) {
                prompt_id = Uuid::new_v4().to_string();
            }
            if std::ptr::eq(template, &request) {
                requests += 1;
                let model = MODELS[usize::from(requests % 4 == 0)];
                set(
                    &mut record.attributes,
                    "model",
                    any_value::Value::StringValue(model.into()),
                );
            }
            set(
                &mut record.attributes,
                "event.timestamp",
                any_value::Value::StringValue(stamp),
            );
            set(
                &mut record.attributes,
                "event.sequence",
                any_value::Value::IntValue(sequence + j as i64),
            );
            set(
                &mut record.attributes,
                "prompt.id",
                any_value::Value::StringValue(prompt_id.clone()),
            );
            record
        })
        .collect();
    export
}
