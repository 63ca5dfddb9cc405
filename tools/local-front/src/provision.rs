//! What the local stack creates before it serves: the rate-limit table, the live connections
//! table, the API keys table and the batch queue with its dead-letter queue, as `template.yaml`
//! declares them. Idempotent; the tests use it too.
//! (Migrations run through the `migrate` function's own code.)

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    TimeToLiveSpecification,
};

/// Creates the rate-limit table unless it exists: `pk` (string) hash key, on-demand, TTL on
/// `expires_at`.
pub async fn ensure_rate_limit_table(dynamo: &Client, table: &str) -> Result<(), String> {
    let create = dynamo
        .create_table()
        .attribute_definitions(string_attribute("pk")?)
        .key_schema(hash_key("pk")?);
    ensure_table_with_ttl(dynamo, table, create).await
}

/// Creates the live connections table unless it exists: `connection_id` hash key, the
/// `org-viewers` index on `org_id` (with `expires_at`, `user_id`, `role`), on-demand, TTL on
/// `expires_at`. A table made before that index (a moto left running across an upgrade) gets it.
pub async fn ensure_connections_table(dynamo: &Client, table: &str) -> Result<(), String> {
    let index = GlobalSecondaryIndex::builder()
        .index_name(shared::adapters::dynamodb::connections::ORG_INDEX)
        .key_schema(hash_key("org_id")?)
        .projection(viewers_projection())
        .build()
        .map_err(|e| e.to_string())?;
    let create = dynamo
        .create_table()
        .attribute_definitions(string_attribute("connection_id")?)
        .attribute_definitions(string_attribute("org_id")?)
        .key_schema(hash_key("connection_id")?)
        .global_secondary_indexes(index);
    ensure_table_with_ttl(dynamo, table, create).await?;
    add_viewers_index_if_missing(dynamo, table).await
}

/// What the `org-viewers` index projects: what a push needs to know of each connection.
fn viewers_projection() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::Include)
        .non_key_attributes("expires_at")
        .non_key_attributes("user_id")
        .non_key_attributes("role")
        .build()
}

async fn add_viewers_index_if_missing(dynamo: &Client, table: &str) -> Result<(), String> {
    let name = shared::adapters::dynamodb::connections::ORG_INDEX;
    let described = dynamo
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| format!("describe {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
    let indexes = described
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default();
    if indexes.iter().any(|index| index.index_name() == Some(name)) {
        return Ok(());
    }
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(name)
        .key_schema(hash_key("org_id")?)
        .projection(viewers_projection())
        .build()
        .map_err(|e| e.to_string())?;
    dynamo
        .update_table()
        .table_name(table)
        .attribute_definitions(string_attribute("org_id")?)
        .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(create).build())
        .send()
        .await
        .map_err(|e| {
            format!(
                "add index {name} to {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

/// Creates the API keys table unless it exists: `key_id` hash key, the `by-organization` index on
/// `org_id` and `created_at` (every attribute but the secret's hash), on-demand.
pub async fn ensure_api_keys_table(dynamo: &Client, table: &str) -> Result<(), String> {
    let mut projection = Projection::builder().projection_type(ProjectionType::Include);
    for attribute in ["user_id", "role", "name", "created_by", "expires_at", "revoked_at"] {
        projection = projection.non_key_attributes(attribute);
    }
    let index = GlobalSecondaryIndex::builder()
        .index_name(shared::adapters::dynamodb::api_keys::ORG_INDEX)
        .key_schema(hash_key("org_id")?)
        .key_schema(key("created_at", KeyType::Range)?)
        .projection(projection.build())
        .build()
        .map_err(|e| e.to_string())?;
    let create = dynamo
        .create_table()
        .attribute_definitions(string_attribute("key_id")?)
        .attribute_definitions(string_attribute("org_id")?)
        .attribute_definitions(string_attribute("created_at")?)
        .key_schema(hash_key("key_id")?)
        .global_secondary_indexes(index);
    create_table(table, create).await.map(|_| ())
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, String> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| e.to_string())
}

fn hash_key(name: &str) -> Result<KeySchemaElement, String> {
    key(name, KeyType::Hash)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, String> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| e.to_string())
}

type CreateTable = aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;

/// Creates `table` as `create` describes it, on demand; whether it was created (an existing
/// table is left as it is).
async fn create_table(table: &str, create: CreateTable) -> Result<bool, String> {
    let created = create
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(false),
        Err(err) => Err(format!(
            "create table {table}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(err)
        )),
    }
}

/// Creates `table` as `create` describes it, on demand, with TTL on `expires_at`; an existing
/// table is left as it is.
async fn ensure_table_with_ttl(dynamo: &Client, table: &str, create: CreateTable) -> Result<(), String> {
    if !create_table(table, create).await? {
        return Ok(());
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

/// How the batch queue redelivers.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Seconds a received message stays invisible before it is delivered again.
    pub visibility_timeout_seconds: u32,
    /// Deliveries of a message before SQS moves it to the dead-letter queue.
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    /// The template's `BatchMaxReceiveCount` default; a visibility timeout short enough for a
    /// developer to watch a retry.
    fn default() -> Self {
        Self {
            visibility_timeout_seconds: 30,
            max_receive_count: 5,
        }
    }
}

/// Creates the batch queue named by `queue_url` (its last path segment) and its dead-letter
/// queue `<name>-dlq`, unless they exist; returns the dead-letter queue's URL.
pub async fn ensure_batch_queues(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    settings: QueueSettings,
) -> Result<String, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let name = queue_url
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("BATCH_QUEUE_URL {queue_url:?} does not end in a queue name"))?;
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .map_err(|e| format!("create {name}-dlq: {}", sqs_error(&e)))?
        .queue_url
        .ok_or("create_queue returned no URL")?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| format!("read {name}-dlq: {}", sqs_error(&e)))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or("dead-letter queue without ARN")?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": settings.max_receive_count.to_string(),
    });
    let created = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            settings.visibility_timeout_seconds.to_string(),
        )
        .send()
        .await
        .map_err(|e| format!("create {name}: {}", sqs_error(&e)))?
        .queue_url
        .ok_or("create_queue returned no URL")?;
    if created != queue_url {
        return Err(format!(
            "BATCH_QUEUE_URL is {queue_url} but the emulator named the queue {created}"
        ));
    }
    Ok(dlq_url)
}

fn sqs_error(err: &impl std::error::Error) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(err).to_string()
}
