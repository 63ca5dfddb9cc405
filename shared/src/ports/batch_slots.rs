//! The batch-slots port: at most N batches of an organization in flight (accepted by the batch
//! route, not yet written by the worker) at once — the settings' `performance.concurrent_requests`.
//! A slot is held until the worker releases it, or until its hold expires (a worker that died, a
//! message dead-lettered by the queue), so a lost release never locks an organization out.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::ids::OrgId;

#[derive(Debug, thiserror::Error)]
#[error("batch slots unavailable: {0}")]
pub struct SlotsUnavailable(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Taken,
    /// All `most` slots are held; the first frees itself (expires) after `retry_after` at the latest.
    Full {
        retry_after: Duration,
    },
}

#[async_trait]
pub trait BatchSlots: Send + Sync {
    /// Takes a slot for `batch` if fewer than `most` unexpired ones are held, holding it until
    /// `now_ms + hold` unless released before. Never more than `most` are held at once, however
    /// many callers race.
    async fn take(
        &self,
        org: &OrgId,
        batch: Uuid,
        most: u64,
        now_ms: i64,
        hold: Duration,
    ) -> Result<Slot, SlotsUnavailable>;

    /// Frees `batch`'s slot (nothing when it holds none).
    async fn release(&self, org: &OrgId, batch: Uuid) -> Result<(), SlotsUnavailable>;
}
