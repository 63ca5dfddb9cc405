//! `metrics-import export --org ORG [--out FILE]` — writes the organization's metrics and
//! sessions as NDJSON in this importer's line format (standard output by default), from the
//! database of `DATABASE_URL`; exit status 0 written, 1 usage or configuration, 2 failed.
//!
//! `metrics-import --org ORG [--user USER] [--queue-url URL] [--per-envelope N] [--skip-invalid]
//! [--dry-run] [FILE]` — see "Batch imports" in docs/batches.md. Reads FILE (or standard input).
//! Exit status: 0 all sent; 1 bad usage or configuration; 2 invalid lines (nothing sent unless
//! `--skip-invalid`); 3 some envelopes could not be queued.

use std::io::{BufReader, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;

use metrics_import::{DEFAULT_PER_ENVELOPE, plan, send};
use shared::domain::ids::{OrgId, UserId};

struct Options {
    org: OrgId,
    user: UserId,
    queue_url: Option<String>,
    per_envelope: usize,
    skip_invalid: bool,
    dry_run: bool,
    file: Option<String>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut org = None;
    let mut user = "importer".to_owned();
    let mut queue_url = std::env::var("BATCH_QUEUE_URL").ok();
    let mut per_envelope = DEFAULT_PER_ENVELOPE;
    let (mut skip_invalid, mut dry_run, mut file) = (false, false, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--org" => org = Some(value()?),
            "--user" => user = value()?,
            "--queue-url" => queue_url = Some(value()?),
            "--per-envelope" => {
                per_envelope = value()?
                    .parse()
                    .map_err(|_| "--per-envelope needs a number".to_owned())?;
            }
            "--skip-invalid" => skip_invalid = true,
            "--dry-run" => dry_run = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other if other.starts_with('-') && other != "-" => return Err(format!("unknown option {other}\n{USAGE}")),
            other => file = Some(other.to_owned()),
        }
    }
    let org = org.ok_or_else(|| format!("--org is required\n{USAGE}"))?;
    Ok(Options {
        org: OrgId::parse(&org).map_err(|e| format!("--org {org:?}: {e}"))?,
        user: UserId::parse(&user).map_err(|e| format!("--user {user:?}: {e}"))?,
        queue_url,
        per_envelope,
        skip_invalid,
        dry_run,
        file: file.filter(|f| f != "-"),
    })
}

const USAGE: &str = "usage: metrics-import --org ORG [--user USER] [--queue-url URL] [--per-envelope N] \
                     [--skip-invalid] [--dry-run] [FILE]";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("export") {
        std::process::exit(run_export(&args[1..]).await);
    }
    let code = match options(&args) {
        Ok(options) => run(options).await,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    };
    std::process::exit(code);
}

async fn run(options: Options) -> i32 {
    let input: Box<dyn std::io::BufRead> = match &options.file {
        Some(path) => match std::fs::File::open(path) {
            Ok(file) => Box::new(BufReader::new(file)),
            Err(e) => {
                eprintln!("cannot open {path}: {e}");
                return 1;
            }
        },
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    let plan = match plan(input, &options.org, &options.user, options.per_envelope) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("cannot read the input: {e}");
            return 1;
        }
    };
    let counts: Vec<String> = plan
        .counts
        .iter()
        .map(|(kind, n)| format!("{}: {n}", kind.plural()))
        .collect();
    eprintln!(
        "read {} lines: {} valid metrics ({}), {} invalid lines, {} repeated lines skipped, {} envelopes",
        plan.lines,
        plan.metrics(),
        counts.join(", "),
        plan.invalid.len(),
        plan.repeated.len(),
        plan.envelopes.len()
    );
    for error in plan.invalid.iter().take(20) {
        eprintln!("  {error}");
    }
    if plan.invalid.len() > 20 {
        eprintln!("  ... and {} more invalid lines", plan.invalid.len() - 20);
    }
    if !plan.invalid.is_empty() && !options.skip_invalid {
        eprintln!("nothing sent: fix the invalid lines, or pass --skip-invalid to send the valid ones");
        return 2;
    }
    if options.dry_run {
        eprintln!("dry run: nothing sent");
        return 0;
    }
    let Some(queue_url) = options.queue_url else {
        eprintln!("no queue: pass --queue-url or set BATCH_QUEUE_URL");
        return 1;
    };
    let aws = shared::app::aws_config().await;
    let total = plan.metrics();
    let show = std::io::stderr().is_terminal();
    let report = send(&aws_sdk_sqs::Client::new(&aws), &queue_url, &plan.envelopes, |sent| {
        if show {
            progress_bar(sent, total);
        }
    })
    .await;
    if show {
        eprintln!();
    }
    eprintln!(
        "sent {} envelopes ({} metrics) to {queue_url}; {} failed",
        report.sent_envelopes,
        report.sent_metrics,
        report.failed.len()
    );
    for (batch_id, reason) in &report.failed {
        eprintln!("  batch {batch_id}: {reason}");
    }
    if report.failed.is_empty() { 0 } else { 3 }
}

fn progress_bar(done: usize, total: usize) {
    const WIDTH: usize = 40;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r[{}{}] {percent:>3}% {done}/{total} metrics",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    );
    let _ = err.flush();
}

const EXPORT_USAGE: &str = "usage: metrics-import export --org ORG [--out FILE]";

async fn run_export(args: &[String]) -> i32 {
    let (mut org, mut out) = (None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next().cloned() else {
            eprintln!("{flag} needs a value\n{EXPORT_USAGE}");
            return 1;
        };
        match flag.as_str() {
            "--org" => org = Some(value),
            "--out" => out = Some(value),
            other => {
                eprintln!("unknown option {other}\n{EXPORT_USAGE}");
                return 1;
            }
        }
    }
    let org = match org.as_deref().map(OrgId::parse) {
        Some(Ok(org)) => org,
        Some(Err(e)) => {
            eprintln!("--org: {e}");
            return 1;
        }
        None => {
            eprintln!("--org is required\n{EXPORT_USAGE}");
            return 1;
        }
    };
    let database = match shared::config::DatabaseConfig::from_env(&shared::config::Env::process()) {
        Ok(database) => database,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut writer: Box<dyn Write + Send> = match &out {
        // The export holds the organization's data: readable by its owner only.
        Some(path) => match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => Box::new(std::io::BufWriter::new(file)),
            Err(e) => {
                eprintln!("cannot create {path}: {e}");
                return 1;
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match metrics_import::export(&database, &org, writer.as_mut()).await {
        Ok(counts) => {
            let counts: Vec<String> = counts.iter().map(|(kind, n)| format!("{kind}: {n}")).collect();
            eprintln!("exported {org}: {}", counts.join(", "));
            0
        }
        Err(e) => {
            eprintln!("export failed: {e}");
            2
        }
    }
}
