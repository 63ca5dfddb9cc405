//! DynamoDB through a direct client (`client`): the rate limiter's bucket and overrides, and the
//! live connections table.

pub mod client;
pub mod connections;
pub mod rate_limiter;

pub use rate_limiter::DynamoRateLimiter;
