//! DynamoDB through a direct client (`client`): the rate limiter's bucket and overrides, the
//! live connections table, and the API keys table.

pub mod api_keys;
pub mod batch_slots;
pub mod client;
pub mod connections;
pub mod rate_limiter;
pub mod settings;

pub use rate_limiter::DynamoRateLimiter;
