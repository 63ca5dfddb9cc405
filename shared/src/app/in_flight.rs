//! Batches in flight: the batch route takes one of the organization's slots
//! (`performance.concurrent_requests`) before queueing a batch, and the worker frees it once the
//! batch is written (or dead-lettered). A slot also frees itself after `BATCH_SLOT_HOLD_MS`
//! (5 minutes by default), so a batch lost on the way never locks an organization out; while
//! the worker lags behind by more than that, the bound is loose.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::adapters::dynamodb::batch_slots::DynamoBatchSlots;
use crate::config::{ConfigError, DynamoDbConfig, Env, RateLimitConfig};
use crate::domain::batch::Envelope;
use crate::domain::ratelimit::{RateStatus, Scope, now_us};
use crate::http::error::ApiError;
use crate::ports::batch_slots::{BatchSlots, Slot};

pub const DEFAULT_HOLD_MS: u64 = 300_000;
/// What a refused batch is told to wait at most: the worker usually frees a slot by then.
const RETRY_HINT: Duration = Duration::from_secs(1);

pub struct InFlight {
    slots: Arc<dyn BatchSlots>,
    hold: Duration,
}

impl InFlight {
    pub fn new(slots: Arc<dyn BatchSlots>, hold: Duration) -> Self {
        Self { slots, hold }
    }

    /// The slots item in the rate-limit table; `BATCH_SLOT_HOLD_MS`.
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let rate = RateLimitConfig::from_env(env)?;
        let slots = DynamoBatchSlots::new(
            aws,
            &DynamoDbConfig::from_env(env),
            &rate.table_name,
            rate.store_timeout,
        )?;
        Ok(Self::new(
            Arc::new(slots),
            env.millis_or("BATCH_SLOT_HOLD_MS", DEFAULT_HOLD_MS)?,
        ))
    }

    /// Takes a slot for `envelope`, or refuses it (429, `scope: batches_in_flight`) while `most`
    /// of its organization's batches are in flight. When the slots cannot be read the batch is
    /// admitted (logged): the queue and the worker still bound the load, and refusing would turn
    /// a DynamoDB hiccup into lost batches for importers that do not retry.
    pub async fn admit(&self, envelope: &Envelope, most: u64) -> Result<(), ApiError> {
        let now_ms = now_us() / 1000;
        match self
            .slots
            .take(&envelope.organization_id, envelope.batch_id, most, now_ms, self.hold)
            .await
        {
            Ok(Slot::Taken) => Ok(()),
            Ok(Slot::Full { retry_after }) => {
                // The worker usually frees a slot within a second; the expiry is the worst case.
                let retry_us = retry_after.min(RETRY_HINT).as_micros() as i64;
                Err(ApiError::RateLimited(RateStatus {
                    scope: Scope::BatchesInFlight,
                    limit: most,
                    remaining: 0,
                    reset_at_us: now_ms * 1000 + retry_us,
                    retry_after_us: Some(retry_us),
                }))
            }
            Err(err) => {
                tracing::warn!(org = %envelope.organization_id, error = %err, "batch slots unavailable; admitting the batch");
                Ok(())
            }
        }
    }

    /// Frees `envelope`'s slot; a failure is logged (the slot expires on its own).
    pub async fn release(&self, envelope: &Envelope) {
        self.release_batch(&envelope.organization_id, envelope.batch_id).await;
    }

    /// Frees the slot of `org`'s `batch` (nothing when it holds none).
    pub async fn release_batch(&self, org: &crate::domain::ids::OrgId, batch: uuid::Uuid) {
        if let Err(err) = self.slots.release(org, batch).await {
            tracing::warn!(org = %org, batch_id = %batch, error = %err, "batch slot not released; it expires on its own");
        }
    }
}
