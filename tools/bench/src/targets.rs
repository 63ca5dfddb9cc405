//! What the run is judged by and how it is reported: the targets (measured figure against a
//! limit), the table printed at the end, and the results file's document (machine, results,
//! targets).
//!
//! May use `stats` (for rounding) and `hostile` (which knows its section's worst figures), and
//! reads only the results the sections wrote; it measures nothing.

use serde_json::{Map, Value, json};

use crate::hostile;
use crate::stats::round3;

/// A figure of the run against its limit.
pub struct Target {
    pub measure: String,
    pub value: f64,
    pub limit: f64,
    pub lower_is_better: bool,
}

impl Target {
    fn new(measure: impl Into<String>, value: f64, limit: f64, lower_is_better: bool) -> Self {
        Target {
            measure: measure.into(),
            value,
            limit,
            lower_is_better,
        }
    }

    fn met(&self) -> bool {
        if self.lower_is_better {
            self.value <= self.limit
        } else {
            self.value >= self.limit
        }
    }

    fn comparison(&self) -> &'static str {
        if self.lower_is_better { "<=" } else { ">=" }
    }
}

/// The keys of the latency table, in the order printed.
const LATENCIES: [&str; 17] = [
    "raw_postgres_insert",
    "raw_dynamodb_conditional_update",
    "raw_dynamodb_update_direct",
    "handler_in_process",
    "handler_over_http",
    "handler_over_http_live_off",
    "handler_over_http_live_on",
    "live_update_after_response",
    "handler_over_http_jwt",
    "handler_over_http_api_key",
    "handler_cpu",
    "raw_postgres_insert_cpu",
    "raw_dynamodb_update_cpu",
    "raw_dynamodb_update_direct_cpu",
    "raw_postgres_20_row_insert",
    "worker_batch_of_20",
    "worker_batch_of_20_cpu",
];

/// The targets of the benchmark, for the sections that ran (a missing figure is NaN).
pub fn targets(results: &Map<String, Value>) -> Vec<Target> {
    let all = Value::Object(results.clone());
    let get = |path: &[&str]| path.iter().fold(&all, |v, key| &v[*key]).as_f64().unwrap_or(f64::NAN);
    let mut list = vec![
        Target::new(
            "single-metric p95 / (raw PG p95 + raw DynamoDB p95)",
            get(&["ratios", "handler_p95_over_raw_p95_sum"]),
            1.25,
            true,
        ),
        Target::new(
            "own CPU per request p95 (ms)",
            get(&["handler_cpu", "p95_ms"]),
            0.2,
            true,
        ),
        Target::new(
            "batch of 20 p50 / raw 20-row insert p50",
            get(&["ratios", "batch20_p50_over_raw20_p50"]),
            2.0,
            true,
        ),
        Target::new(
            "sustained worker ingest (metrics/s)",
            get(&["worker_sustained_ingest", "metrics_per_second"]),
            50_000.0,
            false,
        ),
        // Both budgets admit from leases: one conditional update per lease, not per request.
        Target::new(
            "DynamoDB calls per admitted request (two budgets, leases)",
            get(&["dynamodb_round_trips_per_admitted_request"]),
            0.1,
            true,
        ),
        Target::new(
            "API key table reads per keyed request (cached key)",
            get(&["api_key_table_reads_per_request"]),
            0.01,
            true,
        ),
        Target::new(
            "single-metric p50 over HTTP, API key / JWT",
            get(&["ratios", "http_p50_api_key_over_jwt"]),
            1.1,
            true,
        ),
        Target::new(
            "summary p95 over 1M rows, 30 days (ms; spec: 8.7 for 10K)",
            get(&["summary_over_raw_rows", "summary_handler_ms", "p95_ms"]),
            8.7,
            true,
        ),
        Target::new(
            "per-user query on the aggregates p95, 1M rows (ms; spec: 8.7 for 10K)",
            get(&["summary_over_raw_rows", "per_user_query_on_aggregates_ms", "p95_ms"]),
            8.7,
            true,
        ),
    ];
    if results.contains_key("team_load") {
        list.push(Target::new(
            "team load: developers' hook events lost",
            get(&["team_load", "team_events_lost"]),
            0.0,
            true,
        ));
        list.push(Target::new(
            "team load: runaway admitted beyond its own budget",
            get(&["team_load", "runaway_admitted_over_budget"]),
            0.0,
            true,
        ));
    }
    if results.contains_key("rate_limit_leases") {
        list.push(Target::new(
            "leases: DynamoDB calls per admitted request, 50/s from one container",
            get(&["rate_limit_leases", "steady_50_per_s", "calls_per_admitted_request"]),
            0.1,
            true,
        ));
        list.push(Target::new(
            "leases: admitted beyond the budget, 4 containers x 64 clients",
            get(&["rate_limit_leases", "contention_over_budget", "admitted_over_budget"]),
            0.0,
            true,
        ));
    }
    if let Some(hostile) = results.get("hostile_input") {
        list.extend(hostile_targets(hostile));
    }
    if let Some(Value::Object(functions)) = results.get("functions") {
        for (name, figures) in functions {
            list.extend(function_targets(name, figures));
        }
    }
    list
}

/// The hostile-input section's targets, as that section states them.
fn hostile_targets(hostile: &Value) -> Vec<Target> {
    hostile::targets(hostile)
        .into_iter()
        .map(|(measure, value, limit, lower_is_better)| Target::new(measure, value, limit, lower_is_better))
        .collect()
}

/// One function's targets: peak memory, start-up and (when built) zip size.
fn function_targets(name: &str, figures: &Value) -> Vec<Target> {
    let figure = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
    let mut list = vec![
        Target::new(format!("{name}: peak RSS (MB)"), figure("peak_rss_mb"), 20.0, true),
        Target::new(format!("{name}: start-up (ms)"), figure("startup_ms"), 20.0, true),
    ];
    if let Some(bytes) = figures["arm64_zip_bytes"].as_f64() {
        list.push(Target::new(format!("{name}: arm64 zip (MB)"), bytes / 1e6, 6.0, true));
    }
    list
}

/// Prints the targets and the latency table (to stderr).
pub fn print_report(targets: &[Target], results: &Map<String, Value>) {
    eprintln!("\n{:<58} {:>12} {:>10}  result", "measure", "value", "target");
    for target in targets {
        let (name, value, limit, op) = (&target.measure, target.value, target.limit, target.comparison());
        eprintln!(
            "{name:<58} {value:>12.3} {op}{limit:>8}  {}",
            if target.met() { "met" } else { "MISSED" }
        );
    }
    eprintln!(
        "\n{:<36} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p95", "p99", "mean"
    );
    for key in LATENCIES {
        let Some(s) = results.get(key) else { continue };
        eprintln!(
            "{key:<36} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p95_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["mean_ms"].as_f64().unwrap_or(0.0)
        );
    }
}

/// The results file's document.
pub fn document(results: Map<String, Value>, targets: &[Target]) -> Value {
    json!({
        "machine": machine(),
        "results": results,
        "targets": targets.iter().map(|t| json!({
            "measure": t.measure, "value": round3(t.value), "target": t.limit,
            "comparison": t.comparison(),
            "met": t.met(),
        })).collect::<Vec<_>>(),
    })
}

/// The machine the run was made on.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo");
    let cpu = cpuinfo
        .as_ref()
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    json!({
        // Counted from /proc/cpuinfo: the benchmark itself runs pinned to one CPU.
        "cpus": cpuinfo.as_ref().map(|c| c.lines().filter(|l| l.starts_with("processor")).count()).unwrap_or(0),
        "pinning": "benchmark on CPU 0; PostgreSQL and moto on the last CPU",
        "cpu_model": cpu,
        "date": chrono::Utc::now().to_rfc3339(),
    })
}
