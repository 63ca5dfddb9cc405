//! The rate-limit port: count one request of a caller against its own budget and its
//! organization's ceiling, and say whether it is admitted.

use async_trait::async_trait;

use crate::domain::ids::{Caller, OrgId};
use crate::domain::ratelimit::{Limits, RateStatus};

#[derive(Debug, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `caller` and says whether it is admitted: the caller's own budget
    /// is asked first, and only a request it admits is counted against the organization's.
    async fn check(&self, caller: &Caller) -> Result<RateStatus, StoreUnavailable>;

    /// The organization's limits when nothing else is known (for reporting on failures).
    fn default_limits(&self) -> Limits;

    /// The organization's batch-size override, as read by its last [`RateLimiter::check`]
    /// (no extra call).
    fn batch_size(&self, _org: &OrgId) -> Option<u64> {
        None
    }

    /// The organization's hook-content override (`hook_content`: `metrics` or `redacted`), as
    /// read by its last [`RateLimiter::check`] (no extra call).
    fn hook_content(&self, _org: &OrgId) -> Option<crate::domain::hooks::HookContent> {
        None
    }
}
