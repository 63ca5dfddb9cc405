//! Reachability of the service's dependencies, for `GET /api/v1/health`.
//! Each probe is the cheapest call the function's IAM policy already allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use serde_json::{Map, Value, json};

use crate::adapters::dynamodb::client::{DynamoHttp, GetItem};
use crate::adapters::postgres::Database;
use crate::config::{ConfigError, DatabaseConfig, Env, QueueConfig, RateLimitConfig};

#[async_trait]
pub trait Probe: Send + Sync {
    /// `Err` carries detail for the logs only.
    async fn probe(&self) -> Result<(), String>;
}

struct Postgres(Database);

#[async_trait]
impl Probe for Postgres {
    async fn probe(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// The rate-limit table, read through the same direct client the requests use.
struct DynamoDb {
    client: DynamoHttp,
    table: String,
}

#[async_trait]
impl Probe for DynamoDb {
    async fn probe(&self) -> Result<(), String> {
        let request = GetItem {
            table_name: &self.table,
            key: serde_json::json!({"pk": {"S": "health#probe"}}),
            consistent_read: false,
        };
        self.client
            .call(&request)
            .await
            .map(|_| ())
            .map_err(|err| format!("{err:?}"))
    }
}

struct Sqs {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

#[async_trait]
impl Probe for Sqs {
    async fn probe(&self) -> Result<(), String> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
    }
}

/// The named probes, run concurrently, each within `timeout`. The route answers anyone, so a
/// report is reused for `cache_for` (`HEALTH_CACHE_MS`, default 5 s): however often it is
/// called, a container probes each dependency at most once per period, and callers arriving
/// while a probe runs wait for its report instead of starting their own.
pub struct Health {
    probes: Vec<(&'static str, Arc<dyn Probe>)>,
    timeout: Duration,
    cache_for: Duration,
    last: tokio::sync::Mutex<Option<(Instant, HealthReport)>>,
}

/// How long a health report is reused by default.
pub const DEFAULT_HEALTH_CACHE: Duration = Duration::from_secs(5);

impl Health {
    pub fn new(probes: Vec<(&'static str, Arc<dyn Probe>)>, timeout: Duration) -> Self {
        Self::cached(probes, timeout, DEFAULT_HEALTH_CACHE)
    }

    pub fn cached(probes: Vec<(&'static str, Arc<dyn Probe>)>, timeout: Duration, cache_for: Duration) -> Self {
        Self {
            probes,
            timeout,
            cache_for,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// PostgreSQL, DynamoDB (the rate-limit table) and SQS (the batch queue).
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let db = Database::connect(&DatabaseConfig::from_env(env)?)?;
        let rate = RateLimitConfig::from_env(env)?;
        let queue_url = QueueConfig::from_env(env)?.url;
        Ok(Self::cached(
            vec![
                ("postgres", Arc::new(Postgres(db))),
                (
                    "dynamodb",
                    Arc::new(DynamoDb {
                        client: DynamoHttp::new(aws, &rate.dynamodb)?,
                        table: rate.table_name,
                    }),
                ),
                (
                    "sqs",
                    Arc::new(Sqs {
                        client: aws_sdk_sqs::Client::new(aws),
                        queue_url,
                    }),
                ),
            ],
            env.millis_or("HEALTH_TIMEOUT_MS", 2000)?,
            env.millis_or("HEALTH_CACHE_MS", DEFAULT_HEALTH_CACHE.as_millis() as u64)?,
        ))
    }

    /// The last report while it is fresh, else a new one.
    pub async fn check(&self) -> HealthReport {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < self.cache_for
        {
            return report.clone();
        }
        let report = self.probe_all().await;
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn probe_all(&self) -> HealthReport {
        let runs: Vec<_> = self
            .probes
            .iter()
            .map(|(name, probe)| (*name, tokio::spawn(run_probe(name, probe.clone(), self.timeout))))
            .collect();
        let mut checks = Vec::with_capacity(runs.len());
        for (name, run) in runs {
            checks.push(run.await.unwrap_or(Check {
                name,
                up: false,
                latency_ms: 0.0,
            }));
        }
        HealthReport { checks }
    }
}

async fn run_probe(name: &'static str, probe: Arc<dyn Probe>, timeout: Duration) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, probe.probe())
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
    if let Err(detail) = &outcome {
        tracing::error!(dependency = name, error = %detail, "health probe failed");
    }
    Check {
        name,
        up: outcome.is_ok(),
        latency_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub up: bool,
    pub latency_ms: f64,
}

#[derive(Debug, Clone)]
pub struct HealthReport {
    pub checks: Vec<Check>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.up)
    }

    /// `{status, version, checks: {name: {status, latency_ms}}}` — no error detail.
    pub fn data(&self) -> Value {
        let checks: Map<String, Value> = self
            .checks
            .iter()
            .map(|c| {
                let status = if c.up { "up" } else { "down" };
                (c.name.to_owned(), json!({"status": status, "latency_ms": c.latency_ms}))
            })
            .collect();
        json!({
            "status": if self.healthy() { "healthy" } else { "unhealthy" },
            "version": env!("CARGO_PKG_VERSION"),
            "checks": checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(bool);

    #[async_trait]
    impl Probe for Fixed {
        async fn probe(&self) -> Result<(), String> {
            if self.0 {
                Ok(())
            } else {
                Err("secret detail: 10.0.0.5 refused".into())
            }
        }
    }

    struct Hangs;

    #[async_trait]
    impl Probe for Hangs {
        async fn probe(&self) -> Result<(), String> {
            std::future::pending().await
        }
    }

    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Probe for Counting {
        async fn probe(&self) -> Result<(), String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn callers_share_one_probe_per_period_so_the_route_cannot_load_the_database() {
        // GIVEN a health check whose reports last a minute
        let probe = Arc::new(Counting(Default::default()));
        let health = Arc::new(Health::cached(
            vec![("postgres", probe.clone())],
            Duration::from_secs(1),
            Duration::from_secs(60),
        ));
        // WHEN 200 callers ask, 100 of them at the same time
        let concurrent: Vec<_> = (0..100)
            .map(|_| {
                let health = health.clone();
                tokio::spawn(async move { health.check().await.healthy() })
            })
            .collect();
        for call in concurrent {
            assert!(call.await.unwrap());
        }
        for _ in 0..100 {
            assert!(health.check().await.healthy());
        }
        // THEN the database was probed once
        assert_eq!(probe.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stale_report_is_probed_again() {
        let probe = Arc::new(Counting(Default::default()));
        let health = Health::cached(
            vec![("postgres", probe.clone())],
            Duration::from_secs(1),
            Duration::ZERO,
        );
        health.check().await;
        health.check().await;
        assert_eq!(probe.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn all_up_is_healthy() {
        let health = Health::new(
            vec![("a", Arc::new(Fixed(true))), ("b", Arc::new(Fixed(true)))],
            Duration::from_secs(1),
        );
        let report = health.check().await;
        assert!(report.healthy());
        assert_eq!(report.data()["status"], "healthy");
        assert_eq!(report.data()["checks"]["b"]["status"], "up");
    }

    #[tokio::test]
    async fn one_down_or_hanging_is_unhealthy_without_detail() {
        let health = Health::new(
            vec![
                ("a", Arc::new(Fixed(true))),
                ("b", Arc::new(Fixed(false))),
                ("c", Arc::new(Hangs)),
            ],
            Duration::from_millis(50),
        );
        let report = health.check().await;
        assert!(!report.healthy());
        let data = report.data();
        assert_eq!(data["checks"]["b"]["status"], "down");
        assert_eq!(data["checks"]["c"]["status"], "down");
        assert!(!data.to_string().contains("10.0.0.5"));
    }
}
