//! Structured JSON logs, one object per line, as CloudWatch Logs expects them.
//! Nothing here ever logs a request's headers or body, so tokens never reach the logs.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

/// Where log lines go: stdout (Lambda's log pipeline), or a buffer a test installed.
static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Sends every log line of this process (request records, metrics, tracing events) to `buffer`
/// instead of stdout; for tests that read the logs. The first call wins.
pub fn capture_into(buffer: Arc<Mutex<Vec<u8>>>) {
    let _ = CAPTURE.set(buffer);
}

/// Writes whole lines to the log destination.
#[derive(Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match CAPTURE.get() {
            Some(buffer) => buffer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes),
            None => std::io::stdout().lock().write_all(bytes)?,
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Installs the JSON log subscriber; `RUST_LOG` sets the level (default `info`).
/// Calling it twice is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .try_init();
}

/// Logs why a container cannot start; the error is then returned from `main`.
pub fn startup_failed(err: &crate::config::ConfigError) {
    tracing::error!(
        variable = err.variable,
        problem = err.problem,
        "invalid configuration; not starting"
    );
}

/// The CloudWatch namespace of the service's own metrics.
pub const METRICS_NAMESPACE: &str = "MetricsCollection";

/// The stage (`STAGE`), read once; a dimension of every metric.
fn stage() -> &'static str {
    static STAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAGE.get_or_init(|| std::env::var("STAGE").unwrap_or_else(|_| "local".into()))
}

/// One CloudWatch Embedded Metric Format document: CloudWatch Logs turns the line into metrics,
/// so publishing costs no API call on the request path.
fn emf(dimension_sets: &[&[&str]], metrics: &[(&str, &str, f64)], properties: serde_json::Value) -> serde_json::Value {
    let mut document = serde_json::json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": metrics.iter().map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }]
        },
        "Stage": stage(),
    });
    if let (Some(target), serde_json::Value::Object(extra)) = (document.as_object_mut(), properties) {
        target.extend(extra);
        for (name, _, value) in metrics {
            target.insert((*name).to_owned(), serde_json::json!(value));
        }
    }
    document
}

/// Writes one EMF line on stdout (where Lambda sends it to CloudWatch Logs).
fn publish(document: &serde_json::Value) {
    let _ = LogWriter.write_all(format!("{document}\n").as_bytes());
}

/// The metrics directive of a request record: `Latency`, `Requests`, `ClientErrors`,
/// `ServerErrors`, `RateLimited`, by `Stage` and `Route` and by `Stage` alone; then, when the
/// record has them, `DatabaseLatency` (ms of PostgreSQL work in the request) and `PeakMemory`
/// (the process's peak resident memory so far, MB). EMF wants a value for every metric named,
/// so a request without database work names no `DatabaseLatency` (its average stays the
/// average of requests that used the database).
const REQUEST_METRICS: &str = r#"[{"Namespace":"MetricsCollection","Dimensions":[["Stage","Route"],["Stage"]],"Metrics":[{"Name":"Latency","Unit":"Milliseconds"},{"Name":"Requests","Unit":"Count"},{"Name":"ClientErrors","Unit":"Count"},{"Name":"ServerErrors","Unit":"Count"},{"Name":"RateLimited","Unit":"Count"}"#;
const DATABASE_METRIC: &str = r#",{"Name":"DatabaseLatency","Unit":"Milliseconds"}"#;
const MEMORY_METRIC: &str = r#",{"Name":"PeakMemory","Unit":"Megabytes"}"#;

/// The directive for a record with (or without) a database time and a memory figure.
fn request_directive(database: bool, memory: bool) -> &'static serde_json::value::RawValue {
    static DIRECTIVES: std::sync::OnceLock<Vec<Box<serde_json::value::RawValue>>> = std::sync::OnceLock::new();
    let all = DIRECTIVES.get_or_init(|| {
        (0..4)
            .map(|i| {
                let mut text = REQUEST_METRICS.to_owned();
                if i & 1 == 1 {
                    text.push_str(DATABASE_METRIC);
                }
                if i & 2 == 2 {
                    text.push_str(MEMORY_METRIC);
                }
                text.push_str("]}]");
                serde_json::value::RawValue::from_string(text).expect("constant JSON")
            })
            .collect()
    });
    &all[usize::from(database) | usize::from(memory) << 1]
}

tokio::task_local! {
    /// Milliseconds of PostgreSQL work of the request running in this task.
    static DATABASE_TIME: std::cell::Cell<Option<f64>>;
}

/// Runs `work` (one request) with a clock of its PostgreSQL time: every database call inside it
/// ([`add_database_time`]) adds to the clock. `None` when it made none.
pub async fn timing_database<T>(work: impl Future<Output = T>) -> (T, Option<f64>) {
    DATABASE_TIME
        .scope(std::cell::Cell::new(None), async move {
            let output = work.await;
            (output, DATABASE_TIME.with(std::cell::Cell::get))
        })
        .await
}

/// Adds `ms` of database work to the running request's clock (nothing outside a request).
pub fn add_database_time(ms: f64) {
    let _ = DATABASE_TIME.try_with(|clock| clock.set(Some(clock.get().unwrap_or(0.0) + ms)));
}

/// The process's peak resident memory so far, in MB (`getrusage`: the same figure as VmHWM).
pub fn peak_memory_mb() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            // Linux reports kilobytes.
            return Some(((usage.ru_maxrss as f64) / 1024.0 * 10.0).round() / 10.0);
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[derive(serde::Serialize)]
struct EmfHeader {
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "CloudWatchMetrics")]
    metrics: &'static serde_json::value::RawValue,
}

/// One API request, written as ONE line that is both its structured log record and, through the
/// embedded metric format, its CloudWatch metrics (one serialization, one write, no API call).
#[derive(serde::Serialize)]
pub struct RequestRecord<'a> {
    #[serde(rename = "_aws")]
    aws: EmfHeader,
    timestamp: String,
    level: &'static str,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "Stage")]
    stage: &'static str,
    #[serde(rename = "Route")]
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    status: u16,
    #[serde(rename = "Latency")]
    latency_ms: f64,
    #[serde(rename = "Requests")]
    requests: u8,
    #[serde(rename = "ClientErrors")]
    client_errors: u8,
    #[serde(rename = "ServerErrors")]
    server_errors: u8,
    #[serde(rename = "RateLimited")]
    rate_limited: u8,
    #[serde(rename = "DatabaseLatency", skip_serializing_if = "Option::is_none")]
    database_ms: Option<f64>,
    #[serde(rename = "PeakMemory", skip_serializing_if = "Option::is_none")]
    peak_memory_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What one request did, for [`request_record`].
pub struct RequestOutcome<'a> {
    pub request_id: Option<&'a str>,
    pub route: &'a str,
    pub org: Option<&'a str>,
    pub user: Option<&'a str>,
    pub status: u16,
    pub latency_ms: f64,
    /// Milliseconds of PostgreSQL work, when the request did any ([`timing_database`]).
    pub database_ms: Option<f64>,
    /// Log detail (internal for 5xx: it goes to the logs, never to the client).
    pub error: Option<String>,
}

pub fn request_record<'a>(outcome: RequestOutcome<'a>) -> RequestRecord<'a> {
    let peak_memory_mb = peak_memory_mb();
    let metrics = request_directive(outcome.database_ms.is_some(), peak_memory_mb.is_some());
    let now = chrono::Utc::now();
    let status = outcome.status;
    RequestRecord {
        aws: EmfHeader {
            timestamp: now.timestamp_millis(),
            metrics,
        },
        timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        level: match status {
            500.. => "ERROR",
            _ => "INFO",
        },
        message: match status {
            500.. => "request failed",
            400.. => "request refused",
            _ => "request served",
        },
        request_id: outcome.request_id,
        stage: stage(),
        route: outcome.route,
        org: outcome.org,
        user: outcome.user,
        status,
        latency_ms: outcome.latency_ms,
        requests: 1,
        client_errors: u8::from((400..500).contains(&status)),
        server_errors: u8::from(status >= 500),
        rate_limited: u8::from(status == 429),
        database_ms: outcome.database_ms.map(|ms| (ms * 1000.0).round() / 1000.0),
        peak_memory_mb,
        error: outcome.error,
    }
}

/// Writes the request's one line on stdout (where Lambda sends it to CloudWatch Logs).
pub fn log_request(outcome: RequestOutcome<'_>) {
    let mut line = Vec::with_capacity(512);
    if serde_json::to_writer(&mut line, &request_record(outcome)).is_ok() {
        line.push(b'\n');
        let _ = LogWriter.write_all(&line);
    }
}

/// The EMF document of one batch-worker invocation.
pub fn worker_metrics_document(
    written: u64,
    duplicates: u64,
    poison: u64,
    failed: u64,
    latency_ms: f64,
) -> serde_json::Value {
    emf(
        &[&["Stage", "Function"]],
        &[
            ("MetricsWritten", "Count", written as f64),
            ("DuplicateMetrics", "Count", duplicates as f64),
            ("PoisonMessages", "Count", poison as f64),
            ("FailedMessages", "Count", failed as f64),
            ("WorkerLatency", "Milliseconds", latency_ms),
        ],
        serde_json::json!({ "Function": "batch-worker" }),
    )
}

pub fn worker_metrics(written: u64, duplicates: u64, poison: u64, failed: u64, latency_ms: f64) {
    publish(&worker_metrics_document(
        written, duplicates, poison, failed, latency_ms,
    ));
}

/// The EMF document of one OTLP export: items received, stored (new), refused (reported in
/// `partialSuccess`) and unknown (metrics or events this version does not keep, dropped), by
/// `Stage` and `Signal` (`metrics` or `logs`).
pub fn otlp_export_document(
    signal: &str,
    org: &str,
    received: u64,
    stored: u64,
    refused: u64,
    unknown: u64,
) -> serde_json::Value {
    emf(
        &[&["Stage", "Signal"]],
        &[
            ("OtlpItemsReceived", "Count", received as f64),
            ("OtlpItemsStored", "Count", stored as f64),
            ("OtlpItemsRefused", "Count", refused as f64),
            ("OtlpItemsUnknown", "Count", unknown as f64),
        ],
        serde_json::json!({ "Signal": signal, "org": org, "message": "otlp export" }),
    )
}

pub fn otlp_export(signal: &str, org: &str, received: u64, stored: u64, refused: u64, unknown: u64) {
    publish(&otlp_export_document(signal, org, received, stored, refused, unknown));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_export_counts_what_was_stored_refused_and_unknown() {
        let doc = otlp_export_document("logs", "acme", 10, 7, 1, 2);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"][0], serde_json::json!(["Stage", "Signal"]));
        assert_eq!(
            (doc["Signal"].as_str(), doc["OtlpItemsUnknown"].as_f64()),
            (Some("logs"), Some(2.0))
        );
        assert_eq!(
            (doc["OtlpItemsStored"].as_f64(), doc["OtlpItemsRefused"].as_f64()),
            (Some(7.0), Some(1.0))
        );
    }

    #[test]
    fn a_request_record_is_a_log_line_with_its_metrics_embedded() {
        let record = request_record(RequestOutcome {
            request_id: Some("req-1"),
            route: "POST /api/v1/metrics/batch",
            org: Some("acme"),
            user: None,
            status: 503,
            latency_ms: 12.5,
            database_ms: Some(3.25),
            error: Some("database unavailable: connection refused".into()),
        });
        let doc = serde_json::to_value(&record).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], METRICS_NAMESPACE);
        assert_eq!(directive["Dimensions"][0], serde_json::json!(["Stage", "Route"]));
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} has a value");
        }
        for dimension in ["Stage", "Route"] {
            assert!(doc[dimension].is_string(), "{dimension} is set");
        }
        assert!(doc["_aws"]["Timestamp"].is_i64());
        assert_eq!(
            (doc["ServerErrors"].as_u64(), doc["ClientErrors"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(doc["level"], "ERROR");
        assert_eq!(doc["request_id"], "req-1");
        assert!(doc.get("user").is_none());
        assert_eq!(doc["DatabaseLatency"], 3.25);
        assert!(doc["PeakMemory"].as_f64().is_some_and(|mb| mb > 0.0));
    }

    #[test]
    fn a_request_without_database_work_names_no_database_metric() {
        let record = request_record(RequestOutcome {
            request_id: None,
            route: "POST /api/v1/metrics/batch",
            org: None,
            user: None,
            status: 401,
            latency_ms: 0.5,
            database_ms: None,
            error: None,
        });
        let doc = serde_json::to_value(&record).unwrap();
        let names: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"DatabaseLatency") && doc.get("DatabaseLatency").is_none());
        assert!(names.contains(&"PeakMemory"));
    }

    #[tokio::test]
    async fn database_time_adds_up_within_a_request_and_nowhere_else() {
        add_database_time(100.0);
        let ((), none) = timing_database(async {}).await;
        assert_eq!(none, None);
        let ((), some) = timing_database(async {
            add_database_time(1.5);
            tokio::task::yield_now().await;
            add_database_time(2.0);
        })
        .await;
        assert_eq!(some, Some(3.5));
    }

    #[test]
    fn worker_documents_count_outcomes() {
        let doc = worker_metrics_document(20, 3, 1, 2, 40.0);
        assert_eq!(doc["MetricsWritten"], 20.0);
        assert_eq!(doc["Function"], "batch-worker");
    }
}
