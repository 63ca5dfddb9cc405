//! `POST /api/v1/metrics/batch`: validates a whole batch the way the single endpoints do (every
//! error located), assigns every metric an id, and queues ONE SQS message with the batch envelope;
//! answers 202 with the batch id and counts per kind. Nothing is acknowledged that was not queued.
//! The organization's settings govern it: at most `performance.batch_size_limit` metrics per
//! batch (400 naming the limit), and at most `performance.concurrent_requests` batches in flight
//! (429 with `scope: batches_in_flight` until the worker has written one).

use std::sync::Arc;

use aws_config::SdkConfig;
use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::adapters::sqs::SqsQueue;
use shared::app::FromEnv;
use shared::app::in_flight::InFlight;
use shared::config::{BatchConfig, ConfigError, Env, QueueConfig};
use shared::domain::batch::{Envelope, Metrics, Source};
use shared::http::api::Api;
use shared::ports::queue::BatchQueue;

pub const ROUTE: &str = "POST /api/v1/metrics/batch";

/// What this function builds once per container.
pub type State = BatchApp;

pub struct BatchApp {
    pub api: Api,
    pub queue: Arc<dyn BatchQueue>,
    pub in_flight: InFlight,
}

impl FromEnv for BatchApp {
    const API_KEYS: shared::app::KeyAccess = shared::app::KeyAccess::Read;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let batch = BatchConfig::from_env(env)?;
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(aws),
            QueueConfig::from_env(env)?.url,
            batch.queue_timeout,
        );
        Ok(Self {
            api: shared::app::api_from_env(env, aws)?.without_deadline(),
            queue: Arc::new(queue),
            in_flight: InFlight::from_env(env, aws)?,
        })
    }
}

pub async fn handle(app: &BatchApp, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::ACCEPTED, async |caller, body| {
            let performance = app.api.settings_of(&caller.org).performance;
            let metrics = Metrics::from_request(&body, performance.batch_size_limit as usize)?;
            let envelope = Envelope::new(&caller, Source::Api, metrics);
            let message = envelope.to_message()?;
            app.in_flight.admit(&envelope, performance.concurrent_requests).await?;
            if let Err(err) = app.queue.send(&envelope, &message).await {
                // Not queued, so not in flight.
                app.in_flight.release(&envelope).await;
                return Err(err.into());
            }
            Ok(envelope.accepted())
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use shared::config::OnStoreError;
    use shared::domain::batch::Envelope;
    use shared::domain::ids::OrgId;
    use shared::fakes::batch_slots::InMemoryBatchSlots;
    use shared::fakes::queue::InMemoryQueue;
    use shared::fakes::rate_limit::InMemoryRateLimiter;
    use shared::fakes::store::InMemoryStore;
    use shared::fakes::{error_fields, fixture, given, limits, parts, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/batch.json");

    fn in_flight() -> InFlight {
        InFlight::new(Arc::new(InMemoryBatchSlots::new()), std::time::Duration::from_secs(300))
    }

    #[tokio::test]
    async fn at_most_the_organizations_concurrent_batches_are_in_flight() {
        // GIVEN acme allows two batches in flight
        let given = given(
            InMemoryStore::new(),
            InMemoryRateLimiter::new(limits(1000)),
            OnStoreError::Allow,
        );
        given.settings.set(
            &OrgId::parse("acme").unwrap(),
            json!({"performance": {"concurrent_requests": 2}}),
        );
        let slots = Arc::new(InMemoryBatchSlots::new());
        let app = BatchApp {
            api: given.app.api,
            queue: Arc::new(InMemoryQueue::new()),
            in_flight: InFlight::new(slots.clone(), std::time::Duration::from_secs(300)),
        };
        let body = json!({"command_executions": [command()]});
        // WHEN it sends three before the worker has written any
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let (status, answer) = parts(handle(&app, request(EVENT, "acme", "alice", &body)).await.unwrap());
            statuses.push((status, answer));
        }
        // THEN the third is refused, saying why and when to retry, and holds no slot
        assert_eq!(statuses[0].0, 202);
        assert_eq!(statuses[1].0, 202);
        let (status, refused) = &statuses[2];
        assert_eq!(*status, 429, "{refused}");
        assert_eq!(refused["rate_limit"]["scope"], "batches_in_flight");
        assert_eq!(refused["rate_limit"]["limit"], 2);
        assert!(refused["message"].as_str().unwrap().contains("concurrent_requests"));
        assert_eq!(slots.held(&OrgId::parse("acme").unwrap()).len(), 2);
        // and another organization is not held back
        assert_eq!(
            parts(handle(&app, request(EVENT, "globex", "bob", &body)).await.unwrap()).0,
            202
        );
    }

    fn app(queue: InMemoryQueue, limiter: InMemoryRateLimiter) -> (BatchApp, Arc<InMemoryQueue>) {
        let queue = Arc::new(queue);
        let api = given(InMemoryStore::new(), limiter, OnStoreError::Allow).app.api;
        (
            BatchApp {
                api,
                queue: queue.clone(),
                in_flight: in_flight(),
            },
            queue,
        )
    }

    fn working() -> (BatchApp, Arc<InMemoryQueue>) {
        app(InMemoryQueue::new(), InMemoryRateLimiter::new(limits(1000)))
    }

    fn command() -> Value {
        json!({"command_name": "build", "execution_time_ms": 10, "status": "success"})
    }

    #[tokio::test]
    async fn the_specification_example_is_queued_as_one_envelope() {
        let (app, queue) = working();
        let (status, body) = parts(handle(&app, fixture(EVENT)).await.unwrap());
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["data"]["command_executions"], 1);
        assert_eq!(body["data"]["agent_interactions"], 1);
        assert_eq!(body["data"]["user_sessions"], 0);
        assert_eq!(body["data"]["productivity_metrics"], 1);
        let messages = queue.messages();
        assert_eq!(messages.len(), 1);
        let envelope = Envelope::parse(&messages[0]).unwrap();
        assert_eq!(envelope.organization_id.as_str(), "demo", "organization from the token");
        assert_eq!(envelope.user_id.as_str(), "dev-user");
        assert_eq!(body["data"]["batch_id"], envelope.batch_id.to_string());
        assert_eq!(
            body["data"]["ids"]["command_executions"][0],
            envelope.metrics.command_executions[0].id.unwrap().to_string()
        );
    }

    #[tokio::test]
    async fn errors_are_located_and_nothing_is_queued() {
        let (app, queue) = working();
        let mut bad = command();
        bad["status"] = json!("exploded");
        let body = json!({"command_executions": [command(), command(), command(), bad]});
        let (status, body) = parts(handle(&app, request(EVENT, "acme", "alice", &body)).await.unwrap());
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["command_executions[3].status"]);
        assert!(queue.messages().is_empty());
    }

    #[tokio::test]
    async fn the_batch_size_is_enforced_with_an_organizations_override() {
        let given = given(
            InMemoryStore::new(),
            InMemoryRateLimiter::new(limits(1000)),
            OnStoreError::Allow,
        );
        given.settings.set(
            &OrgId::parse("big").unwrap(),
            json!({"performance": {"batch_size_limit": 30}}),
        );
        let queue = Arc::new(InMemoryQueue::new());
        let app = BatchApp {
            api: given.app.api,
            queue: queue.clone(),
            in_flight: in_flight(),
        };
        let body = json!({"command_executions": vec![command(); 25]});
        let (status, refused) = parts(handle(&app, request(EVENT, "acme", "alice", &body)).await.unwrap());
        assert_eq!(status, 400);
        assert!(refused["errors"][0]["message"].as_str().unwrap().contains("at most 20"));
        let (status, _) = parts(handle(&app, request(EVENT, "big", "alice", &body)).await.unwrap());
        assert_eq!(status, 202);
        assert_eq!(queue.messages().len(), 1);
    }

    #[tokio::test]
    async fn a_queue_outage_is_503_and_nothing_is_acknowledged() {
        let (app, _) = app(InMemoryQueue::unavailable(), InMemoryRateLimiter::new(limits(10)));
        let (status, body) = parts(handle(&app, fixture(EVENT)).await.unwrap());
        assert_eq!(status, 503);
        assert_eq!(body["message"], "Queue temporarily unavailable");
        assert_eq!(body["retry_after"], 30);
    }

    #[tokio::test]
    async fn client_ids_are_kept() {
        let (app, queue) = working();
        let mut metric = command();
        metric["id"] = json!("0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e");
        let body = json!({"command_executions": [metric]});
        let (status, _) = parts(handle(&app, request(EVENT, "acme", "alice", &body)).await.unwrap());
        assert_eq!(status, 202);
        let envelope = Envelope::parse(&queue.messages()[0]).unwrap();
        assert_eq!(
            envelope.metrics.command_executions[0].id.unwrap().to_string(),
            "0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e"
        );
    }
}
