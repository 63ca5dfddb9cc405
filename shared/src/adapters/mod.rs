//! Adapters: the ports implemented on real services — PostgreSQL, DynamoDB, SQS, API Gateway's
//! management API, Secrets Manager — and what they share (request signing, TLS).
//!
//! May import: `crate::domain`, `crate::ports`, `crate::config`, `crate::telemetry`, and the
//! service clients. Never `crate::http` or `crate::app`.

pub mod dynamodb;
pub mod management_api;
pub mod postgres;
pub mod secrets;
pub mod signing;
pub mod sqs;
pub mod tls;
pub mod webhook;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// The AWS SDK configuration, shared by every client of a container. Endpoints come from the
/// SDK's own `AWS_ENDPOINT_URL*` variables, so the same binary talks to local emulators.
/// One retry at most: a request has a latency budget, and the rate limiter a failure policy.
pub async fn aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        // Calls are small and bounded by our own timeouts; the per-body stall watchdog only
        // costs CPU on every request.
        .stalled_stream_protection(aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled())
        .load()
        .await
}
