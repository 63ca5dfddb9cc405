//! Section `leases`: the rate limiter's DynamoDB calls per admitted request now that containers
//! admit from leases — at a steady 50 requests a second from one container (five developers at
//! the default 10 a second each, the stage's default budgets), under contention (four
//! containers, 64 clients of 32 developers, within the budgets), and what the same contention
//! admits against a day's budget it floods (never more; how close). Counts, not times: the
//! clock only paces the steady runs. `BENCH_SCALE` scales their length.
//!
//! May use `stack` and the service's crates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use shared::adapters::dynamodb::DynamoRateLimiter;
use shared::config::{DynamoDbConfig, Env, OnStoreError, RateLimitConfig};
use shared::domain::ratelimit::{Budgets, Limits};
use shared::ports::rate_limit::RateLimiter;

use crate::stack::{Stack, caller, env_number};
use crate::stats::round3;

/// Containers and clients of the contention runs.
const INSTANCES: usize = 4;
const CLIENTS: usize = 64;
/// Requests each client sends in the flood.
const FLOOD_PER_CLIENT: usize = 60;
/// The flooded organization's budget for the day.
const FLOOD_BUDGET: u64 = 2000;

pub async fn measure(stack: &Stack, results: &mut Map<String, Value>) {
    let seconds = (20.0 * env_number::<f64>("BENCH_SCALE", 1.0)).max(5.0);
    let run = Duration::from_secs_f64(seconds);
    let defaults = Budgets {
        organization: per(12_000, 60_000),
        user: per(600, 60_000),
    };
    let steady = steady(stack, &defaults, run).await;
    let within = contention_within_budget(stack, &defaults, run).await;
    let flood = contention_over_budget(stack).await;
    results.insert(
        "rate_limit_leases".into(),
        json!({
            "steady_50_per_s": steady,
            "contention_within_budget": within,
            "contention_over_budget": flood,
        }),
    );
}

fn per(max_requests: u64, window_ms: u64) -> Limits {
    Limits {
        max_requests,
        window_ms,
        burst_allowance: 0,
    }
}

/// A container's limiter on the stack's table.
async fn container(stack: &Stack, defaults: &Budgets) -> Arc<DynamoRateLimiter> {
    let config = RateLimitConfig {
        dynamodb: DynamoDbConfig::from_env(&Env::process()),
        defaults: *defaults,
        table_name: stack.table.clone(),
        on_store_error: OnStoreError::Deny,
        store_timeout: Duration::from_secs(5),
    };
    Arc::new(DynamoRateLimiter::new(&shared::app::aws_config().await, &config).expect("limiter"))
}

/// Tallies of one run.
#[derive(Default)]
struct Tally {
    requests: u64,
    admitted: u64,
}

impl Tally {
    fn record(&mut self, admitted: bool) {
        self.requests += 1;
        self.admitted += u64::from(admitted);
    }

    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.admitted += other.admitted;
    }

    fn json(&self, calls: u64) -> Value {
        json!({
            "requests": self.requests,
            "admitted": self.admitted,
            "dynamodb_calls": calls,
            "calls_per_admitted_request": round3(calls as f64 / self.admitted.max(1) as f64),
        })
    }
}

/// One container, 50 requests a second round robin over five developers; the first second
/// (leases growing from one token) is not counted.
async fn steady(stack: &Stack, defaults: &Budgets, run: Duration) -> Value {
    let limiter = container(stack, defaults).await;
    let developers: Vec<_> = (0..5)
        .map(|i| caller("bench-leases-steady", &format!("dev-{i}")))
        .collect();
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let warm_up = Duration::from_secs(1);
    let (started, mut tally, mut calls_before) = (Instant::now(), Tally::default(), None);
    for i in 0.. {
        pace.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= warm_up + run {
            break;
        }
        let status = limiter.check(&developers[i % developers.len()]).await.expect("check");
        if elapsed < warm_up {
            continue;
        }
        calls_before.get_or_insert(limiter.round_trips());
        tally.record(status.admitted());
    }
    let calls = limiter.round_trips() - calls_before.unwrap_or_default();
    let mut figures = tally.json(calls);
    figures["developers"] = json!(developers.len());
    figures["seconds"] = json!(run.as_secs_f64());
    figures
}

/// Four containers, 64 clients of 32 developers (each client's requests go to the containers in
/// turn, as a load balancer spreads them), each client 3 a second: 192 a second in all, within
/// the budgets.
async fn contention_within_budget(stack: &Stack, defaults: &Budgets, run: Duration) -> Value {
    let instances = containers(stack, defaults).await;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let instances = instances.clone();
            let who = caller("bench-leases-contention", &format!("dev-{}", client % 32));
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(Duration::from_millis(333));
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let (started, mut tally) = (Instant::now(), Tally::default());
                for i in 0.. {
                    pace.tick().await;
                    if started.elapsed() >= run {
                        break;
                    }
                    let limiter = &instances[(client + i) % instances.len()];
                    let status = limiter.check(&who).await.expect("check");
                    tally.record(status.admitted());
                }
                tally
            })
        })
        .collect();
    let tally = gather(clients).await;
    let mut figures = tally.json(calls(&instances));
    figures["instances"] = json!(INSTANCES);
    figures["clients"] = json!(CLIENTS);
    figures
}

/// The same containers and clients, as fast as they can, against a day's budget of
/// `FLOOD_BUDGET` for the organization: admitted must not exceed it.
async fn contention_over_budget(stack: &Stack) -> Value {
    let budgets = Budgets {
        organization: per(FLOOD_BUDGET, 86_400_000),
        user: per(1_000_000, 86_400_000),
    };
    let instances = containers(stack, &budgets).await;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let instances = instances.clone();
            let who = caller("bench-leases-flood", &format!("dev-{}", client % 16));
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for i in 0..FLOOD_PER_CLIENT {
                    let limiter = &instances[(client + i) % instances.len()];
                    let status = limiter.check(&who).await.expect("check");
                    tally.record(status.admitted());
                }
                tally
            })
        })
        .collect();
    let tally = gather(clients).await;
    let mut figures = tally.json(calls(&instances));
    figures["budget"] = json!(FLOOD_BUDGET);
    figures["admitted_over_budget"] = json!(tally.admitted.saturating_sub(FLOOD_BUDGET));
    figures["under_admitted"] = json!(FLOOD_BUDGET.saturating_sub(tally.admitted));
    figures
}

async fn containers(stack: &Stack, budgets: &Budgets) -> Arc<Vec<Arc<DynamoRateLimiter>>> {
    let mut instances = vec![];
    for _ in 0..INSTANCES {
        instances.push(container(stack, budgets).await);
    }
    Arc::new(instances)
}

async fn gather(clients: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut tally = Tally::default();
    for client in clients {
        tally.add(client.await.expect("client"));
    }
    tally
}

fn calls(instances: &[Arc<DynamoRateLimiter>]) -> u64 {
    instances.iter().map(|limiter| limiter.round_trips()).sum()
}
