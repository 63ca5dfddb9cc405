//! Structured JSON logs, one object per line, as CloudWatch Logs expects them.
//! Nothing here ever logs a request's headers or body, so tokens never reach the logs.

use tracing_subscriber::EnvFilter;

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
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{document}");
}

/// The EMF document of one API request: latency and outcome, per route and for the whole API.
pub fn request_metrics_document(route: &str, status: u16, latency_ms: f64) -> serde_json::Value {
    let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
    emf(
        &[&["Stage", "Route"], &["Stage"]],
        &[
            ("Latency", "Milliseconds", latency_ms),
            ("Requests", "Count", 1.0),
            ("ClientErrors", "Count", flag((400..500).contains(&status))),
            ("ServerErrors", "Count", flag(status >= 500)),
            ("RateLimited", "Count", flag(status == 429)),
        ],
        serde_json::json!({ "Route": route, "status": status }),
    )
}

pub fn request_metrics(route: &str, status: u16, latency_ms: f64) {
    publish(&request_metrics_document(route, status, latency_ms));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_documents_follow_the_embedded_metric_format() {
        let doc = request_metrics_document("POST /api/v1/metrics/batch", 503, 12.5);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], METRICS_NAMESPACE);
        assert_eq!(directive["Dimensions"][0], serde_json::json!(["Stage", "Route"]));
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} has a value");
        }
        assert!(doc["_aws"]["Timestamp"].is_i64());
        assert_eq!(doc["Route"], "POST /api/v1/metrics/batch");
        assert_eq!(
            (doc["ServerErrors"].as_f64(), doc["ClientErrors"].as_f64()),
            (Some(1.0), Some(0.0))
        );
        assert!(doc["Stage"].is_string());
    }

    #[test]
    fn worker_documents_count_outcomes() {
        let doc = worker_metrics_document(20, 3, 1, 2, 40.0);
        assert_eq!(doc["MetricsWritten"], 20.0);
        assert_eq!(doc["Function"], "batch-worker");
    }
}
