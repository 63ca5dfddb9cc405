//! Scheduled by EventBridge (hourly): for every organization of the registry, deletes the rows
//! older than its retention, kind by kind (see `shared::domain::lifecycle`), in chunks of
//! `RETENTION_CHUNK_ROWS` rows, each its own short statement, until `RETENTION_TIME_BUDGET_MS`
//! has passed; the next run resumes where the conditions still match. Organizations are taken
//! from a random starting point each run, so a large one cannot starve the others.
//!
//! An organization whose retention settings cannot be read is skipped (and logged), never
//! cleaned with defaults it may have overridden.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use shared::adapters::postgres::lifecycle::PgLifecycle;
use shared::app::settings::Settings;
use shared::config::{ConfigError, Env};
use shared::domain::ids::OrgId;
use shared::domain::lifecycle::{Expiring, Retention};
use shared::ports::lifecycle::{DataLifecycle, RetentionSettings, RetentionUnavailable};
use shared::ports::settings::SettingsSource;
use shared::ports::store::StoreError;

/// What this function builds once per container.
pub type State = RetentionJob;

/// Default time budget of one run: well inside the function's timeout (300 s), leaving room
/// for the last chunk's statement.
pub const DEFAULT_BUDGET_MS: u64 = 120_000;

pub struct RetentionJob {
    pub lifecycle: Arc<dyn DataLifecycle>,
    pub settings: Arc<dyn RetentionSettings>,
    pub budget: Duration,
}

/// Each organization's `data_retention` from its effective settings (the stage's defaults under
/// what the organization stored), through the settings' per-container cache.
pub struct OrganizationRetention(pub Arc<dyn SettingsSource>);

#[async_trait]
impl RetentionSettings for OrganizationRetention {
    async fn retention(&self, org: &OrgId) -> Result<Retention, RetentionUnavailable> {
        let effective = self
            .0
            .effective(org)
            .await
            .map_err(|err| RetentionUnavailable(err.to_string()))?;
        // Deleting cannot be undone: not with a stage value standing in for a broken field.
        if !effective.invalid.is_empty() {
            return Err(RetentionUnavailable(format!(
                "stored settings do not validate ({}); fix them to resume retention",
                effective.invalid.join(", ")
            )));
        }
        Ok(effective.settings.data_retention)
    }
}

/// The same retention for every organization (tests and the benchmark).
pub struct StageRetention(pub Retention);

#[async_trait]
impl RetentionSettings for StageRetention {
    async fn retention(&self, _org: &OrgId) -> Result<Retention, RetentionUnavailable> {
        Ok(self.0)
    }
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Report {
    pub organizations: usize,
    pub deleted: BTreeMap<Expiring, u64>,
    /// Organizations whose every expired row is gone.
    pub complete: Vec<OrgId>,
    /// Organizations left for the next run (the budget ran out).
    pub unfinished: Vec<OrgId>,
    /// Organizations whose retention could not be read: nothing deleted.
    pub skipped: Vec<OrgId>,
    /// Organizations whose deletion failed (logged).
    pub failed: Vec<OrgId>,
}

impl Report {
    pub fn to_json(&self, elapsed: Duration) -> Value {
        let names = |orgs: &[OrgId]| orgs.iter().map(|o| o.as_str().to_owned()).collect::<Vec<_>>();
        json!({
            "organizations": self.organizations,
            "deleted": self.deleted.iter().map(|(t, n)| (t.table(), *n)).collect::<BTreeMap<_, _>>(),
            "deleted_total": self.deleted.values().sum::<u64>(),
            "complete": self.unfinished.is_empty() && self.failed.is_empty() && self.skipped.is_empty(),
            "unfinished": names(&self.unfinished),
            "skipped": names(&self.skipped),
            "failed": names(&self.failed),
            "elapsed_ms": elapsed.as_millis() as u64,
        })
    }
}

impl RetentionJob {
    /// The database of `DATABASE_*` and the organizations' settings (their item in
    /// `RATE_LIMIT_TABLE_NAME`, over the stage's defaults).
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            lifecycle: Arc::new(PgLifecycle::from_env(env)?),
            settings: Arc::new(OrganizationRetention(Arc::new(Settings::from_env(env, aws)?))),
            budget: env.millis_or("RETENTION_TIME_BUDGET_MS", DEFAULT_BUDGET_MS)?,
        })
    }

    /// Handles one scheduled event. Failing to list the organizations fails the invocation (so
    /// it is retried); one organization's failure is logged and the others go on.
    pub async fn handle(&self, _event: LambdaEvent<Value>) -> Result<Value, Error> {
        let started = Instant::now();
        let report = self.run(Utc::now(), started + self.budget).await?;
        let result = report.to_json(started.elapsed());
        tracing::info!(%result, "retention ran");
        Ok(result)
    }

    pub async fn run(&self, now: DateTime<Utc>, deadline: Instant) -> Result<Report, StoreError> {
        let mut organizations = self.lifecycle.organizations().await?;
        let mut report = Report {
            organizations: organizations.len(),
            ..Report::default()
        };
        if !organizations.is_empty() {
            let start = (uuid::Uuid::new_v4().as_u128() % organizations.len() as u128) as usize;
            organizations.rotate_left(start);
        }
        for org in organizations {
            if Instant::now() >= deadline {
                report.unfinished.push(org);
                continue;
            }
            let retention = match self.settings.retention(&org).await {
                Ok(retention) => retention,
                Err(err) => {
                    tracing::warn!(org = %org, error = %err, "retention skipped: settings unreadable");
                    report.skipped.push(org);
                    continue;
                }
            };
            match self.lifecycle.delete_expired(&org, &retention, now, deadline).await {
                Ok(expired) => {
                    for (table, rows) in &expired.deleted {
                        *report.deleted.entry(*table).or_default() += rows;
                    }
                    let deleted: u64 = expired.deleted.values().sum();
                    tracing::info!(org = %org, deleted, complete = expired.complete, "retention pass");
                    if expired.complete {
                        report.complete.push(org);
                    } else {
                        report.unfinished.push(org);
                    }
                }
                Err(err) => {
                    tracing::error!(org = %org, error = %err, "retention pass failed");
                    report.failed.push(org);
                }
            }
        }
        Ok(report)
    }
}

impl shared::app::FromEnv for RetentionJob {
    fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        RetentionJob::from_env(env, aws)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use shared::fakes::lifecycle::{FixedRetention, InMemoryLifecycle};

    use super::*;

    const EVENT: &str = include_str!("../../../events/retention.json");

    fn org(id: &str) -> OrgId {
        OrgId::parse(id).unwrap()
    }

    fn job(lifecycle: InMemoryLifecycle, settings: FixedRetention) -> (RetentionJob, Arc<InMemoryLifecycle>) {
        shared::fakes::quiet_logs();
        let lifecycle = Arc::new(lifecycle);
        let job = RetentionJob {
            lifecycle: lifecycle.clone(),
            settings: Arc::new(settings),
            budget: Duration::from_secs(60),
        };
        (job, lifecycle)
    }

    #[tokio::test]
    async fn each_organization_is_cleaned_with_its_own_retention_and_unreadable_ones_are_skipped() {
        let short = Retention {
            command_executions_days: 7,
            ..Retention::default()
        };
        let settings = FixedRetention(HashMap::from([
            (org("acme"), short),
            (org("beta"), Retention::default()),
        ]));
        let (job, lifecycle) = job(
            InMemoryLifecycle::with(&[("acme", 3), ("beta", 4), ("gamma", 5)]),
            settings,
        );
        let event = LambdaEvent::new(serde_json::from_str(EVENT).unwrap(), lambda_runtime::Context::default());
        let result = job.handle(event).await.unwrap();
        assert_eq!(result["organizations"], 3);
        assert_eq!(result["deleted"]["command_executions"], 7, "{result}");
        assert_eq!(result["skipped"], json!(["gamma"]));
        assert_eq!(result["complete"], false, "an organization was skipped");
        let mut passes = lifecycle.passes.lock().unwrap().clone();
        passes.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        assert_eq!(passes, vec![(org("acme"), short), (org("beta"), Retention::default())]);
        assert_eq!(
            lifecycle.expired.lock().unwrap()[&org("gamma")],
            5,
            "nothing deleted by default"
        );
    }

    #[tokio::test]
    async fn a_spent_budget_leaves_organizations_for_the_next_run() {
        let settings = FixedRetention(HashMap::from([(org("acme"), Retention::default())]));
        let (job, lifecycle) = job(InMemoryLifecycle::with(&[("acme", 3)]), settings);
        let report = job.run(Utc::now(), Instant::now()).await.unwrap();
        assert_eq!(report.unfinished, vec![org("acme")]);
        assert_eq!(lifecycle.expired.lock().unwrap()[&org("acme")], 3);
        let report = job
            .run(Utc::now(), Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(report.complete, vec![org("acme")]);
        assert_eq!(report.deleted[&Expiring::CommandExecutions], 3);
    }

    #[tokio::test]
    async fn the_organizations_stored_retention_is_used_and_an_unreadable_store_skips_it() {
        use shared::domain::settings::OrganizationSettings;
        use shared::fakes::settings::InMemorySettings;
        let store = Arc::new(InMemorySettings::new());
        store.set(&org("acme"), json!({"data_retention": {"hook_events_days": 7}}));
        let settings = Settings::new(store, OrganizationSettings::default(), Duration::ZERO);
        let read = OrganizationRetention(Arc::new(settings))
            .retention(&org("acme"))
            .await
            .unwrap();
        assert_eq!(read.hook_events_days, 7);
        assert_eq!(
            read.command_executions_days,
            Retention::default().command_executions_days
        );

        // A stored field that does not validate: nothing is deleted for the organization.
        let broken = Arc::new(InMemorySettings::new());
        broken.set(
            &org("acme"),
            json!({"data_retention": {"hook_events_days": 3650, "otlp_days": 0}}),
        );
        let settings = Settings::new(broken, OrganizationSettings::default(), Duration::ZERO);
        let refused = OrganizationRetention(Arc::new(settings)).retention(&org("acme")).await;
        assert!(refused.is_err_and(|e| e.to_string().contains("data_retention.otlp_days")));

        let down = Settings::new(
            Arc::new(InMemorySettings::unavailable()),
            OrganizationSettings::default(),
            Duration::ZERO,
        );
        assert!(
            OrganizationRetention(Arc::new(down))
                .retention(&org("acme"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_database_outage_fails_the_invocation() {
        let (job, _) = job(InMemoryLifecycle::unavailable(), FixedRetention(HashMap::new()));
        let event = LambdaEvent::new(serde_json::from_str(EVENT).unwrap(), lambda_runtime::Context::default());
        assert!(job.handle(event).await.is_err());
    }
}
