//! The local stack every section measures against, and what the sections build from it: the run's
//! sample sizes (`BENCH_SCALE`), a fresh database, rate-limit, connections and API keys tables
//! and batch queues (`BENCH_DATABASE_URL`, `AWS_ENDPOINT_URL`), the functions' environment,
//! tokens, callers, and the requests and events the handlers are fed.
//!
//! May use the service's crates (`shared`, `local_front`, `migrate`), the AWS and PostgreSQL
//! clients and `serde_json`; nothing else of this crate, so that every section can use it.

use lambda_http::Request;
use serde_json::{Value, json};
use shared::config::{DatabaseConfig, Env};
use shared::domain::batch::Metrics;
use shared::domain::ids::{Caller, OrgId, UserId};
use uuid::Uuid;

const COMMAND_EVENT: &str = include_str!("../../../events/command-execution.json");

/// Sample sizes; `BENCH_SCALE` multiplies them.
pub struct Sizes {
    pub single: usize,
    pub http: usize,
    pub batch: usize,
    pub ingest_messages: usize,
    pub ingest_per_message: usize,
}

impl Sizes {
    pub fn from_env() -> Self {
        let scale = env_number("BENCH_SCALE", 1.0);
        let n = |base: f64| ((base * scale) as usize).max(20);
        Sizes {
            single: n(3000.0),
            http: n(2000.0),
            batch: n(500.0),
            ingest_messages: n(400.0),
            ingest_per_message: 500,
        }
    }
}

/// The number in the environment variable `name`, or `default` when it is unset or not a number.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// What `setup` made for this run.
pub struct Stack {
    pub database_url: String,
    pub table: String,
    pub connections_table: String,
    pub keys_table: String,
    pub queue_url: String,
    pub dead_letter_url: String,
}

/// The functions' environment variables against `stack`, then `extra` (which may override them).
pub fn env_for(stack: &Stack, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut vars = vec![
        ("DATABASE_URL".to_owned(), stack.database_url.clone()),
        ("DATABASE_MAX_CONNECTIONS".to_owned(), "8".to_owned()),
        ("JWT_SECRET".to_owned(), shared::config::LOCAL_DEV_SECRET.to_owned()),
        // The binaries run as in Lambda, where only a local stage accepts the public secret.
        ("STAGE".to_owned(), shared::config::LOCAL_STAGE.to_owned()),
        ("RATE_LIMIT_TABLE_NAME".to_owned(), stack.table.clone()),
        ("API_KEYS_TABLE_NAME".to_owned(), stack.keys_table.clone()),
        // High enough that nothing is refused: the benchmark measures admitted requests.
        ("RATE_LIMIT_MAX_REQUESTS".to_owned(), "50000000".to_owned()),
        ("RATE_LIMIT_USER_MAX_REQUESTS".to_owned(), "50000000".to_owned()),
        ("RATE_LIMIT_WINDOW_MS".to_owned(), "60000".to_owned()),
        ("BATCH_QUEUE_URL".to_owned(), stack.queue_url.clone()),
        ("DEAD_LETTER_QUEUE_URL".to_owned(), stack.dead_letter_url.clone()),
    ];
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    vars
}

/// `pairs` as the service's configuration reads them.
pub fn env(pairs: &[(String, String)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A fresh database, tables and queues on the local stack, and one dashboard connected.
pub async fn setup() -> Stack {
    let database_url = create_database().await;
    let database = DatabaseConfig::from_env(&Env::from_pairs([("DATABASE_URL", database_url.as_str())])).expect("url");
    migrate::Migrator { database }.run().await.expect("migrate");
    let aws = shared::app::aws_config().await;
    let table = format!("bench-{}", Uuid::new_v4().simple());
    local_front::provision::ensure_rate_limit_table(&aws_sdk_dynamodb::Client::new(&aws), &table)
        .await
        .expect("table");
    let connections_table = format!("bench-connections-{}", Uuid::new_v4().simple());
    local_front::provision::ensure_connections_table(&aws_sdk_dynamodb::Client::new(&aws), &connections_table)
        .await
        .expect("connections table");
    connect_dashboard(&aws, &connections_table).await;
    let keys_table = format!("bench-keys-{}", Uuid::new_v4().simple());
    local_front::provision::ensure_api_keys_table(&aws_sdk_dynamodb::Client::new(&aws), &keys_table)
        .await
        .expect("API keys table");
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let queue_url = format!("{endpoint}/123456789012/bench-{}", Uuid::new_v4().simple());
    let dead_letter_url =
        local_front::provision::ensure_batch_queues(&aws_sdk_sqs::Client::new(&aws), &queue_url, Default::default())
            .await
            .expect("queues");
    Stack {
        database_url,
        table,
        connections_table,
        keys_table,
        queue_url,
        dead_letter_url,
    }
}

/// A new, empty database on the server `BENCH_DATABASE_URL` names; its URL.
async fn create_database() -> String {
    let admin = std::env::var("BENCH_DATABASE_URL").expect("BENCH_DATABASE_URL (run make bench)");
    let name = format!("bench_{}", Uuid::new_v4().simple());
    connect_postgres(&admin)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    format!("{}/{name}", admin.rsplit_once('/').expect("url").0)
}

/// One dashboard of the fixtures' organization, so that the writers' pushes are real.
async fn connect_dashboard(aws: &aws_config::SdkConfig, connections_table: &str) {
    let demo = caller("demo", "dashboard");
    shared::ports::live::Connections::add(
        &shared::adapters::dynamodb::connections::DynamoConnections::new(
            aws,
            &shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
            connections_table,
        )
        .expect("connections"),
        &shared::ports::live::Connection::opened_now("bench-dashboard=", &demo),
    )
    .await
    .expect("connection");
}

/// The server's settings that decide what a commit costs, and in one word whether they are
/// durable (what a managed PostgreSQL runs) or not.
pub async fn database_settings(stack: &Stack) -> Value {
    let client = connect_postgres(&stack.database_url).await;
    let mut settings = serde_json::Map::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "wal_sync_method",
        "shared_buffers",
    ] {
        let row = client.query_one(&format!("SHOW {name}"), &[]).await.expect("SHOW");
        settings.insert(name.to_owned(), json!(row.get::<_, String>(0)));
    }
    let durable = ["fsync", "synchronous_commit", "full_page_writes"]
        .iter()
        .all(|name| settings[*name] == "on");
    json!({
        "durability": if durable { "durable" } else { "NOT durable (quick mode: fsync or synchronous commit off)" },
        "settings": settings,
    })
}

/// A PostgreSQL client on `url`, its connection driven by a spawned task.
pub async fn connect_postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// The caller `user` of the organization `org`.
pub fn caller(org: &str, user: &str) -> Caller {
    Caller::member(OrgId::parse(org).expect("org"), UserId::parse(user).expect("user"))
}

/// A token the local stack accepts for `user` of `org`.
pub fn token(org: &str, user: &str) -> String {
    local_front::token::mint(shared::config::LOCAL_DEV_SECRET, org, user, 2).expect("token")
}

/// The API Gateway event `event` (a fixture's JSON) with `token` as its bearer.
pub fn authorized_request(event: &str, token: &str) -> Request {
    let mut req = lambda_http::request::from_str(event).expect("fixture");
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header"));
    req
}

/// The command-execution fixture, authorized by `token`.
pub fn command_request(token: &str) -> Request {
    authorized_request(COMMAND_EVENT, token)
}

/// The command execution of the specification's example.
pub fn spec_command() -> Value {
    json!({"command_name": "claude_code_generate", "command_args": {"language": "typescript", "framework": "express"},
           "execution_time_ms": 1250, "status": "success", "context": {"project_type": "web_service", "complexity": "medium"}})
}

/// `items` as the metrics of one envelope of at most `limit` items.
pub fn metrics(items: Vec<Value>, limit: usize) -> Metrics {
    Metrics::from_request(&json!({ "command_executions": items }), limit).expect("metrics")
}

/// An SQS event carrying `bodies`, as the worker receives it.
pub fn sqs_event(bodies: Vec<String>) -> lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent> {
    let records: Vec<Value> = bodies
        .into_iter()
        .map(|body| json!({"messageId": Uuid::new_v4().to_string(), "body": body, "eventSource": "aws:sqs"}))
        .collect();
    let event = serde_json::from_value(json!({ "Records": records })).expect("event");
    lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default())
}
