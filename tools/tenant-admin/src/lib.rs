//! Deletes a whole organization: its DynamoDB items first (its API keys, so none authenticates
//! any more; its live connections; its rate-limit buckets — the organization's, each
//! developer's — its `limits#` settings item and its `inflight#` batch slots), then its PostgreSQL schema (`DROP SCHEMA …
//! CASCADE`) and registry row, in one transaction under the tenant's provisioning lock.
//!
//! Tokens (JWTs) cannot be revoked here: a write from a still-valid token of the organization
//! after the delete provisions a new, empty schema. Stop issuing its tokens first.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::adapters::dynamodb::api_keys::{ApiKeyConfig, ORG_INDEX as KEYS_ORG_INDEX};
use shared::adapters::dynamodb::connections::ORG_INDEX as CONNECTIONS_ORG_INDEX;
use shared::adapters::postgres::{connect_one, migrate::drop_tenant};
use shared::config::{ConfigError, DatabaseConfig, Env, RateLimitConfig};
use shared::domain::ids::OrgId;

/// Where an organization's data lives.
pub struct Stores {
    pub database: DatabaseConfig,
    pub rate_limit_table: String,
    pub api_keys_table: String,
    /// `CONNECTIONS_TABLE_NAME`, when the stage has live updates.
    pub connections_table: Option<String>,
}

impl Stores {
    /// `DATABASE_URL` (or its parts), `RATE_LIMIT_TABLE_NAME`, `API_KEYS_TABLE_NAME` and
    /// optionally `CONNECTIONS_TABLE_NAME`: the same variables as the functions.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            rate_limit_table: RateLimitConfig::from_env(env)?.table_name,
            api_keys_table: ApiKeyConfig::from_env(env)?.table_name,
            connections_table: env.optional("CONNECTIONS_TABLE_NAME"),
        })
    }
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// The values of `key` of every item an index holds for `org` (`org_id = :org`).
async fn query_index(dynamo: &Client, table: &str, index: &str, org: &OrgId, key: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = dynamo
            .query()
            .table_name(table)
            .index_name(index)
            .key_condition_expression("org_id = :org")
            .expression_attribute_values(":org", string(org.as_str()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "query {table}/{index}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                )
            })?;
        found.extend(
            page.items()
                .iter()
                .filter_map(|item| item.get(key)?.as_s().ok().cloned()),
        );
        match page.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => return Ok(found),
        }
    }
}

/// The `pk`s of the rate-limit table starting with `prefix` (a paginated scan: the table has no
/// index by organization; this is a rare operator command).
async fn scan_prefix(dynamo: &Client, table: &str, prefix: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = dynamo
            .scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :prefix)")
            .expression_attribute_values(":prefix", string(prefix))
            .projection_expression("pk")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| format!("scan {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))?;
        found.extend(
            page.items()
                .iter()
                .filter_map(|item| item.get("pk")?.as_s().ok().cloned()),
        );
        match page.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => return Ok(found),
        }
    }
}

async fn delete_items(dynamo: &Client, table: &str, key: &str, values: &[String]) -> Result<usize, String> {
    for value in values {
        dynamo
            .delete_item()
            .table_name(table)
            .key(key, string(value))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "delete from {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                )
            })?;
    }
    Ok(values.len())
}

/// Deletes the organization everywhere; what it removed, as JSON.
pub async fn delete_tenant(stores: &Stores, dynamo: &Client, org: &OrgId) -> Result<Value, String> {
    let keys = query_index(dynamo, &stores.api_keys_table, KEYS_ORG_INDEX, org, "key_id").await?;
    let api_keys = delete_items(dynamo, &stores.api_keys_table, "key_id", &keys).await?;
    let connections = match &stores.connections_table {
        Some(table) => {
            let ids = query_index(dynamo, table, CONNECTIONS_ORG_INDEX, org, "connection_id").await?;
            delete_items(dynamo, table, "connection_id", &ids).await?
        }
        None => 0,
    };

    let mut client = connect_one(&stores.database).await?;
    let registered = drop_tenant(&mut client, org)
        .await
        .map_err(|e| format!("drop the schema: {e}"))?;

    // Last, so that a request racing the delete leaves no bucket behind it.
    let mut buckets = scan_prefix(dynamo, &stores.rate_limit_table, &format!("user#{org}#")).await?;
    buckets.extend([format!("org#{org}"), format!("limits#{org}"), format!("inflight#{org}")]);
    let rate_limit_items = delete_items(dynamo, &stores.rate_limit_table, "pk", &buckets).await?;
    Ok(json!({
        "organization_id": org.as_str(),
        "schema_dropped": registered,
        "api_keys": api_keys,
        "connections": connections,
        // Deleting an absent item is not an error: this counts the keys asked for.
        "rate_limit_items": rate_limit_items,
    }))
}

const USAGE: &str = "usage: tenant-admin delete --org ORG --confirm ORG";

/// The organization `delete --org ORG --confirm ORG` names, once confirmed.
pub fn parse(args: &[String]) -> Result<OrgId, String> {
    if args.first().map(String::as_str) != Some("delete") {
        return Err(USAGE.into());
    }
    let (mut org, mut confirm) = (None, None);
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--org" => org = Some(value),
            "--confirm" => confirm = Some(value),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    let org = org.ok_or_else(|| format!("--org is required\n{USAGE}"))?;
    if confirm.as_deref() != Some(org.as_str()) {
        return Err(format!(
            "deleting {org:?} removes all its data for good: repeat its id with --confirm {org}"
        ));
    }
    OrgId::parse(&org).map_err(|e| format!("--org {org:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn deleting_needs_the_organization_repeated() {
        assert_eq!(
            parse(&args("delete --org acme --confirm acme")).unwrap().as_str(),
            "acme"
        );
        assert!(
            parse(&args("delete --org acme"))
                .unwrap_err()
                .contains("--confirm acme")
        );
        assert!(parse(&args("delete --org acme --confirm acm")).is_err());
        assert!(parse(&args("drop --org acme --confirm acme")).is_err());
        assert!(parse(&args("delete --org a\"b --confirm a\"b")).is_err());
    }
}
