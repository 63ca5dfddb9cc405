//! What the local stack creates before it serves: the rate-limit table (as `template.yaml`
//! declares it) and the public-schema migrations. Idempotent; the tests use it too.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use shared::db::migrate::{migrate_all_tenants, migrate_public};

/// Creates the rate-limit table unless it exists: `pk` (string) hash key, on-demand, TTL on
/// `expires_at`.
pub async fn ensure_rate_limit_table(dynamo: &Client, table: &str) -> Result<(), String> {
    let created = dynamo
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            return Ok(());
        }
        Err(err) => {
            return Err(format!(
                "create table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(err)
            ));
        }
    }
    dynamo
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| {
            format!(
                "enable TTL on {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

/// Applies the public migrations and upgrades existing tenants; returns (public, tenants) counts.
pub async fn migrate(database_url: &str) -> Result<(usize, usize), String> {
    let (mut client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to PostgreSQL: {e}"))?;
    let driver = tokio::spawn(connection);
    let public = migrate_public(&mut client)
        .await
        .map_err(|e| format!("public migrations: {e}"))?;
    let tenants = migrate_all_tenants(&mut client)
        .await
        .map_err(|e| format!("tenant migrations: {e}"))?;
    drop(client);
    let _ = driver.await;
    Ok((public, tenants))
}
