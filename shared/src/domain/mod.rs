//! The domain: what a metric, a session, a batch, a hook event and a summary are, and the rules
//! that admit them (validation, sanitising, redaction, the rate limit's arithmetic).
//!
//! May import: std, serde/serde_json, chrono, uuid, regex and the other pure crates, and
//! `crate::domain` itself. Never HTTP (`crate::http`, `lambda_http`), storage or AWS
//! (`crate::adapters`, `tokio_postgres`, `aws_*`), nor the ports: the domain has its own error
//! types, and the layers above map them.

pub mod alerts;
pub mod api_keys;
pub mod batch;
pub mod hooks;
pub mod identified;
pub mod ids;
pub mod kind;
pub mod lifecycle;
pub mod live;
pub mod metrics;
pub mod otlp;
pub mod ratelimit;
pub mod redact;
pub mod sanitize;
pub mod sessions;
pub mod settings;
pub mod summary;
pub mod usage;
pub mod validation;
pub mod webhook;
