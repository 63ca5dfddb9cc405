//! HTTP: the request pipeline every authenticated route shares (authenticate, rate-limit, read,
//! work, respond, log), token and API-key checks, the response envelope, and the one error type
//! of the API with every `From<…> for ApiError` (the status code and public message of each
//! failure).
//!
//! May import: `crate::domain`, `crate::ports`, `crate::config`, `crate::telemetry`,
//! `lambda_http`. Adapters only where a port is built from configuration (`Api::from_env`).

pub mod api;
pub mod api_keys;
pub mod auth;
pub mod error;
pub mod json;
pub mod jwks;
pub mod otlp;
pub mod response;
pub mod verified_tokens;
