//! Everything the functions share: one place for each rule.
//!
//! A function crate only parses its event, calls into this crate and maps the outcome to a
//! response; the modules below hold configuration, authentication, validation, sanitising,
//! rate limiting, storage and the response envelope.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod ratelimit;
pub mod response;
pub mod sanitize;
pub mod store;
pub mod telemetry;
pub mod validation;

pub use app::App;
pub use error::ApiError;
