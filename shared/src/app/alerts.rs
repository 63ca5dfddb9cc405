//! The alert run (the scheduled `alerts` function): for each organization with a webhook,
//! evaluate its last five minutes from the aggregates (one transaction each, in the adapter),
//! then deliver what is owed, each organization's deliveries concurrently so one slow webhook
//! does not hold up the others. A delivery that fails stays owed; the next run sends it again.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::{ConfigError, Env};
use crate::domain::alerts::{AlertRules, AlertState, Notice, WINDOW_SECONDS};
use crate::domain::ids::OrgId;
use crate::ports::alerts::{AlertStore, DeliveryError, WebhookSender};
use crate::ports::settings::SettingsSource;
use crate::ports::store::StoreError;

/// What an organization's alerts need from its settings. (Its `Debug` never shows the secret.)
#[derive(Clone, PartialEq)]
pub struct AlertTarget {
    /// Percent.
    pub high_error_rate_threshold: f64,
    pub slow_response_threshold_ms: f64,
    pub webhook_url: String,
    /// The organization's signing secret (`whsec_…`).
    pub secret: String,
}

impl std::fmt::Debug for AlertTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertTarget")
            .field("high_error_rate_threshold", &self.high_error_rate_threshold)
            .field("slow_response_threshold_ms", &self.slow_response_threshold_ms)
            .field("webhook_url", &self.webhook_url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Where each organization's alert settings come from.
#[async_trait]
pub trait AlertTargets: Send + Sync {
    /// The organization's target; `Ok(None)` when it has no webhook (it is not evaluated);
    /// `Err` when its settings cannot be read (it is skipped this run, and logged).
    async fn target(&self, org: &OrgId) -> Result<Option<AlertTarget>, String>;
}

/// The stage's alert settings: `ALERT_MIN_SAMPLES` (20), the fewest metrics in a window that
/// can fire or resolve an alert.
#[derive(Debug, Clone, Copy)]
pub struct AlertsConfig {
    pub min_samples: i64,
    pub window: Duration,
    /// How long a run holds the messages it claimed before another run may send them.
    pub hold: Duration,
    /// How long a run evaluates before it leaves the remaining organizations to the next run
    /// (`ALERT_EVALUATION_BUDGET_MS`, 30 s); each run starts at another organization, so none is
    /// always the one left out.
    pub evaluation_budget: std::time::Duration,
}

impl AlertsConfig {
    pub fn from_env(env: &Env, webhook: &crate::adapters::webhook::WebhookConfig) -> Result<Self, ConfigError> {
        let min_samples = env.number_or("ALERT_MIN_SAMPLES", 20, 1)?;
        // Every attempt's timeout and backoff, and a margin.
        let sending = (webhook.timeout + webhook.backoff) * webhook.attempts * 2;
        Ok(Self {
            min_samples: i64::try_from(min_samples).unwrap_or(i64::MAX),
            window: Duration::seconds(WINDOW_SECONDS),
            hold: Duration::from_std(sending).unwrap_or(Duration::minutes(2)) + Duration::seconds(10),
            evaluation_budget: env.millis_or("ALERT_EVALUATION_BUDGET_MS", 30_000)?,
        })
    }
}

/// What a run did (the function's result, and its log line).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub organizations: u32,
    pub evaluated: u32,
    pub without_webhook: u32,
    pub settings_unreadable: u32,
    pub evaluation_errors: u32,
    pub firing_sent: u32,
    pub resolved_sent: u32,
    pub deliveries_failed: u32,
    pub deliveries_refused: u32,
    /// Organizations left to the next run when the evaluation budget was spent.
    pub unfinished: u32,
}

pub struct Alerts {
    pub store: Arc<dyn AlertStore>,
    pub targets: Arc<dyn AlertTargets>,
    pub sender: Arc<dyn WebhookSender>,
    pub config: AlertsConfig,
}

/// One message to deliver.
struct Owed {
    org: OrgId,
    url: String,
    secret: String,
    notice: Notice,
}

impl Alerts {
    /// One run at `now`. Only an unreadable organization list fails the run (the scheduler
    /// retries it); one organization's failure is logged and the others go on.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<RunReport, StoreError> {
        let mut report = RunReport::default();
        let mut owed = Vec::new();
        let mut organizations = self.store.organizations().await?;
        if !organizations.is_empty() {
            let start = (now.timestamp().unsigned_abs() / 60) as usize % organizations.len();
            organizations.rotate_left(start);
        }
        let started = std::time::Instant::now();
        for org in organizations {
            report.organizations += 1;
            if started.elapsed() > self.config.evaluation_budget {
                report.unfinished += 1;
                continue;
            }
            let target = match self.targets.target(&org).await {
                Ok(Some(target)) => target,
                Ok(None) => {
                    report.without_webhook += 1;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(org = %org, error, "organization settings unreadable; alerts skipped this run");
                    report.settings_unreadable += 1;
                    continue;
                }
            };
            let rules = AlertRules {
                high_error_rate_threshold: target.high_error_rate_threshold,
                slow_response_threshold_ms: target.slow_response_threshold_ms,
                min_samples: self.config.min_samples,
            };
            match self
                .store
                .evaluate(&org, &rules, now, self.config.window, self.config.hold)
                .await
            {
                Ok(evaluation) => {
                    report.evaluated += 1;
                    owed.extend(evaluation.claimed.into_iter().map(|notice| Owed {
                        org: org.clone(),
                        url: target.webhook_url.clone(),
                        secret: target.secret.clone(),
                        notice,
                    }));
                }
                Err(error) => {
                    tracing::error!(org = %org, error = %error, "alert evaluation failed");
                    report.evaluation_errors += 1;
                }
            }
        }
        let mut deliveries = tokio::task::JoinSet::new();
        for owed in owed {
            let (store, sender) = (self.store.clone(), self.sender.clone());
            deliveries.spawn(async move { deliver(store.as_ref(), sender.as_ref(), owed).await });
        }
        while let Some(done) = deliveries.join_next().await {
            match done {
                Ok(Ok(AlertState::Firing)) => report.firing_sent += 1,
                Ok(Ok(AlertState::Resolved)) => report.resolved_sent += 1,
                Ok(Err(DeliveryError::Refused(_))) => report.deliveries_refused += 1,
                Ok(Err(DeliveryError::Failed { .. })) | Err(_) => report.deliveries_failed += 1,
            }
        }
        Ok(report)
    }
}

/// Sends one owed message and records the outcome; a failure to record a delivery leaves the
/// message owed (it may then be sent again: at least once, never lost).
async fn deliver(store: &dyn AlertStore, sender: &dyn WebhookSender, owed: Owed) -> Result<AlertState, DeliveryError> {
    let Owed {
        org,
        url,
        secret,
        notice,
    } = owed;
    let body = serde_json::to_vec(&notice.message(org.as_str())).unwrap_or_default();
    let condition = notice.condition.as_str();
    let state = notice.state.as_str();
    match sender.send(&url, &secret, &body).await {
        Ok(attempts) => {
            tracing::info!(org = %org, condition, state, attempts, "alert delivered");
            if let Err(error) = store.delivered(&org, &notice, Utc::now()).await {
                tracing::error!(org = %org, condition, error = %error, "delivered alert not recorded; it may be sent again");
            }
            Ok(notice.state)
        }
        Err(error) => {
            tracing::warn!(org = %org, condition, state, error = %error, "alert not delivered; the next run retries");
            if let Err(store_error) = store.delivery_failed(&org, &notice, &error.to_string()).await {
                tracing::error!(org = %org, condition, error = %store_error, "failed delivery not recorded");
            }
            Err(error)
        }
    }
}

/// Alert targets from the organizations' settings (`alerts.*` and the webhook's secret).
pub struct SettingsTargets(pub Arc<dyn SettingsSource>);

#[async_trait]
impl AlertTargets for SettingsTargets {
    async fn target(&self, org: &OrgId) -> Result<Option<AlertTarget>, String> {
        let effective = self.0.effective(org).await.map_err(|e| e.to_string())?;
        let alerts = effective.settings.alerts;
        let Some(webhook_url) = alerts.webhook_url else {
            return Ok(None);
        };
        // The secret is made with the URL; a URL without one cannot be signed for.
        let secret = effective
            .webhook_secret
            .ok_or_else(|| "the webhook has no signing secret".to_owned())?;
        Ok(Some(AlertTarget {
            high_error_rate_threshold: alerts.high_error_rate_threshold,
            slow_response_threshold_ms: alerts.slow_response_threshold_ms,
            webhook_url,
            secret,
        }))
    }
}

/// The scheduled function's state: the PostgreSQL alert store, the settings, the webhook sender.
impl crate::app::FromEnv for Alerts {
    fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let webhook = crate::adapters::webhook::WebhookConfig::from_env(env)?;
        Ok(Self {
            store: Arc::new(crate::adapters::postgres::alerts::PgAlerts::from_env(env)?),
            targets: Arc::new(SettingsTargets(Arc::new(crate::app::settings::Settings::from_env(
                env, aws,
            )?))),
            sender: Arc::new(crate::adapters::webhook::HttpWebhooks::new(
                webhook,
                Arc::new(crate::adapters::webhook::SystemDns),
            )?),
            config: AlertsConfig::from_env(env, &webhook)?,
        })
    }
}
