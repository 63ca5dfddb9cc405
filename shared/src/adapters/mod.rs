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
