//! Batch slots in DynamoDB: one item per organization in the rate-limit table,
//! `pk = inflight#<org>`, whose map `batches` holds each batch in flight and the time (epoch ms)
//! its slot expires. Every change is one conditional `UpdateItem`, so racing batch routes never
//! hold more than `most` slots:
//! - take: `SET batches.#id = :until` if `size(batches) < :most` (the map made first, if absent,
//!   by `SET batches = :one` if it does not exist);
//! - when full, the failed condition returns the map (`ALL_OLD`): expired slots are removed with
//!   a condition that they are unchanged, and the take is tried again;
//! - release: `REMOVE batches.#id`.
//!
//! The item carries `expires_at`, so DynamoDB's TTL removes it once every slot has expired.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::client::{DynamoError, DynamoHttp, UpdateItem};
use crate::config::{ConfigError, DynamoDbConfig};
use crate::domain::ids::OrgId;
use crate::ports::batch_slots::{BatchSlots, Slot, SlotsUnavailable};

/// Attempts under contention before refusing (never admitting past `most`).
const MAX_ATTEMPTS: usize = 6;
/// Expired slots removed by one update.
const PRUNE_AT_ONCE: usize = 50;

pub struct DynamoBatchSlots {
    client: DynamoHttp,
    table: String,
    timeout: Duration,
}

enum Attempt {
    Done,
    /// The condition failed; the map as it was (absent: no map yet).
    Conflict(Option<Map<String, Value>>),
}

impl DynamoBatchSlots {
    pub fn new(
        aws: &aws_config::SdkConfig,
        dynamodb: &DynamoDbConfig,
        table: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            client: DynamoHttp::new(aws, dynamodb)?,
            table: table.to_owned(),
            timeout,
        })
    }

    fn key(org: &OrgId) -> Value {
        json!({"pk": {"S": format!("inflight#{org}")}})
    }

    async fn update(
        &self,
        org: &OrgId,
        expression: &str,
        condition: &str,
        names: Value,
        values: Value,
    ) -> Result<Attempt, SlotsUnavailable> {
        let request = UpdateItem {
            table_name: &self.table,
            key: Self::key(org),
            update_expression: expression,
            condition_expression: condition,
            expression_attribute_values: values,
            // DynamoDB refuses names the expressions do not use, and an empty map.
            expression_attribute_names: names.as_object().is_some_and(|n| !n.is_empty()).then_some(names),
            return_values: None,
            return_values_on_condition_check_failure: "ALL_OLD",
        };
        let answer = tokio::time::timeout(self.timeout, self.client.call(&request))
            .await
            .map_err(|_| SlotsUnavailable(format!("no answer within {:?}", self.timeout)))?;
        match answer {
            Ok(_) => Ok(Attempt::Done),
            Err(DynamoError::ConditionFailed { item }) => Ok(Attempt::Conflict(item.and_then(|i| {
                i.get("batches")
                    .and_then(|b| b.get("M"))
                    .and_then(Value::as_object)
                    .cloned()
            }))),
            Err(err) => Err(SlotsUnavailable(err.to_string())),
        }
    }

    /// Removes `expired` slots if they still hold the expiry read.
    async fn prune(&self, org: &OrgId, expired: &[(&String, i64)]) -> Result<(), SlotsUnavailable> {
        let mut names = Map::new();
        let mut values = Map::new();
        let (mut removed, mut unchanged) = (Vec::new(), Vec::new());
        for (i, (id, until)) in expired.iter().enumerate() {
            names.insert(format!("#e{i}"), json!(id));
            values.insert(format!(":e{i}"), json!({"N": until.to_string()}));
            removed.push(format!("batches.#e{i}"));
            unchanged.push(format!("batches.#e{i} = :e{i}"));
        }
        let expression = format!("REMOVE {}", removed.join(", "));
        let condition = unchanged.join(" AND ");
        self.update(
            org,
            &expression,
            &condition,
            Value::Object(names),
            Value::Object(values),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl BatchSlots for DynamoBatchSlots {
    async fn take(
        &self,
        org: &OrgId,
        batch: Uuid,
        most: u64,
        now_ms: i64,
        hold: Duration,
    ) -> Result<Slot, SlotsUnavailable> {
        let until = now_ms + hold.as_millis() as i64;
        // The item outlives its last slot by an hour, then DynamoDB's TTL removes it.
        let expires_at = json!({"N": (until / 1000 + 3600).to_string()});
        let id = batch.to_string();
        for _ in 0..MAX_ATTEMPTS {
            let attempt = self
                .update(
                    org,
                    "SET batches.#id = :until, expires_at = :exp",
                    "attribute_exists(batches) AND size(batches) < :most",
                    json!({"#id": id}),
                    json!({":until": {"N": until.to_string()}, ":most": {"N": most.to_string()}, ":exp": expires_at}),
                )
                .await?;
            let held = match attempt {
                Attempt::Done => return Ok(Slot::Taken),
                Attempt::Conflict(held) => held,
            };
            let Some(held) = held else {
                // No map yet: make it with this slot, unless another caller just did.
                let made = self
                    .update(
                        org,
                        "SET batches = :one, expires_at = :exp",
                        "attribute_not_exists(batches)",
                        json!({}),
                        json!({":one": {"M": {id.clone(): {"N": until.to_string()}}}, ":exp": expires_at}),
                    )
                    .await?;
                if matches!(made, Attempt::Done) {
                    return Ok(Slot::Taken);
                }
                continue;
            };
            let slots: Vec<(&String, i64)> = held
                .iter()
                .filter_map(|(id, until)| Some((id, until.get("N")?.as_str()?.parse().ok()?)))
                .collect();
            // A few at a time: one update expression must stay within DynamoDB's 4 KB.
            let expired: Vec<(&String, i64)> = slots
                .iter()
                .filter(|(_, until)| *until <= now_ms)
                .take(PRUNE_AT_ONCE)
                .copied()
                .collect();
            if expired.is_empty() {
                let first_free = slots.iter().map(|(_, until)| *until).min().unwrap_or(until);
                return Ok(Slot::Full {
                    retry_after: Duration::from_millis((first_free - now_ms).max(1) as u64),
                });
            }
            self.prune(org, &expired).await?;
        }
        // Others kept changing the map: refuse rather than risk holding more than `most`.
        tracing::warn!(org = %org, "batch slots contended; refusing this batch");
        Ok(Slot::Full {
            retry_after: Duration::from_secs(1),
        })
    }

    async fn release(&self, org: &OrgId, batch: Uuid) -> Result<(), SlotsUnavailable> {
        // Only when held: REMOVE of a path in a missing map is an error, not a no-op.
        self.update(
            org,
            "REMOVE batches.#id",
            "attribute_exists(batches.#id)",
            json!({"#id": batch.to_string()}),
            json!({}),
        )
        .await?;
        Ok(())
    }
}
