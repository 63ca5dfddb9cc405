//! `POST /api/v1/metrics/batch`: validates a whole batch the way the single endpoints do (every
//! error located), assigns every metric an id, and queues ONE SQS message with the batch envelope;
//! answers 202 with the batch id and counts per kind. Nothing is acknowledged that was not queued.

use std::sync::Arc;

use aws_config::SdkConfig;
use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::adapters::sqs::SqsQueue;
use shared::app::FromEnv;
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
            api: shared::app::api_from_env(env, aws)?,
            queue: Arc::new(queue),
        })
    }
}

pub async fn handle(app: &BatchApp, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::ACCEPTED, async |caller, body| {
            let max = app.api.settings_of(&caller.org).performance.batch_size_limit as usize;
            let envelope = Envelope::new(&caller, Source::Api, Metrics::from_request(&body, max)?);
            let message = envelope.to_message()?;
            app.queue.send(&envelope, &message).await?;
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
    use shared::fakes::queue::InMemoryQueue;
    use shared::fakes::rate_limit::InMemoryRateLimiter;
    use shared::fakes::store::InMemoryStore;
    use shared::fakes::{error_fields, fixture, given, limits, parts, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/batch.json");

    fn app(queue: InMemoryQueue, limiter: InMemoryRateLimiter) -> (BatchApp, Arc<InMemoryQueue>) {
        let queue = Arc::new(queue);
        let api = given(InMemoryStore::new(), limiter, OnStoreError::Allow).app.api;
        (
            BatchApp {
                api,
                queue: queue.clone(),
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
