//! The rate-limit port: count one request of an organization and say whether it is admitted.

use async_trait::async_trait;

use crate::domain::ids::OrgId;
use crate::domain::ratelimit::{Limits, RateStatus};

#[derive(Debug, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `org` and says whether it is admitted.
    async fn check(&self, org: &OrgId) -> Result<RateStatus, StoreUnavailable>;

    /// The limits that apply to `org` when nothing else is known (for reporting on failures).
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
