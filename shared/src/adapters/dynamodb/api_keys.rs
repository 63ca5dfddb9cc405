//! API keys in DynamoDB (the keys table: `key_id` is the key, the `by-organization` index on
//! `org_id` and `created_at` lists an organization's), through the direct DynamoDB client.
//!
//! An item holds `key_id`, `org_id`, `user_id`, `role`, `name` (when given), `secret_hash`,
//! `created_at`, `created_by`, and `expires_at` / `revoked_at` when set; times are RFC 3339 text
//! with milliseconds. The index does not project `secret_hash`. Reads by id are strongly
//! consistent, so a revocation is seen by the next read (the containers' caches bound the rest).
//! Configured by [`ApiKeyConfig`] (`API_KEYS_TABLE_NAME`, `API_KEY_CACHE_MS`).

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::adapters::dynamodb::client::{DynamoError, DynamoHttp, GetItem, Operation, Query, Request, UpdateItem};
use crate::config::{ConfigError, DynamoDbConfig, Env};
use crate::domain::api_keys::{KeyId, KeyInfo, SecretHash, StoredKey, timestamp};
use crate::domain::ids::{OrgId, Role, UserId};
use crate::domain::validation::Choice;
use crate::ports::api_keys::{ApiKeyStore, KeyStoreError};

/// Where API keys are kept and how long a container trusts what it read of one.
#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    pub dynamodb: DynamoDbConfig,
    /// `API_KEYS_TABLE_NAME`.
    pub table_name: String,
    /// How long a key read from the table (or found missing) is reused: a revocation takes
    /// effect within it (`API_KEY_CACHE_MS`, at most [`MAX_API_KEY_CACHE_MS`]).
    pub cache_ttl: Duration,
    /// Budget of one call to the table; past it, the request is a 503.
    pub timeout: Duration,
}

/// The longest a container may trust a key it read: the documented bound on revocation.
pub const MAX_API_KEY_CACHE_MS: u64 = 60_000;
/// How long a container trusts a key it read, by default.
pub const DEFAULT_API_KEY_CACHE_MS: u64 = 30_000;

impl ApiKeyConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cache_ms = env.number_or("API_KEY_CACHE_MS", DEFAULT_API_KEY_CACHE_MS, 0)?;
        if cache_ms > MAX_API_KEY_CACHE_MS {
            return Err(ConfigError::new(
                "API_KEY_CACHE_MS",
                format!("must be at most {MAX_API_KEY_CACHE_MS} (revocation takes effect within it), got {cache_ms}"),
            ));
        }
        Ok(Self {
            dynamodb: DynamoDbConfig::from_env(env),
            table_name: env.required("API_KEYS_TABLE_NAME")?,
            cache_ttl: Duration::from_millis(cache_ms),
            timeout: Duration::from_millis(1000),
        })
    }
}

/// The keys table's index from an organization to its keys, by creation time.
pub const ORG_INDEX: &str = "by-organization";

/// A `PutItem` that never replaces an item with the same key.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutNew<'a> {
    table_name: &'a str,
    item: Value,
    condition_expression: &'a str,
}

impl Request for PutNew<'_> {
    const OPERATION: Operation = Operation::PutItem;
}

pub struct DynamoApiKeys {
    dynamo: DynamoHttp,
    table: String,
    timeout: Duration,
}

impl DynamoApiKeys {
    pub fn new(aws: &SdkConfig, config: &ApiKeyConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            dynamo: DynamoHttp::new(aws, &config.dynamodb)?,
            table: config.table_name.clone(),
            timeout: config.timeout,
        })
    }

    /// One call within the budget; a failed condition is answered as such, anything else is an
    /// outage.
    async fn call<R: Request>(&self, request: &R) -> Result<Result<Value, ()>, KeyStoreError> {
        let operation = R::OPERATION.as_str();
        match tokio::time::timeout(self.timeout, self.dynamo.call(request)).await {
            Err(_) => Err(KeyStoreError::Unavailable(format!(
                "{operation}: no answer within {:?}",
                self.timeout
            ))),
            Ok(Ok(answer)) => Ok(Ok(answer)),
            Ok(Err(DynamoError::ConditionFailed { .. })) => Ok(Err(())),
            Ok(Err(DynamoError::Failed(detail) | DynamoError::Retryable(detail))) => {
                Err(KeyStoreError::Unavailable(detail))
            }
        }
    }
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeys {
    async fn create(&self, key: &StoredKey) -> Result<(), KeyStoreError> {
        let request = PutNew {
            table_name: &self.table,
            item: item(key),
            condition_expression: "attribute_not_exists(key_id)",
        };
        self.call(&request).await?.map_err(|()| KeyStoreError::IdTaken)?;
        Ok(())
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, KeyStoreError> {
        let request = GetItem {
            table_name: &self.table,
            key: json!({"key_id": {"S": id.as_str()}}),
            consistent_read: true,
        };
        let answer = self.call(&request).await?.unwrap_or_default();
        Ok(answer.get("Item").and_then(|item| readable(stored_key(item), item)))
    }

    async fn list(&self, org: &OrgId) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let query = Query {
            table_name: &self.table,
            index_name: ORG_INDEX,
            key_condition_expression: "org_id = :org",
            expression_attribute_values: json!({":org": {"S": org.as_str()}}),
            exclusive_start_key: None,
        };
        let items = match tokio::time::timeout(self.timeout, self.dynamo.query_all(query)).await {
            Ok(Ok(items)) => items,
            Ok(Err(err)) => return Err(KeyStoreError::Unavailable(err.to_string())),
            Err(_) => {
                return Err(KeyStoreError::Unavailable(format!(
                    "Query: no answer within {:?}",
                    self.timeout
                )));
            }
        };
        let mut keys: Vec<KeyInfo> = items.iter().filter_map(|item| readable(info(item), item)).collect();
        keys.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(keys)
    }

    async fn revoke(&self, org: &OrgId, id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyInfo>, KeyStoreError> {
        let request = UpdateItem {
            table_name: &self.table,
            key: json!({"key_id": {"S": id.as_str()}}),
            update_expression: "SET revoked_at = if_not_exists(revoked_at, :at)",
            // Also false when there is no such item: another organization's id is unknown here.
            condition_expression: "org_id = :org",
            expression_attribute_values: json!({":at": {"S": timestamp(at)}, ":org": {"S": org.as_str()}}),
            return_values: Some("ALL_NEW"),
            expression_attribute_names: None,
            return_values_on_condition_check_failure: "NONE",
        };
        Ok(match self.call(&request).await? {
            Ok(answer) => answer.get("Attributes").and_then(|item| readable(info(item), item)),
            Err(()) => None,
        })
    }
}

/// The item of a new key.
fn item(key: &StoredKey) -> Value {
    let info = &key.info;
    let mut item = json!({
        "key_id": {"S": info.id.as_str()},
        "org_id": {"S": info.org.as_str()},
        "user_id": {"S": info.user.as_str()},
        "role": {"S": info.role.as_str()},
        "secret_hash": {"S": key.hash.as_str()},
        "created_at": {"S": timestamp(info.created_at)},
        "created_by": {"S": info.created_by.as_str()},
    });
    let optional = [
        ("name", info.name.clone()),
        ("expires_at", info.expires_at.map(timestamp)),
        ("revoked_at", info.revoked_at.map(timestamp)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item[name] = json!({ "S": value });
        }
    }
    item
}

/// What was read, or `None` with a log line when the item is not a key's (never its content).
fn readable<T>(parsed: Result<T, String>, item: &Value) -> Option<T> {
    parsed
        .inspect_err(|problem| {
            let id = item["key_id"]["S"].as_str().unwrap_or("?");
            tracing::error!(key_id = id, problem, "ignoring an unreadable API key item");
        })
        .ok()
}

fn stored_key(item: &Value) -> Result<StoredKey, String> {
    let hash = text(item, "secret_hash")?;
    Ok(StoredKey {
        info: info(item)?,
        hash: SecretHash::parse(&hash).ok_or("secret_hash is not a SHA-256 in hex")?,
    })
}

fn info(item: &Value) -> Result<KeyInfo, String> {
    let parsed = |name: &str, problem: String| format!("{name} {problem}");
    Ok(KeyInfo {
        id: KeyId::parse(&text(item, "key_id")?).map_err(|p| parsed("key_id", p))?,
        org: OrgId::parse(&text(item, "org_id")?).map_err(|p| parsed("org_id", p))?,
        user: UserId::parse(&text(item, "user_id")?).map_err(|p| parsed("user_id", p))?,
        role: Role::parse(&text(item, "role")?).ok_or("role is not admin or member")?,
        name: optional_text(item, "name"),
        created_at: time(item, "created_at")?.ok_or("created_at is missing")?,
        created_by: UserId::parse(&text(item, "created_by")?).map_err(|p| parsed("created_by", p))?,
        expires_at: time(item, "expires_at")?,
        revoked_at: time(item, "revoked_at")?,
    })
}

fn optional_text(item: &Value, name: &str) -> Option<String> {
    item.get(name)?.get("S")?.as_str().map(str::to_owned)
}

fn text(item: &Value, name: &str) -> Result<String, String> {
    optional_text(item, name).ok_or_else(|| format!("{name} is missing or not a string"))
}

fn time(item: &Value, name: &str) -> Result<Option<DateTime<Utc>>, String> {
    optional_text(item, name)
        .map(|raw| {
            DateTime::parse_from_rfc3339(&raw)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| format!("{name} is not an RFC 3339 time"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::api_keys::NewKey;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn the_api_key_cache_is_bounded_by_the_revocation_promise() {
        let table = ("API_KEYS_TABLE_NAME", "keys");
        let config = ApiKeyConfig::from_env(&env(&[table])).unwrap();
        assert_eq!(config.cache_ttl, Duration::from_secs(30));
        assert_eq!(config.table_name, "keys");
        let config = ApiKeyConfig::from_env(&env(&[table, ("API_KEY_CACHE_MS", "60000")])).unwrap();
        assert_eq!(config.cache_ttl, Duration::from_secs(60));
        for bad in ["60001", "-1", "soon"] {
            let err = ApiKeyConfig::from_env(&env(&[table, ("API_KEY_CACHE_MS", bad)])).unwrap_err();
            assert_eq!(err.variable, "API_KEY_CACHE_MS", "{bad}");
        }
        let err = ApiKeyConfig::from_env(&env(&[])).unwrap_err();
        assert_eq!(err.variable, "API_KEYS_TABLE_NAME");
    }

    #[test]
    fn an_item_reads_back_as_the_key_it_was_made_from() {
        let key = NewKey::from_random(&[7; 16], &[9; 32]);
        let now = crate::domain::api_keys::at_key_precision(Utc::now());
        let stored = StoredKey {
            info: KeyInfo {
                id: key.id.clone(),
                org: OrgId::parse("acme").unwrap(),
                user: UserId::parse("alice").unwrap(),
                role: Role::Admin,
                name: Some("laptop".into()),
                created_at: now,
                created_by: UserId::parse("root").unwrap(),
                expires_at: Some(now + chrono::Duration::days(30)),
                revoked_at: None,
            },
            hash: key.hash.clone(),
        };
        let item = item(&stored);
        assert!(item.get("revoked_at").is_none());
        let read = stored_key(&item).unwrap();
        assert_eq!(read.info, stored.info);
        assert!(read.hash.matches(&stored.hash));
        assert!(!item.to_string().contains(&key.text()[38..]), "only the hash is stored");
    }

    #[test]
    fn a_damaged_item_is_refused_with_its_reason() {
        let key = NewKey::from_random(&[7; 16], &[9; 32]);
        let mut item = json!({"key_id": {"S": key.id.as_str()}, "org_id": {"S": "acme"}, "user_id": {"S": "a"},
                              "role": {"S": "owner"}, "secret_hash": {"S": key.hash.as_str()},
                              "created_at": {"S": "2026-01-01T00:00:00.000Z"}, "created_by": {"S": "r"}});
        assert_eq!(stored_key(&item).unwrap_err(), "role is not admin or member");
        item["role"] = json!({"S": "member"});
        item["secret_hash"] = json!({"S": "nope"});
        assert!(stored_key(&item).is_err());
    }
}
