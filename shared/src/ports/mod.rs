//! Ports: one small trait per capability the functions need — store metrics, limit a rate, queue
//! a batch, keep connections, push a message, keep API keys, keep settings. Handlers depend on these; adapters
//! and fakes implement them.
//!
//! May import: `crate::domain` only (and `async_trait`, `thiserror`).

pub mod alerts;
pub mod api_keys;
pub mod batch_slots;
pub mod lifecycle;
pub mod live;
pub mod queue;
pub mod rate_limit;
pub mod settings;
pub mod store;
