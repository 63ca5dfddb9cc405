//! Each function's release binary (`BENCH_RELEASE_DIR`, default `target/release`) under a Lambda
//! Runtime API stand-in: time until it asks for its first event (median of several cold starts),
//! its peak resident memory after a stream of events, and the size of its arm64 zip
//! (`BENCH_ZIP_DIR`, default `target/lambda`).
//!
//! May use `stats` and `stack`, and `local_front` (for the Runtime API stand-in).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use local_front::runtime_api::RuntimeApi;
use serde_json::{Map, Value, json};

use crate::stack::{Stack, env_for};
use crate::stats::{Stats, ms, round3};

/// Cold starts measured per function.
const STARTS: usize = 7;

pub async fn measure(stack: &Stack, results: &mut Map<String, Value>) {
    let release_dir = std::env::var("BENCH_RELEASE_DIR").unwrap_or_else(|_| "target/release".into());
    let zip_dir = std::env::var("BENCH_ZIP_DIR").unwrap_or_else(|_| "target/lambda".into());
    let mut out = Map::new();
    for name in function_names() {
        let binary = Path::new(&release_dir).join(&name);
        if !binary.exists() {
            eprintln!("  {name}: no release binary at {}", binary.display());
            continue;
        }
        let zip = Path::new(&zip_dir).join(&name).join("bootstrap.zip");
        let figures = measure_function(&name, &binary, &zip, stack).await;
        out.insert(name, figures);
    }
    results.insert("functions".into(), Value::Object(out));
}

/// The functions, by name (their folders under `functions/`), sorted.
fn function_names() -> Vec<String> {
    let manifests = std::fs::read_dir(repository().join("functions")).expect("functions");
    let mut names: Vec<String> = manifests
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The repository's root, from this crate's folder.
pub fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// One function's figures, printed as they come and as written to the results file.
async fn measure_function(name: &str, binary: &Path, zip: &Path, stack: &Stack) -> Value {
    let event_path = repository().join("events").join(format!("{name}.json"));
    let event = std::fs::read_to_string(event_path).expect("event fixture");
    let invocations = match name {
        "migrate" | "session-reaper" => 5,
        // Each creates a key for the fixture's user, and api-key-list (next) lists them all on
        // every call: a thousand keys make each of its thousand calls a slow scan in moto.
        "api-key-create" => 50,
        "batch-worker" => 200,
        _ => 1000,
    };
    let startups = cold_starts(binary, name, stack).await;
    let startup = Stats::of(&startups).p50;
    // Peak resident memory after a stream of events.
    let (api, mut child, _) = start(binary, name, stack).await;
    for _ in 0..invocations {
        api.push(event.clone());
    }
    api.wait_for(invocations).await;
    let peak_kb = child.id().and_then(peak_rss_kb).unwrap_or(0);
    let _ = child.kill().await;
    let (flushes, pushes) = (api.extension_done(), api.pushes());
    let zip_bytes = std::fs::metadata(zip).map(|m| m.len()).ok();
    eprintln!(
        "  {name:<18} start-up {startup:>6.1} ms (median of {STARTS})  peak RSS {:>6.1} MB  {} invocations ({} errors), \
         {flushes} extension flushes, {pushes} live pushes",
        peak_kb as f64 / 1024.0,
        api.responses(),
        api.errors().len()
    );
    json!({
        "startup_ms": round3(startup),
        "startup_runs_ms": startups.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
        "peak_rss_mb": round3(peak_kb as f64 / 1024.0),
        "invocations": invocations,
        "errors": api.errors().len(),
        "extension_flushes": flushes,
        "live_pushes": pushes,
        "arm64_zip_bytes": zip_bytes,
    })
}

/// Milliseconds of `STARTS` cold starts, each until the first request for work.
async fn cold_starts(binary: &Path, name: &str, stack: &Stack) -> Vec<f64> {
    let mut startups = Vec::new();
    for _ in 0..STARTS {
        let (api, mut child, spawned) = start(binary, name, stack).await;
        while api.first_poll().is_none() {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        startups.push(ms(api.first_poll().expect("polled") - spawned));
        let _ = child.kill().await;
    }
    startups
}

/// A Runtime API stand-in, the function's binary started against it, and when it was spawned.
async fn start(binary: &Path, name: &str, stack: &Stack) -> (RuntimeApi, tokio::process::Child, Instant) {
    start_logging_to(binary, name, stack, std::process::Stdio::null()).await
}

/// As [`start`], with the function's standard output (its log) piped to the caller.
pub async fn start_with_stdout(binary: &Path, name: &str, stack: &Stack) -> (RuntimeApi, tokio::process::Child) {
    let (api, child, _) = start_logging_to(binary, name, stack, std::process::Stdio::piped()).await;
    (api, child)
}

async fn start_logging_to(
    binary: &Path,
    name: &str,
    stack: &Stack,
    stdout: std::process::Stdio,
) -> (RuntimeApi, tokio::process::Child, Instant) {
    let api = RuntimeApi::default();
    let addr = api.start().await;
    let spawned = Instant::now();
    let child = launch(binary, name, addr, stack).stdout(stdout).spawn().expect("spawn");
    (api, child, spawned)
}

/// The command that runs a function's binary as Lambda would, against the Runtime API at `addr`.
fn launch(binary: &Path, name: &str, addr: SocketAddr, stack: &Stack) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(env_for(stack, &[("SESSION_IDLE_TIMEOUT_MS", "3600000".into())]))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_ENDPOINT_URL", std::env::var("AWS_ENDPOINT_URL").expect("endpoint"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    // Live updates on, as deployed: the writers push to the fixtures' organization's dashboard
    // through the Runtime API stand-in, which also plays the management API.
    if name == "live-connection" || local_front::live_writers().contains(&name) {
        command.env("CONNECTIONS_TABLE_NAME", &stack.connections_table);
    }
    if local_front::live_writers().contains(&name) {
        command.env("LIVE_UPDATES_ENDPOINT", format!("http://{addr}"));
    }
    command
}

/// The peak resident memory (VmHWM) of process `pid`, in KiB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
