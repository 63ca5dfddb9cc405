//! `local-front [serve]` — provision the local stack, then serve the API on 127.0.0.1:$PORT and
//!   run the scheduled functions.
//! `local-front provision` — create the table and queues and apply migrations, then exit.
//! `local-front token [--org ORG] [--user USER] [--hours N]` — print a development token.

use local_front::gateway::Gateway;
use local_front::poller::Poller;
use local_front::scheduler::Scheduler;
use local_front::{Stack, TEMPLATE, handlers, jobs, provision, token};
use shared::config::{ConfigError, DatabaseConfig, Env, QueueConfig, RateLimitConfig};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve().await,
        Some("provision") => provision_stack().await,
        Some("token") => print_token(&args[1..]),
        Some(other) => Err(format!("unknown command {other:?}; expected serve, provision or token")),
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
    let aws = shared::app::aws_config().await;
    provision::ensure_rate_limit_table(&aws_sdk_dynamodb::Client::new(&aws), &rate.table_name).await?;
    let dlq = provision::ensure_batch_queues(&aws_sdk_sqs::Client::new(&aws), &queue.url, Default::default()).await?;
    let report = migrate::Migrator { database }.run().await?;
    eprintln!(
        "provisioned: table {}, queue {} (dead letters: {dlq}), {} public migration(s), {} tenant(s) upgraded",
        rate.table_name, queue.url, report.public_migrations_applied, report.tenants_upgraded
    );
    Ok(())
}

async fn serve() -> Result<(), String> {
    shared::telemetry::init();
    provision_stack().await?;
    let env = Env::process();
    let aws = shared::app::aws_config().await;
    let stack = Stack::from_env(&env, &aws).map_err(config)?;
    let gateway = std::sync::Arc::new(Gateway::new(TEMPLATE, handlers(&stack))?);
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
    tokio::select! {
        served = gateway.serve(listener) => served.map_err(|e| e.to_string()),
                _ = scheduler.run() => Ok(()),
        _ = poller.run() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

fn print_token(args: &[String]) -> Result<(), String> {
    let mut org = "demo".to_owned();
    let mut user = "dev-user".to_owned();
    let mut hours = 24u64;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--org" => org = value.clone(),
            "--user" => user = value.clone(),
            "--hours" => {
                hours = value
                    .parse()
                    .map_err(|_| format!("--hours {value:?} is not a number"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let env = Env::process();
    let secret = env.required("JWT_SECRET").map_err(config)?;
    let issuer = std::env::var("JWT_ISSUER").ok().filter(|s| !s.is_empty());
    // The first audience the service accepts.
    let audience = std::env::var("JWT_AUDIENCE")
        .ok()
        .and_then(|a| a.split(',').map(str::trim).find(|a| !a.is_empty()).map(str::to_owned));
    println!(
        "{}",
        token::mint_for(&secret, &org, &user, hours, issuer.as_deref(), audience.as_deref())?
    );
    Ok(())
}

fn config(err: ConfigError) -> String {
    err.to_string()
}
