//! Batch slots kept in this process; for unit tests of the batch route and the worker. Passes
//! the same slots contract as the DynamoDB item.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::ids::OrgId;
use crate::lock;
use crate::ports::batch_slots::{BatchSlots, Slot, SlotsUnavailable};

#[derive(Default)]
pub struct InMemoryBatchSlots {
    held: Mutex<HashMap<OrgId, HashMap<Uuid, i64>>>,
}

impl InMemoryBatchSlots {
    pub fn new() -> Self {
        Self::default()
    }

    /// The batches `org` holds slots for, expired ones included.
    pub fn held(&self, org: &OrgId) -> Vec<Uuid> {
        lock(&self.held)
            .get(org)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl BatchSlots for InMemoryBatchSlots {
    async fn take(
        &self,
        org: &OrgId,
        batch: Uuid,
        most: u64,
        now_ms: i64,
        hold: Duration,
    ) -> Result<Slot, SlotsUnavailable> {
        let mut held = lock(&self.held);
        let slots = held.entry(org.clone()).or_default();
        slots.retain(|_, until| *until > now_ms);
        if slots.len() as u64 >= most && !slots.contains_key(&batch) {
            let first_free = slots.values().min().copied().unwrap_or(now_ms);
            return Ok(Slot::Full {
                retry_after: Duration::from_millis((first_free - now_ms).max(0) as u64),
            });
        }
        slots.insert(batch, now_ms + hold.as_millis() as i64);
        Ok(Slot::Taken)
    }

    async fn release(&self, org: &OrgId, batch: Uuid) -> Result<(), SlotsUnavailable> {
        if let Some(slots) = lock(&self.held).get_mut(org) {
            slots.remove(&batch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_slots_keep_the_slots_contract() {
        crate::fakes::slots_contract::every_case(&InMemoryBatchSlots::new(), "contract").await;
    }
}
