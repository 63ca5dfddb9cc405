//! Organization settings in DynamoDB: one item per organization in the rate-limit table,
//! `pk = limits#<org>` — where operators' rate-limit overrides have always lived — holding the
//! organization's overrides as a JSON document (`settings`), its `settings_version` and its
//! `webhook_secret`. The table is kept on stack deletion and has point-in-time recovery.
//!
//! Items written before settings existed (numeric `max_requests`, `window_ms`,
//! `burst_allowance`, `user_max_requests`, `user_burst_allowance`, `batch_size`, and
//! `hook_content`) keep working: they are read as the matching overrides, and the first write
//! through the settings API migrates them into the document and removes them.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::client::{DeleteItem, DynamoError, DynamoHttp, GetItem, UpdateItem};
use crate::config::{ConfigError, DynamoDbConfig};
use crate::domain::ids::OrgId;
use crate::domain::settings::merge_patch;
use crate::ports::settings::{PutError, SettingsStore, SettingsUnavailable, StoredSettings};

/// Legacy numeric attributes and where each lands in the settings document.
const LEGACY_NUMBERS: &[(&str, &str, &str)] = &[
    ("max_requests", "rate_limiting", "max_requests"),
    ("window_ms", "rate_limiting", "window_ms"),
    ("burst_allowance", "rate_limiting", "burst_allowance"),
    ("user_max_requests", "rate_limiting", "user_max_requests"),
    ("user_burst_allowance", "rate_limiting", "user_burst_allowance"),
    ("batch_size", "performance", "batch_size_limit"),
];

pub struct DynamoSettings {
    client: DynamoHttp,
    table: String,
    timeout: Duration,
}

impl DynamoSettings {
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

    pub fn key(org: &OrgId) -> Value {
        json!({"pk": {"S": format!("limits#{org}")}})
    }

    async fn timed<F: Future<Output = Result<Value, DynamoError>>>(&self, call: F) -> Result<Value, DynamoError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(DynamoError::Failed(format!("no answer within {:?}", self.timeout))))
    }
}

#[async_trait]
impl SettingsStore for DynamoSettings {
    async fn get(&self, org: &OrgId) -> Result<Option<StoredSettings>, SettingsUnavailable> {
        let request = GetItem {
            table_name: &self.table,
            key: Self::key(org),
            consistent_read: true,
        };
        let output = self.timed(self.client.call(&request)).await.map_err(unavailable)?;
        Ok(output.get("Item").map(stored_from_item))
    }

    async fn put(&self, org: &OrgId, settings: &StoredSettings) -> Result<(), PutError> {
        let previous = settings.version.saturating_sub(1);
        let legacy: Vec<&str> = LEGACY_NUMBERS
            .iter()
            .map(|(name, _, _)| *name)
            .chain(["hook_content"])
            .collect();
        let (set_secret, mut values) = match &settings.webhook_secret {
            Some(secret) => (", webhook_secret = :secret", json!({":secret": {"S": secret}})),
            None => ("", json!({})),
        };
        let remove_secret = if settings.webhook_secret.is_none() {
            ", webhook_secret"
        } else {
            ""
        };
        let expression = format!(
            "SET #doc = :doc, settings_version = :version{set_secret} REMOVE {}{remove_secret}",
            legacy.join(", ")
        );
        values[":doc"] = json!({"S": settings.overrides.to_string()});
        values[":version"] = json!({"N": settings.version.to_string()});
        let condition = if previous == 0 {
            "attribute_not_exists(settings_version)"
        } else {
            values[":previous"] = json!({"N": previous.to_string()});
            "settings_version = :previous"
        };
        let request = UpdateItem {
            table_name: &self.table,
            key: Self::key(org),
            update_expression: &expression,
            condition_expression: condition,
            expression_attribute_values: values,
            // Not a reserved word today; the placeholder keeps it safe from tomorrow's list.
            expression_attribute_names: Some(json!({"#doc": "settings"})),
            return_values: None,
            return_values_on_condition_check_failure: "NONE",
        };
        match self.timed(self.client.call(&request)).await {
            Ok(_) => Ok(()),
            Err(DynamoError::ConditionFailed { .. }) => Err(PutError::Conflict),
            Err(err) => Err(PutError::Unavailable(unavailable(err))),
        }
    }

    async fn delete(&self, org: &OrgId) -> Result<(), SettingsUnavailable> {
        let request = DeleteItem {
            table_name: &self.table,
            key: Self::key(org),
        };
        self.timed(self.client.call(&request)).await.map_err(unavailable)?;
        Ok(())
    }
}

fn unavailable(err: DynamoError) -> SettingsUnavailable {
    SettingsUnavailable(err.to_string())
}

/// The stored settings an item holds: the legacy attributes as overrides, with the `settings`
/// document merged over them. A value that is not what it should be is kept as it is, so the
/// reader's validation names the problem instead of it being silently dropped.
fn stored_from_item(item: &Value) -> StoredSettings {
    let mut overrides = Value::Object(Map::new());
    for (attribute, section, field) in LEGACY_NUMBERS {
        if let Some(value) = item.get(*attribute) {
            let number = value.get("N").and_then(Value::as_str);
            let parsed = number.and_then(|n| n.parse::<u64>().ok()).map(Value::from);
            let value = parsed.unwrap_or_else(|| Value::String(number.unwrap_or_default().to_owned()));
            merge_patch(&mut overrides, &json!({ *section: { *field: value } }));
        }
    }
    if let Some(mode) = item.get("hook_content") {
        let mode = mode.get("S").cloned().unwrap_or(Value::Null);
        merge_patch(&mut overrides, &json!({"content": {"hook_content": mode}}));
    }
    if let Some(document) = item.get("settings").and_then(|s| s.get("S")).and_then(Value::as_str) {
        let parsed = serde_json::from_str(document).unwrap_or_else(|_| json!({"settings": "not a JSON document"}));
        merge_patch(&mut overrides, &parsed);
    }
    StoredSettings {
        overrides,
        webhook_secret: item
            .get("webhook_secret")
            .and_then(|s| s.get("S"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        version: item
            .get("settings_version")
            .and_then(|v| v.get("N"))
            .and_then(Value::as_str)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_override_item_reads_as_the_matching_overrides() {
        let item = json!({
            "pk": {"S": "limits#acme"},
            "max_requests": {"N": "50"},
            "batch_size": {"N": "100"},
            "hook_content": {"S": "redacted"},
        });
        let stored = stored_from_item(&item);
        assert_eq!(
            stored.overrides,
            json!({"rate_limiting": {"max_requests": 50}, "performance": {"batch_size_limit": 100},
                   "content": {"hook_content": "redacted"}})
        );
        assert_eq!(stored.version, 0);
    }

    #[test]
    fn the_document_wins_over_legacy_attributes_and_bad_values_are_kept_for_validation() {
        let item = json!({
            "window_ms": {"N": "lots"},
            "max_requests": {"N": "50"},
            "settings": {"S": "{\"rate_limiting\":{\"max_requests\":70}}"},
            "settings_version": {"N": "3"},
            "webhook_secret": {"S": "whsec_x"},
        });
        let stored = stored_from_item(&item);
        assert_eq!(stored.overrides["rate_limiting"]["max_requests"], 70);
        assert_eq!(stored.overrides["rate_limiting"]["window_ms"], "lots");
        assert_eq!(stored.version, 3);
        assert_eq!(stored.webhook_secret.as_deref(), Some("whsec_x"));
    }

    #[test]
    fn legacy_overrides_that_would_overflow_lock_out_or_be_refused_later_do_not_validate() {
        let n = |v: &str| json!({ "N": v });
        for item in [
            json!({"max_requests": n("1"), "window_ms": n("31536000000"), "burst_allowance": n("18446744073709551615")}),
            json!({"burst_allowance": n("18446744073709551615")}),
            json!({"max_requests": n("1"), "window_ms": n("31536000000"), "burst_allowance": n("2")}),
            json!({"max_requests": n("-1")}),
            json!({"max_requests": n("0")}),
            json!({"window_ms": n("1e3")}),
            json!({"window_ms": {"S": "60000"}}),
            json!({"batch_size": n("1001")}),
            json!({"user_max_requests": n("0")}),
            json!({"batch_size": n("0")}),
            json!({"hook_content": {"S": "everything"}}),
        ] {
            let overrides = stored_from_item(&item).overrides;
            let settings = crate::domain::settings::OrganizationSettings::default().with_overrides(&overrides);
            assert!(settings.is_err(), "{item}");
        }
    }
}
