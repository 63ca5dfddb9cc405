//! `GET /api/v1/health`: whether PostgreSQL, DynamoDB and SQS answer; 200 when all do, else 503.
//! No authentication, no rate limit, and no error detail in the body (it goes to the logs).

use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::app::health::Health;
use shared::http::api::request_id;
use shared::http::response::Reply;

/// What this function builds once per container.
pub type State = Health;

pub async fn handle(health: &Health, req: Request) -> Result<Response<Body>, Error> {
    let reply = Reply::start(request_id(&req));
    let report = health.check().await;
    let response = if report.healthy() {
        reply.report(StatusCode::OK, true, None, &report.data())
    } else {
        reply.report(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            Some("Service unhealthy"),
            &report.data(),
        )
    };
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = reply.elapsed_ms(),
        "health checked"
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use shared::app::health::Probe;

    use super::*;

    const EVENT: &str = include_str!("../../../events/health.json");

    struct Fixed(bool);

    #[async_trait::async_trait]
    impl Probe for Fixed {
        async fn probe(&self) -> Result<(), String> {
            if self.0 { Ok(()) } else { Err("down".into()) }
        }
    }

    fn health(sqs_up: bool) -> Health {
        Health::new(
            vec![
                ("postgres", Arc::new(Fixed(true))),
                ("dynamodb", Arc::new(Fixed(true))),
                ("sqs", Arc::new(Fixed(sqs_up))),
            ],
            Duration::from_secs(1),
        )
    }

    async fn call(health: &Health) -> (u16, serde_json::Value) {
        let response = handle(health, lambda_http::request::from_str(EVENT).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_slice(response.body().as_ref()).unwrap())
    }

    #[tokio::test]
    async fn all_dependencies_up_is_200() {
        let (status, body) = call(&health(true)).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["status"], "healthy");
        assert_eq!(body["data"]["checks"]["postgres"]["status"], "up");
        assert!(body["performance"]["processing_latency_ms"].is_number());
    }

    #[tokio::test]
    async fn a_dependency_down_is_503_naming_it() {
        let (status, body) = call(&health(false)).await;
        assert_eq!(status, 503);
        assert_eq!(body["success"], false);
        assert_eq!(body["data"]["checks"]["sqs"]["status"], "down");
        assert_eq!(body["data"]["checks"]["dynamodb"]["status"], "up");
    }
}
