//! Test support: the real local services started by `make test` (PostgreSQL and the moto
//! DynamoDB/SQS emulator), a fresh database and table per test, and an app wired to them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderValue};
use lambda_http::{Body, Request};
use local_front::Stack;
use serde_json::Value;
use shared::App;
use shared::config::Env;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

pub const SECRET: &str = "integration-test-secret-0123456789";
pub const COMMAND_EXECUTION_EVENT: &str = include_str!("../../events/command-execution.json");

/// The `events/` fixture of each route, by binary name.
pub fn event(binary: &str) -> &'static str {
    match binary {
        "command-execution" => COMMAND_EXECUTION_EVENT,
        "agent-interaction" => include_str!("../../events/agent-interaction.json"),
        "productivity" => include_str!("../../events/productivity.json"),
        "session-start" => include_str!("../../events/session-start.json"),
        "session-update" => include_str!("../../events/session-update.json"),
        "session-end" => include_str!("../../events/session-end.json"),
        "health" => include_str!("../../events/health.json"),
        "batch" => include_str!("../../events/batch.json"),
        "claude-code-hook" => include_str!("../../events/claude-code-hook.json"),
        "metrics-summary" => include_str!("../../events/metrics-summary.json"),
        "otlp-metrics" => include_str!("../../events/otlp-metrics.json"),
        "otlp-logs" => include_str!("../../events/otlp-logs.json"),
        other => panic!("no fixture for {other}"),
    }
}

/// The fixture of `binary` with a token for `org`/`user` and the given body.
pub fn request(binary: &str, org: &str, user: &str, body: &Value) -> Request {
    let mut req = lambda_http::request::from_str(event(binary)).expect("fixture");
    *req.body_mut() = Body::from(body.to_string());
    authorize(&mut req, org, user);
    req
}

/// The services `make test` started.
pub struct Services {
    /// An administrative URL of the shared PostgreSQL server (database `postgres`).
    pub admin_url: String,
    /// A folder the test run owns (removed when it ends).
    pub scratch: PathBuf,
}

/// Everything the service logs during the tests (request records, metrics, tracing events):
/// kept out of the test output, and readable by tests about logging.
pub fn logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        shared::telemetry::capture_into(buffer.clone());
        shared::telemetry::init();
        buffer
    })
    .clone()
}

pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    logs();
    SERVICES.get_or_init(|| {
        let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!("TEST_DATABASE_URL is not set: run the tests with `make test`, which starts PostgreSQL and moto")
        });
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL is not set: run the tests with `make test`"
        );
        let scratch = std::env::var("TEST_SCRATCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
        Services { admin_url, scratch }
    })
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Replaces the database name of a PostgreSQL URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL with a database");
    format!("{base}/{database}")
}

/// A new, empty database with the public migrations applied; its URL.
pub async fn fresh_database_on(server_url: &str) -> String {
    let name = format!("t_{}", Uuid::new_v4().simple());
    connect(server_url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let url = with_database(server_url, &name);
    let database = shared::config::DatabaseConfig::from_env(&Env::from_pairs([("DATABASE_URL", url.as_str())]))
        .expect("database URL");
    migrate::Migrator { database }.run().await.expect("migrate");
    url
}

pub async fn fresh_database() -> String {
    fresh_database_on(&services().admin_url).await
}

pub async fn dynamo() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&shared::app::aws_config().await)
}

/// A new rate-limit table in moto, shaped as template.yaml declares it.
pub async fn fresh_table() -> String {
    let name = format!("limits-{}", Uuid::new_v4().simple());
    local_front::provision::ensure_rate_limit_table(&dynamo_for_tests().await, &name)
        .await
        .expect("create table");
    name
}

/// A new live connections table in moto, shaped as template.yaml declares it.
pub async fn fresh_connections_table() -> String {
    let name = format!("connections-{}", Uuid::new_v4().simple());
    local_front::provision::ensure_connections_table(&dynamo_for_tests().await, &name)
        .await
        .expect("create connections table");
    name
}

/// A new API keys table in moto, shaped as template.yaml declares it.
pub async fn fresh_api_keys_table() -> String {
    let name = format!("keys-{}", Uuid::new_v4().simple());
    local_front::provision::ensure_api_keys_table(&dynamo_for_tests().await, &name)
        .await
        .expect("create API keys table");
    name
}

/// The DynamoDB client, once `make test`'s services are known to be there.
async fn dynamo_for_tests() -> aws_sdk_dynamodb::Client {
    services();
    dynamo().await
}

pub async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&shared::app::aws_config().await)
}

/// Test queues redeliver after one second and give up after three deliveries.
pub const TEST_QUEUE: local_front::provision::QueueSettings = local_front::provision::QueueSettings {
    visibility_timeout_seconds: 1,
    max_receive_count: 3,
};

/// A new batch queue and its dead-letter queue in moto, shaped as template.yaml declares them;
/// their URLs.
pub async fn fresh_queues() -> (String, String) {
    services();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let url = format!("{endpoint}/123456789012/batch-{}", Uuid::new_v4().simple());
    let dlq = local_front::provision::ensure_batch_queues(&sqs().await, &url, TEST_QUEUE)
        .await
        .expect("create queues");
    (url, dlq)
}

/// Every function's state on the real adapters, with its own database, table and queues.
pub struct TestApp {
    pub stack: Stack,
    pub app: Arc<App>,
    pub database_url: String,
    pub table: String,
    pub queue_url: String,
    pub dead_letter_url: String,
    /// The live connections table, when live updates are on.
    pub connections_table: Option<String>,
    /// The API keys table.
    pub keys_table: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// `settings` override or add environment variables (e.g. `RATE_LIMIT_MAX_REQUESTS`).
    pub async fn spawn_with(settings: &[(&str, &str)]) -> Self {
        let database_url = fresh_database().await;
        Self::spawn_on(&database_url, settings).await
    }

    pub async fn spawn_on(database_url: &str, settings: &[(&str, &str)]) -> Self {
        Self::spawn_with_aws(database_url, settings, &shared::app::aws_config().await).await
    }

    /// With the given AWS SDK configuration (e.g. an unreachable endpoint).
    pub async fn spawn_with_aws(database_url: &str, settings: &[(&str, &str)], aws: &aws_config::SdkConfig) -> Self {
        let table = fresh_table().await;
        let keys_table = fresh_api_keys_table().await;
        let (queue_url, dead_letter_url) = fresh_queues().await;
        let mut vars: HashMap<&str, &str> = HashMap::from([
            ("DATABASE_URL", database_url),
            ("DATABASE_MAX_CONNECTIONS", "8"),
            ("DATABASE_TIMEOUT_MS", "3000"),
            ("JWT_SECRET", SECRET),
            ("RATE_LIMIT_TABLE_NAME", table.as_str()),
            ("API_KEYS_TABLE_NAME", keys_table.as_str()),
            ("BATCH_QUEUE_URL", queue_url.as_str()),
            ("DEAD_LETTER_QUEUE_URL", dead_letter_url.as_str()),
        ]);
        vars.extend(settings.iter().copied());
        let env = Env::from_pairs(vars.clone());
        let stack = Stack::from_env(&env, aws).expect("test configuration");
        // Settings may name a table or queues of the test's own making.
        Self {
            app: stack.app.clone(),
            stack,
            database_url: database_url.to_owned(),
            table: vars["RATE_LIMIT_TABLE_NAME"].to_owned(),
            queue_url: vars["BATCH_QUEUE_URL"].to_owned(),
            dead_letter_url: vars["DEAD_LETTER_QUEUE_URL"].to_owned(),
            connections_table: vars.get("CONNECTIONS_TABLE_NAME").map(|t| t.to_string()),
            keys_table: vars["API_KEYS_TABLE_NAME"].to_owned(),
        }
    }

    /// With live updates: a fresh connections table, and the WebSocket API and its management
    /// API served (with the HTTP routes) on the returned address, as `make dev` does.
    pub async fn spawn_live(settings: &[(&str, &str)]) -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoint = format!("http://{addr}");
        let table = fresh_connections_table().await;
        let mut all = vec![
            ("CONNECTIONS_TABLE_NAME", table.as_str()),
            ("LIVE_UPDATES_ENDPOINT", endpoint.as_str()),
        ];
        all.extend_from_slice(settings);
        let app = Self::spawn_with(&all).await;
        let gateway = app.stack.gateway().expect("gateway");
        tokio::spawn(Arc::new(gateway).serve(listener));
        (app, addr)
    }

    /// Serves the template's routes over HTTP on a free port, as `make dev` does.
    pub async fn serve_http(&self) -> SocketAddr {
        let gateway = local_front::gateway::Gateway::new(local_front::TEMPLATE, local_front::handlers(&self.stack))
            .expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Arc::new(gateway).serve(listener));
        addr
    }

    /// The queue's event source, as the local front runs it (no long polling).
    pub async fn poller(&self) -> local_front::poller::Poller {
        local_front::poller::Poller::new(
            sqs().await,
            self.queue_url.clone(),
            self.stack.worker.clone(),
            std::time::Duration::ZERO,
        )
        .await
        .expect("poller")
    }

    /// Feeds the queue to the worker until it is empty (waiting out visibility timeouts of
    /// messages the worker reported failed); returns how many deliveries were made.
    pub async fn drain(&self) -> usize {
        let poller = self.poller().await;
        let mut deliveries = 0;
        let mut idle_rounds = 0;
        while idle_rounds < 3 {
            let (received, _) = poller.poll_once().await.expect("poll");
            deliveries += received;
            if received == 0 {
                idle_rounds += 1;
                tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            } else {
                idle_rounds = 0;
            }
        }
        deliveries
    }

    pub async fn db(&self) -> Client {
        connect(&self.database_url).await
    }

    /// The first column of what `sql` answers, one value per row.
    pub async fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<T> {
        let rows = self.db().await.query(sql, params).await.unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    }

    /// Rows of one table in one organization's schema.
    pub async fn count(&self, org: &str, table: &str) -> i64 {
        self.db()
            .await
            .query_one(&format!("SELECT count(*) FROM \"org_{org}\".{table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Invokes the worker with SQS records (`{"messageId", "body"}`) as Lambda's event source
/// would; the ids of the messages it reported failed.
pub async fn deliver(worker: &batch_worker::Worker, records: Value) -> Vec<String> {
    let event = serde_json::from_value(serde_json::json!({ "Records": records })).expect("SQS records");
    worker
        .handle(lambda_runtime::LambdaEvent::new(
            event,
            lambda_runtime::Context::default(),
        ))
        .await
        .expect("the worker answers")
        .batch_item_failures
        .into_iter()
        .map(|failure| failure.item_identifier)
        .collect()
}

/// Messages waiting in a queue, received (and so hidden for the visibility timeout), with their
/// message attributes.
pub async fn receive_all(queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let batch = sqs()
            .await
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

pub fn token(org: &str, user: &str) -> String {
    local_front::token::mint(SECRET, org, user, 1).expect("token")
}

/// A token of `user`, an admin of `org`.
pub fn admin_token(org: &str, user: &str) -> String {
    let admin = local_front::token::Claims {
        role: Some("admin"),
        ..Default::default()
    };
    local_front::token::mint_with(SECRET, org, user, 1, &admin).expect("token")
}

/// The `events/` fixture for command executions, with a token for `org` and the given body.
pub fn command_execution_request(org: &str, body: &Value) -> Request {
    request("command-execution", org, "dev-user", body)
}

pub fn authorize(req: &mut Request, org: &str, user: &str) {
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", token(org, user))).unwrap(),
    );
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

pub async fn answer(response: lambda_http::Response<Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    Answer { status, headers, body }
}

pub fn spec_command_example() -> Value {
    serde_json::json!({
        "command_name": "claude_code_generate",
        "command_args": {"language": "typescript", "framework": "express"},
        "execution_time_ms": 1250,
        "status": "success",
        "context": {"project_type": "web_service", "complexity": "medium"}
    })
}

/// A PostgreSQL cluster of the test's own, which it may stop, kill and restart.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
}

impl PgCluster {
    pub fn start() -> Self {
        let dir = services().scratch.join(format!("cluster-{}", Uuid::new_v4().simple()));
        let cluster = Self { dir, port: free_port() };
        cluster.run(&["start", &cluster.port.to_string()]);
        cluster
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn stop(&self) {
        self.run(&["stop"]);
    }

    pub fn kill(&self) {
        self.run(&["kill"]);
    }

    pub fn restart(&self) {
        self.run(&["start", &self.port.to_string()]);
    }

    fn run(&self, args: &[&str]) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local/pg.sh");
        let (command, rest) = args.split_first().expect("command");
        let status = Command::new("bash")
            .arg(&script)
            .arg(command)
            .arg(&self.dir)
            .args(rest)
            // Commits must survive `kill` (an immediate shutdown), so synchronous_commit stays on;
            // fsync only matters when the machine itself crashes.
            .env("PG_EXTRA_OPTIONS", "-c fsync=off")
            .status()
            .expect("run local/pg.sh");
        assert!(status.success(), "pg.sh {args:?} failed");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local/pg.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request to the local front; status, lower-cased head, JSON body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, String, Value) {
    parsed(http_raw(addr, method, path, bearer, content_type, body).await)
}

/// A raw answer with its head lower-cased and its body as JSON (`null` when it is not JSON).
pub fn parsed((status, head, body): (u16, String, String)) -> (u16, String, Value) {
    (
        status,
        head.to_lowercase(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// The headers of a response head, names lower-cased, values as sent.
pub fn header_map(head: &str) -> std::collections::BTreeMap<String, String> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
        .collect()
}

/// One HTTP/1.1 request to the local front; status, head and body as sent.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let authorization = bearer.map(|token| format!("Bearer {token}"));
    http_with_authorization(addr, method, path, authorization.as_deref(), content_type, body).await
}

/// [`http_raw`] with a whole `Authorization` header value (any scheme), or none.
pub async fn http_with_authorization(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_exchange(addr, &request).await
}

/// Sends `request` (a whole HTTP/1.1 request that asks to close the connection) to `addr` as
/// written; the answer's status, head and body as sent.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The Python of the local virtualenv (moto, jsonschema, schemathesis), installed by `make test`.
pub fn venv_python() -> std::path::PathBuf {
    let python = repo_root().join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run the tests with `make test`",
        python.display()
    );
    python
}

/// A new secret in moto's Secrets Manager holding `value` as its `SecretString`; its ARN.
pub async fn create_secret(value: &str) -> String {
    services();
    let aws = shared::app::aws_config().await;
    let client =
        shared::adapters::secrets::SecretsManager::new(&Env::from_pairs([]), &aws).expect("Secrets Manager client");
    let name = format!("metrics/test/{}", Uuid::new_v4().simple());
    let created = client
        .call(
            "CreateSecret",
            &serde_json::json!({ "Name": name, "SecretString": value }),
        )
        .await
        .expect("CreateSecret in moto");
    created["ARN"].as_str().expect("the new secret's ARN").to_owned()
}
