//! `local-front [serve]` — provision the local stack, then serve the API on 127.0.0.1:$PORT and
//!   run the scheduled functions.
//! `local-front provision` — create the table and queues and apply migrations, then exit.
//! `local-front token [--org ORG] [--user USER] [--hours N] [--role admin]` — print a development
//!   token.
//! `local-front key create --org ORG --user USER [--role admin] [--name N] [--expires-at T]` —
//!   write an API key straight to the keys table and print it once; `key list --org ORG`,
//!   `key revoke --org ORG --id ID`.
//! `local-front webhook-receiver [--port 9099] [--secret whsec_…] [--status 200]` — print each
//!   webhook POST and whether its signature verifies (for trying alerts).
//! `local-front watch [--org ORG] [--url ws://127.0.0.1:3000/live]` — print the organization's
//!   live updates, one JSON line each.
//! `local-front invoke <scheduled function> [--env FILE]` — run a scheduled function of the
//!   template (`session-reaper`, `retention`, ...) once, now, against the stack that FILE
//!   (default `.local/stack.env`, written by `make dev`) describes; print its JSON result.

use local_front::poller::Poller;
use local_front::scheduler::Scheduler;
use local_front::{Stack, TEMPLATE, jobs, provision, token};
use shared::adapters::dynamodb::api_keys::ApiKeyConfig;
use shared::app::live::LiveConfig;
use shared::config::{ConfigError, DatabaseConfig, Env, QueueConfig, RateLimitConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("invoke")
        && let Err(message) = load_stack_env(&args[1..])
    {
        eprintln!("local-front: {message}");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args));
}

/// What `local-front --help` prints. The commands but `serve` (which `make dev` runs) and
/// `invoke` (which reads `.local/stack.env` itself) take the stack's settings from the
/// environment: `set -a; . .local/stack.env; set +a` first.
const USAGE: &str = "usage: local-front <command>
  serve                     the local stack's HTTP and WebSocket front (make dev runs it)
  provision                 create the tables and queues of the local stack
  token [--org ORG] [--user USER] [--role admin|member] [--hours N]
                            print a JWT signed with JWT_SECRET (default demo, dev-user, member, 24 h)
  watch [token options]     print the live updates a token of those options sees, one JSON line each
  key create|list|revoke    manage API keys in the keys table (local-front key for its options)
  invoke <function> [--env FILE]
                            run a scheduled function now (session-reaper, retention, alerts)
  webhook-receiver --port PORT --secret SECRET
                            print the alert webhooks it receives and whether their signature verifies
Load the stack's settings first (invoke reads them itself): set -a; . .local/stack.env; set +a";

async fn run(args: Vec<String>) {
    if args
        .first()
        .is_some_and(|a| matches!(a.as_str(), "--help" | "-h" | "help"))
    {
        println!("{USAGE}");
        return;
    }
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve().await,
        Some("provision") => provision_stack().await,
        Some("token") => print_token(&args[1..]),
        Some("watch") => watch(&args[1..]).await,
        Some("key") => local_front::keys::run(&args[1..]).await.map(|out| println!("{out}")),
        Some("invoke") => invoke(&args[1..]).await,
        Some("webhook-receiver") => local_front::webhook_receiver::run(&args[1..]).await,
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    if let Err(message) = result {
        eprintln!("local-front: {message}");
        std::process::exit(1);
    }
}

async fn provision_stack() -> Result<(), String> {
    let env = Env::process();
    let database = DatabaseConfig::from_env(&env).map_err(config)?;
    let rate = RateLimitConfig::from_env(&env).map_err(config)?;
    let queue = QueueConfig::from_env(&env).map_err(config)?;
    let keys = ApiKeyConfig::from_env(&env).map_err(config)?;
    let aws = shared::app::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    provision::ensure_rate_limit_table(&dynamo, &rate.table_name).await?;
    provision::ensure_api_keys_table(&dynamo, &keys.table_name).await?;
    let live = LiveConfig::from_env(&env).map_err(config)?;
    if let Some(live) = &live {
        provision::ensure_connections_table(&dynamo, &live.connections_table).await?;
    }
    let dlq = provision::ensure_batch_queues(&aws_sdk_sqs::Client::new(&aws), &queue.url, Default::default()).await?;
    let report = migrate::Migrator { database }.run().await?;
    eprintln!(
        "provisioned: tables {} and {}, queue {} (dead letters: {dlq}), {} public migration(s), {} tenant(s) upgraded",
        rate.table_name, keys.table_name, queue.url, report.public_migrations_applied, report.tenants_upgraded
    );
    Ok(())
}

async fn serve() -> Result<(), String> {
    shared::telemetry::init();
    provision_stack().await?;
    let env = Env::process();
    let aws = shared::app::aws_config().await;
    let stack = Stack::from_env(&env, &aws).map_err(config)?;
    let gateway = std::sync::Arc::new(stack.gateway()?);
    let scheduler = Scheduler::new(TEMPLATE, jobs(&stack))?;
    let queue = QueueConfig::from_env(&env).map_err(config)?;
    let poller = Poller::new(
        aws_sdk_sqs::Client::new(&aws),
        queue.url.clone(),
        stack.worker.clone(),
        std::time::Duration::from_secs(1),
    )
    .await?;
    let port: u16 = env.parse_or("PORT", 3000).map_err(config)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    eprintln!("local front listening on http://127.0.0.1:{port}");
    for line in gateway.route_keys().into_iter().chain(scheduler.describe()) {
        eprintln!("  {line}");
    }
    eprintln!("  batch-worker consuming {}", queue.url);
    eprintln!("  Claude Code's OTEL_EXPORTER_OTLP_ENDPOINT: http://127.0.0.1:{port}/otlp");
    if stack.live.is_some() {
        eprintln!(
            "  live updates on ws://127.0.0.1:{port}{}?token=<JWT or API key>",
            local_front::live::LIVE_PATH
        );
    }
    tokio::select! {
        served = gateway.serve(listener) => served.map_err(|e| e.to_string()),
                _ = scheduler.run() => Ok(()),
        _ = poller.run() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The `--env FILE` of `invoke` (default `.local/stack.env`), as `set -a; . FILE` would: its
/// `NAME=value` lines become the process's environment, over what was there.
fn load_stack_env(args: &[String]) -> Result<(), String> {
    let path = match args.iter().position(|a| a == "--env") {
        Some(at) => args.get(at + 1).cloned().ok_or("--env needs a file")?,
        None => ".local/stack.env".to_owned(),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {path} ({e}): start the stack with `make dev`, or pass --env FILE"))?;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            // SAFETY: called from `main` before the runtime starts, while the process has one thread.
            unsafe { std::env::set_var(name.trim(), value) };
        }
    }
    Ok(())
}

/// Runs one scheduled function of the template now and prints its result.
async fn invoke(args: &[String]) -> Result<(), String> {
    let name = args
        .first()
        .filter(|name| !name.starts_with("--"))
        .ok_or("usage: local-front invoke <scheduled function> [--env FILE]")?;
    // No log subscriber: stdout carries only the result (the functions' log lines would go there).
    let env = Env::process();
    let aws = shared::app::aws_config().await;
    let stack = Stack::from_env(&env, &aws).map_err(config)?;
    let mut jobs = jobs(&stack);
    let mut names: Vec<&String> = jobs.keys().collect();
    names.sort();
    let known = names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
    let job = jobs
        .remove(name)
        .ok_or_else(|| format!("no scheduled function {name:?}; the template schedules {known}"))?;
    let result = job().await.map_err(|e| format!("{name} failed: {e}"))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string())
    );
    Ok(())
}

/// The options of `token` and `watch`.
struct TokenOptions {
    org: String,
    user: String,
    hours: u64,
    url: String,
    role: Option<String>,
}

fn token_options(args: &[String]) -> Result<TokenOptions, String> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let mut options = TokenOptions {
        org: "demo".to_owned(),
        user: "dev-user".to_owned(),
        hours: 24,
        url: format!("ws://127.0.0.1:{port}{}", local_front::live::LIVE_PATH),
        role: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--org" => options.org = value.clone(),
            "--user" => options.user = value.clone(),
            "--url" => options.url = value.clone(),
            "--role" => options.role = Some(value.clone()),
            "--hours" => {
                options.hours = value
                    .parse()
                    .map_err(|_| format!("--hours {value:?} is not a number"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

fn print_token(args: &[String]) -> Result<(), String> {
    println!("{}", mint(&token_options(args)?)?);
    Ok(())
}

async fn watch(args: &[String]) -> Result<(), String> {
    let options = token_options(args)?;
    let url = format!("{}?token={}", options.url, mint(&options)?);
    let mut updates = local_front::live::watch(&url).await?;
    eprintln!("watching the live updates of organization {:?}", options.org);
    while let Some(update) = updates.recv().await {
        println!("{update}");
    }
    Err("the connection closed".into())
}

fn mint(options: &TokenOptions) -> Result<String, String> {
    let TokenOptions {
        org, user, hours, role, ..
    } = options;
    let env = Env::process();
    let secret = env.required("JWT_SECRET").map_err(config)?;
    let issuer = std::env::var("JWT_ISSUER").ok().filter(|s| !s.is_empty());
    // The first audience the service accepts.
    let audience = std::env::var("JWT_AUDIENCE")
        .ok()
        .and_then(|a| a.split(',').map(str::trim).find(|a| !a.is_empty()).map(str::to_owned));
    let claims = token::Claims {
        issuer: issuer.as_deref(),
        audience: audience.as_deref(),
        role: role.as_deref(),
    };
    token::mint_with(&secret, org, user, *hours, &claims)
}

fn config(err: ConfigError) -> String {
    err.to_string()
}
