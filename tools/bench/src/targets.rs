//! What the run is judged by and how it is reported: the targets (measured figure against a
//! limit), the table printed at the end, and the results file's document (machine, results,
//! targets).
//!
//! May use `stats` (for rounding) and `hostile` (which knows its section's worst figures), and
//! reads only the results the sections wrote; it measures nothing.

use serde_json::{Map, Value, json};

use crate::hostile;
use crate::stats::round3;

/// A figure of the run against its limit. `key` is its stable name in the results file, by which
/// the next run finds it to compare; `measure` is what the report calls it.
pub struct Target {
    pub key: String,
    pub measure: String,
    pub value: f64,
    pub limit: f64,
    pub lower_is_better: bool,
}

impl Target {
    fn new(key: impl Into<String>, measure: impl Into<String>, value: f64, limit: f64, lower_is_better: bool) -> Self {
        Target {
            key: key.into(),
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

    /// What the report says of it: met, MISSED, or not measured (its section did not run).
    fn verdict(&self) -> &'static str {
        if self.value.is_nan() {
            "not run"
        } else if self.met() {
            "met"
        } else {
            "MISSED"
        }
    }

    fn comparison(&self) -> &'static str {
        if self.lower_is_better { "<=" } else { ">=" }
    }
}

/// The keys of the latency table, in the order printed.
const LATENCIES: [&str; 21] = [
    "raw_postgres_insert",
    "raw_postgres_aggregated_insert",
    "raw_postgres_aggregated_insert_unnamed",
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
    "worker_batch_of_20_from_the_route",
    "handler_admitted_locally",
];

/// The targets of the benchmark, for the sections that ran (a missing figure is NaN).
pub fn targets(results: &Map<String, Value>) -> Vec<Target> {
    let all = Value::Object(results.clone());
    let get = |path: &[&str]| path.iter().fold(&all, |v, key| &v[*key]).as_f64().unwrap_or(f64::NAN);
    let mut list = vec![
        Target::new(
            "single_metric_p95_over_raw_sum",
            "single-metric p95 / (raw PG p95 + raw DynamoDB p95)",
            get(&["ratios", "handler_p95_over_raw_p95_sum"]),
            1.25,
            true,
        ),
        Target::new(
            "single_metric_local_p95_over_raw_pg_p95",
            "single-metric p95 admitted by the lease / raw PG insert p95",
            get(&["ratios", "handler_admitted_locally_p95_over_raw_pg_p95"]),
            1.1,
            true,
        ),
        Target::new(
            "own_cpu_per_request_p95_ms",
            "own CPU per request p95 (ms)",
            get(&["handler_cpu", "p95_ms"]),
            0.2,
            true,
        ),
        Target::new(
            "batch20_p50_over_raw20_p50",
            "worker: batch of 20 p50 / raw 20-row insert p50",
            get(&["ratios", "batch20_p50_over_raw20_p50"]),
            2.0,
            true,
        ),
        Target::new(
            "sustained_worker_ingest_metrics_per_s",
            "sustained worker ingest (metrics/s)",
            get(&["worker_sustained_ingest", "metrics_per_second"]),
            50_000.0,
            false,
        ),
        // Both budgets admit from leases: one conditional update per lease, not per request.
        Target::new(
            "dynamodb_calls_per_admitted_request",
            "DynamoDB calls per admitted request (two budgets, leases)",
            get(&["dynamodb_round_trips_per_admitted_request"]),
            0.1,
            true,
        ),
        Target::new(
            "api_key_table_reads_per_request",
            "API key table reads per keyed request (cached key)",
            get(&["api_key_table_reads_per_request"]),
            0.01,
            true,
        ),
        Target::new(
            "http_p50_api_key_over_jwt",
            "single-metric p50 over HTTP, API key / JWT",
            get(&["ratios", "http_p50_api_key_over_jwt"]),
            1.1,
            true,
        ),
        Target::new(
            "summary_handler_p95_ms",
            "summary p95 over 1M rows, 30 days (ms; spec: 8.7 for 10K)",
            get(&["summary_over_raw_rows", "summary_handler_ms", "p95_ms"]),
            8.7,
            true,
        ),
        Target::new(
            "per_user_query_on_aggregates_p95_ms",
            "per-user query on the aggregates p95, 1M rows (ms; spec: 8.7 for 10K)",
            get(&["summary_over_raw_rows", "per_user_query_on_aggregates_ms", "p95_ms"]),
            8.7,
            true,
        ),
    ];
    if results.contains_key("team_load") {
        list.push(Target::new(
            "team_events_lost",
            "team load: developers' hook events lost",
            get(&["team_load", "team_events_lost"]),
            0.0,
            true,
        ));
        list.push(Target::new(
            "team_runaway_admitted_over_budget",
            "team load: runaway admitted beyond its own budget",
            get(&["team_load", "runaway_admitted_over_budget"]),
            0.0,
            true,
        ));
    }
    if results.contains_key("rate_limit_leases") {
        list.push(Target::new(
            "leases_calls_per_request_steady_50_per_s",
            "leases: DynamoDB calls per admitted request, 50/s from one container",
            get(&["rate_limit_leases", "steady_50_per_s", "calls_per_admitted_request"]),
            0.1,
            true,
        ));
        list.push(Target::new(
            "leases_admitted_over_budget_under_contention",
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
        .map(|(measure, value, limit, lower_is_better)| {
            let key = format!("hostile.{}", slug(&measure));
            Target::new(key, measure, value, limit, lower_is_better)
        })
        .collect()
}

/// One function's targets: peak memory, start-up and (when built) zip size.
fn function_targets(name: &str, figures: &Value) -> Vec<Target> {
    let figure = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
    let mut list = vec![
        Target::new(
            format!("{name}.peak_rss_mb"),
            format!("{name}: peak RSS (MB)"),
            figure("peak_rss_mb"),
            20.0,
            true,
        ),
        Target::new(
            format!("{name}.startup_ms"),
            format!("{name}: start-up (ms)"),
            figure("startup_ms"),
            20.0,
            true,
        ),
    ];
    if let Some(bytes) = figures["arm64_zip_bytes"].as_f64() {
        list.push(Target::new(
            format!("{name}.arm64_zip_mb"),
            format!("{name}: arm64 zip (MB)"),
            bytes / 1e6,
            6.0,
            true,
        ));
    }
    list
}

/// A stable name from the start of `measure` (up to its first `:`, `(` or `,`).
fn slug(measure: &str) -> String {
    let head = measure.split([':', '(', ',']).next().unwrap_or(measure);
    let words: Vec<String> = head
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words.join("_")
}

/// The previous run's results file (`BENCH_OUTPUT` before this run writes it), if any.
pub struct Previous(Value);

impl Previous {
    pub fn read(path: &str) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok().map(Previous)
    }

    /// The previous value of the target `key`.
    fn target(&self, key: &str) -> Option<f64> {
        self.0["targets"]
            .as_array()?
            .iter()
            .find(|t| t["key"].as_str() == Some(key))
            .and_then(|t| t["value"].as_f64())
    }

    /// The previous p95 of the latency `key`.
    fn p95(&self, key: &str) -> Option<f64> {
        self.0["results"][key]["p95_ms"].as_f64()
    }

    /// One line saying which run this is compared with, and whether it ran alike.
    fn describe(&self, run: &Value) -> String {
        let before = &self.0["run"];
        let mut line = format!(
            "compared with the previous run of {} (scale {}, database {})",
            self.0["machine"]["date"].as_str().unwrap_or("?"),
            before["scale"],
            before["database"]["durability"].as_str().unwrap_or("unknown")
        );
        if before["scale"] != run["scale"] || before["database"]["durability"] != run["database"]["durability"] {
            line.push_str(": NOT ALIKE (another scale or durability), so the ratios compare different runs");
        }
        line
    }
}

/// `value` beside the previous run's `before`, and their ratio.
fn beside(value: f64, before: Option<f64>) -> String {
    match before {
        Some(b) if b != 0.0 && value.is_finite() => format!("{b:>10.3} {:>6.2}x", value / b),
        Some(b) => format!("{b:>10.3} {:>7}", "-"),
        None => format!("{:>10} {:>7}", "-", "-"),
    }
}

/// Prints the targets and the latency table (to stderr), each figure beside the previous run's.
pub fn print_report(targets: &[Target], results: &Map<String, Value>, run: &Value, previous: Option<&Previous>) {
    eprintln!(
        "\ndatabase: {} ({})",
        run["database"]["durability"].as_str().unwrap_or("?"),
        run["database"]["settings"]
    );
    match previous {
        Some(previous) => eprintln!("{}", previous.describe(run)),
        None => eprintln!("no previous run to compare with"),
    }
    eprintln!(
        "\n{:<58} {:>12} {:>10}  {:<7} {:>10} {:>7}",
        "measure", "value", "target", "result", "previous", "ratio"
    );
    for target in targets {
        let (name, value, limit, op) = (&target.measure, target.value, target.limit, target.comparison());
        let before = previous.and_then(|p| p.target(&target.key));
        eprintln!(
            "{name:<58} {value:>12.3} {op}{limit:>8}  {:<7} {}",
            target.verdict(),
            beside(value, before)
        );
    }
    eprintln!(
        "\n{:<36} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "latency (ms)", "p50", "p95", "p99", "mean", "prev p95", "ratio"
    );
    for key in LATENCIES {
        let Some(s) = results.get(key) else { continue };
        let p95 = s["p95_ms"].as_f64().unwrap_or(0.0);
        eprintln!(
            "{key:<36} {:>9.3} {p95:>9.3} {:>9.3} {:>9.3} {}",
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["mean_ms"].as_f64().unwrap_or(0.0),
            beside(p95, previous.and_then(|p| p.p95(key)))
        );
    }
}

/// The results file's document.
pub fn document(results: Map<String, Value>, targets: &[Target], run: Value) -> Value {
    json!({
        "machine": machine(),
        "run": run,
        "results": results,
        "targets": targets.iter().map(|t| json!({
            "key": t.key, "measure": t.measure, "value": round3(t.value), "target": t.limit,
            "comparison": t.comparison(),
            "met": (!t.value.is_nan()).then(|| t.met()),
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
