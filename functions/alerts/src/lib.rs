//! Scheduled by EventBridge every minute: for each organization with a `webhook_url`, reads the
//! last five minutes from the rolling aggregates (never raw rows) and posts a signed message to
//! the webhook when the error rate exceeds `high_error_rate_threshold` or the p95 latency
//! exceeds `slow_response_threshold_ms`, once per change, and "resolved" when it ends
//! (see `shared::app::alerts` and docs/operations.md, "Alerts").

use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use shared::app::alerts::Alerts;

/// What this function builds once per container.
pub type State = Alerts;

/// One scheduled run. Only an unreadable organization list fails the invocation (EventBridge
/// retries it); each organization's own failure is logged and counted in the result.
pub async fn handle(state: &State, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let report = state.run(chrono::Utc::now()).await?;
    tracing::info!(report = %serde_json::to_string(&report)?, "alerts ran");
    Ok(serde_json::to_value(report)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use chrono::{DateTime, Duration, Utc};
    use shared::app::alerts::{AlertTarget, AlertTargets, AlertsConfig};
    use shared::domain::alerts::{AlertRules, Notice};
    use shared::domain::ids::OrgId;
    use shared::ports::alerts::{AlertStore, DeliveryError, Evaluation, WebhookSender};
    use shared::ports::store::StoreError;

    use super::*;

    const EVENT: &str = include_str!("../../../events/alerts.json");

    /// An alert store that lists these organizations (`None`: the database is down), none of
    /// which has a webhook, so nothing is ever evaluated or delivered.
    struct Listing(Option<&'static [&'static str]>);

    #[async_trait]
    impl AlertStore for Listing {
        async fn organizations(&self) -> Result<Vec<OrgId>, StoreError> {
            let orgs = self.0.ok_or_else(|| StoreError::Unavailable("down".into()))?;
            Ok(orgs.iter().map(|o| OrgId::parse(o).unwrap()).collect())
        }
        async fn evaluate(
            &self,
            _: &OrgId,
            _: &AlertRules,
            _: DateTime<Utc>,
            _: Duration,
            _: Duration,
        ) -> Result<Evaluation, StoreError> {
            unreachable!("no organization has a webhook")
        }
        async fn delivered(&self, _: &OrgId, _: &Notice, _: DateTime<Utc>) -> Result<(), StoreError> {
            unreachable!("nothing is delivered")
        }
        async fn delivery_failed(&self, _: &OrgId, _: &Notice, _: &str) -> Result<(), StoreError> {
            unreachable!("nothing is delivered")
        }
    }

    struct NoTargets;

    #[async_trait]
    impl AlertTargets for NoTargets {
        async fn target(&self, _: &OrgId) -> Result<Option<AlertTarget>, String> {
            Ok(None)
        }
    }

    struct NoSend;

    #[async_trait]
    impl WebhookSender for NoSend {
        async fn send(&self, _: &str, _: &str, _: &[u8]) -> Result<u32, DeliveryError> {
            unreachable!("nothing is owed")
        }
    }

    #[tokio::test]
    async fn a_database_outage_fails_the_invocation() {
        shared::fakes::quiet_logs();
        let state = Alerts {
            store: Arc::new(Listing(None)),
            targets: Arc::new(NoTargets),
            sender: Arc::new(NoSend),
            config: AlertsConfig {
                min_samples: 20,
                window: Duration::minutes(5),
                hold: Duration::minutes(1),
                evaluation_budget: std::time::Duration::from_secs(30),
            },
        };
        let event = LambdaEvent::new(serde_json::from_str(EVENT).unwrap(), lambda_runtime::Context::default());
        assert!(handle(&state, event).await.is_err());
    }

    #[tokio::test]
    async fn a_spent_evaluation_budget_leaves_the_rest_to_the_next_run() {
        shared::fakes::quiet_logs();
        let run = |budget| Alerts {
            store: Arc::new(Listing(Some(&["a", "b", "c"]))),
            targets: Arc::new(NoTargets),
            sender: Arc::new(NoSend),
            config: AlertsConfig {
                min_samples: 20,
                window: Duration::minutes(5),
                hold: Duration::minutes(1),
                evaluation_budget: budget,
            },
        };
        let all = run(std::time::Duration::from_secs(30)).run(Utc::now()).await.unwrap();
        assert_eq!((all.organizations, all.without_webhook, all.unfinished), (3, 3, 0));
        let none = run(std::time::Duration::ZERO).run(Utc::now()).await.unwrap();
        assert_eq!((none.organizations, none.without_webhook, none.unfinished), (3, 0, 3));
    }
}
