//! The rate-limit port: count one request of a caller against its own budget and its
//! organization's ceiling, and say whether it is admitted.

use async_trait::async_trait;

use crate::domain::ids::Caller;
use crate::domain::ratelimit::{Budgets, RateStatus, now_us};

#[derive(Debug, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `caller` at `now_us` (microseconds since the epoch) against
    /// `budgets` (its organization's, from its settings) and says whether it is admitted: the
    /// caller's own budget is asked first, and only a request it admits is counted against the
    /// organization's. Tests and benchmarks pass their own clock; the routes use
    /// [`RateLimiter::check_within`].
    async fn check_at(&self, caller: &Caller, budgets: &Budgets, now_us: i64) -> Result<RateStatus, StoreUnavailable>;

    /// [`RateLimiter::check_at`] now.
    async fn check_within(&self, caller: &Caller, budgets: &Budgets) -> Result<RateStatus, StoreUnavailable> {
        self.check_at(caller, budgets, now_us()).await
    }

    /// The stage's budgets, for when nothing else is known (and for reporting on failures).
    fn default_budgets(&self) -> Budgets;

    /// [`RateLimiter::check_within`] the stage's budgets.
    async fn check(&self, caller: &Caller) -> Result<RateStatus, StoreUnavailable> {
        self.check_within(caller, &self.default_budgets()).await
    }
}
