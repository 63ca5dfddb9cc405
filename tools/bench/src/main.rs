//! `make bench`: measures the service against the local stack (PostgreSQL and moto started by
//! `local/bench.sh`) in one run, prints a table and writes a JSON file (`BENCH_OUTPUT`, default
//! `.local/bench/results.json`). Latencies are compared to baselines measured in the same run on
//! the same machine, never to fixed numbers.
//!
//! This file only chooses the sections (`BENCH_SECTIONS`), runs them and writes the results; each
//! section is a module that measures one thing and may use `stats` and `stack`. `targets` reads
//! the results and reports; it measures nothing.

shared::fast_allocator!();

mod cost;
mod functions;
mod hostile;
mod http;
mod in_process;
mod ingest;
mod keys;
mod leases;
mod live;
mod otlp;
mod retention;
mod stack;
mod stats;
mod summary;
mod targets;
mod team;

use serde_json::{Map, Value, json};
use stack::{Sizes, Stack};

/// The sections, in the order they run, and what is printed as each begins.
/// `BENCH_SECTIONS=in_process,leases,http,live,keys,otlp,team,ingest,functions,summary,hostile,retention,cost` selects some (all by default).
const SECTIONS: [(&str, &str); 13] = [
    (
        "in_process",
        "measuring baselines, the handler in process and the worker (current-thread runtime)...",
    ),
    (
        "leases",
        "counting the rate limiter's DynamoDB calls with leases: steady, under contention, flooded...",
    ),
    ("http", "measuring the handler over HTTP through the local front..."),
    (
        "live",
        "measuring the write path with live updates on and off (over HTTP, interleaved)...",
    ),
    (
        "keys",
        "measuring the single-metric route by API key against the same route by JWT (over HTTP, interleaved)...",
    ),
    (
        "otlp",
        "measuring Claude Code's OTLP exports over HTTP against the single-metric route (interleaved)...",
    ),
    (
        "team",
        "a team of 50 on hooks for two minutes at the default budgets, with a runaway colleague (over HTTP)...",
    ),
    (
        "functions",
        "measuring each function's release binary (start-up, peak RSS)...",
    ),
    ("ingest", "measuring sustained worker ingest..."),
    (
        "hostile",
        "timing the sanitiser, the redaction and hook content on the worst input shapes...",
    ),
    (
        "summary",
        "writing the summary benchmark's rows through the worker and querying them...",
    ),
    (
        "retention",
        "inserting expired rows, then timing ingest before and while retention deletes them...",
    ),
    (
        "cost",
        "running each path's functions as release binaries to price one million metrics...",
    ),
];

fn main() {
    shared::telemetry::init();
    let sizes = Sizes::from_env();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stack = runtime.block_on(stack::setup());
    let mut results = Map::new();
    let chosen = std::env::var("BENCH_SECTIONS").ok();
    let wanted = |name: &str| chosen.as_ref().is_none_or(|s| s.split(',').any(|s| s.trim() == name));
    for (section, announcement) in SECTIONS {
        if wanted(section) {
            eprintln!("{announcement}");
            run(section, &runtime, &stack, &sizes, &mut results);
        }
    }
    let run = json!({
        "scale": stack::env_number("BENCH_SCALE", 1.0),
        "sections": chosen.as_deref().unwrap_or("all"),
        "database": runtime.block_on(stack::database_settings(&stack)),
    });
    let path = output_path();
    let previous = targets::Previous::read(&path);
    let targets = targets::targets(&results);
    targets::print_report(&targets, &results, &run, previous.as_ref());
    write(&path, &targets::document(results, &targets, run));
}

/// `BENCH_OUTPUT`, where the results go (and where the previous run's are read from).
fn output_path() -> String {
    std::env::var("BENCH_OUTPUT").unwrap_or_else(|_| ".local/bench/results.json".into())
}

/// Runs one section; the in-process sections make or need no runtime of their own.
fn run(
    section: &str,
    runtime: &tokio::runtime::Runtime,
    stack: &Stack,
    sizes: &Sizes,
    results: &mut Map<String, Value>,
) {
    match section {
        "in_process" => in_process::measure(stack, sizes, results),
        "leases" => runtime.block_on(leases::measure(stack, results)),
        "http" => runtime.block_on(http::measure(stack, sizes, results)),
        "live" => runtime.block_on(live::measure(stack, sizes, results)),
        "keys" => runtime.block_on(keys::measure(stack, sizes, results)),
        "otlp" => runtime.block_on(otlp::measure(stack, sizes, results)),
        "team" => runtime.block_on(team::measure(stack, results)),
        "functions" => runtime.block_on(functions::measure(stack, results)),
        "ingest" => runtime.block_on(ingest::measure(stack, sizes, results)),
        "hostile" => hostile::measure_all(results),
        "summary" => runtime.block_on(summary::measure(stack, results)),
        "retention" => runtime.block_on(retention::measure(stack, results)),
        "cost" => runtime.block_on(cost::measure(stack, results)),
        _ => unreachable!("{section} is not in SECTIONS"),
    }
}

/// Writes `output` to `path`.
fn write(path: &str, output: &Value) {
    if let Some(dir) = std::path::Path::new(path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, serde_json::to_string_pretty(output).expect("json")).expect("write results");
    eprintln!("\nresults written to {path}");
}
