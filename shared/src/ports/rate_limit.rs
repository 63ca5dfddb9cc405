//! The rate-limit port: count one request of a caller against its own budget and its
//! organization's ceiling, and say whether it is admitted.

use async_trait::async_trait;

use crate::domain::ids::Caller;
use crate::domain::ratelimit::{Budgets, RateStatus};

#[derive(Debug, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `caller` against `budgets` (its organization's, from its
    /// settings) and says whether it is admitted: the caller's own budget is asked first, and
    /// only a request it admits is counted against the organization's.
    async fn check_within(&self, caller: &Caller, budgets: &Budgets) -> Result<RateStatus, StoreUnavailable>;

    /// The stage's budgets, for when nothing else is known (and for reporting on failures).
    fn default_budgets(&self) -> Budgets;

    /// [`RateLimiter::check_within`] the stage's budgets.
    async fn check(&self, caller: &Caller) -> Result<RateStatus, StoreUnavailable> {
        self.check_within(caller, &self.default_budgets()).await
    }
}
