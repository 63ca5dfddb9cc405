//! Open WebSocket connections in DynamoDB (the connections table and its `org-viewers`
//! index), through the direct DynamoDB client.

use crate::adapters::dynamodb::client::{DeleteItem, DynamoError, DynamoHttp, PutItem, Query, Request};
use crate::config::{ConfigError, DynamoDbConfig};
use crate::domain::ids::{OrgId, Role};
use crate::domain::validation::Choice;
use crate::ports::live::{Connection, Connections, Listed, LiveError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use serde_json::{Value, json};

/// The connections table's index from an organization to its connections, with what each may
/// see (`user_id`, `role`) and `expires_at`. (The table's older `by-organization` index projects
/// only `expires_at`; it is no longer read.)
pub const ORG_INDEX: &str = "org-viewers";

/// The connections table in DynamoDB: `connection_id` is the key, [`ORG_INDEX`] finds an
/// organization's connections, `expires_at` is the TTL attribute. Spoken to with the direct
/// client the rate limiter uses, so no SDK client is built for it.
pub struct DynamoConnections {
    dynamo: DynamoHttp,
    table: String,
}

impl DynamoConnections {
    pub fn new(aws: &SdkConfig, config: &DynamoDbConfig, table: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            dynamo: DynamoHttp::new(aws, config)?,
            table: table.into(),
        })
    }

    async fn call<R: Request>(&self, request: &R) -> Result<Value, LiveError> {
        self.dynamo.call(request).await.map_err(|err| match err {
            DynamoError::ConditionFailed { .. } => LiveError::new(format!("{}: {err}", R::OPERATION.as_str())),
            other => LiveError::new(other.to_string()),
        })
    }
}

#[async_trait]
impl Connections for DynamoConnections {
    async fn add(&self, connection: &Connection) -> Result<(), LiveError> {
        let item = json!({
            "connection_id": {"S": connection.id},
            "org_id": {"S": connection.org.as_str()},
            "user_id": {"S": connection.user.as_str()},
            "role": {"S": connection.role.as_str()},
            "expires_at": {"N": connection.expires_at.to_string()},
        });
        self.call(&PutItem {
            table_name: &self.table,
            item,
        })
        .await?;
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> Result<(), LiveError> {
        let key = json!({"connection_id": {"S": connection_id}});
        self.call(&DeleteItem {
            table_name: &self.table,
            key,
        })
        .await?;
        Ok(())
    }

    async fn of_org(&self, org: &OrgId) -> Result<Vec<Listed>, LiveError> {
        // The index projects `expires_at`, `user_id` and `role`; expired items are listed too,
        // for closing.
        let query = Query {
            table_name: &self.table,
            index_name: ORG_INDEX,
            key_condition_expression: "org_id = :org",
            expression_attribute_values: json!({":org": {"S": org.as_str()}}),
            exclusive_start_key: None,
        };
        let items = self
            .dynamo
            .query_all(query)
            .await
            .map_err(|err| LiveError::new(err.to_string()))?;
        Ok(items
            .iter()
            .filter_map(|item| {
                Some(Listed {
                    id: item["connection_id"]["S"].as_str()?.to_owned(),
                    // An item without a readable expiry is treated as expired.
                    expires_at: item["expires_at"]["N"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    user: item["user_id"]["S"].as_str().map(str::to_owned),
                    // Anything but a readable `admin` is a member: least privilege.
                    role: item["role"]["S"].as_str().and_then(Role::parse).unwrap_or_default(),
                })
            })
            .collect())
    }
}
