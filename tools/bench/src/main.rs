//! `make bench`: measures the service against the local stack (PostgreSQL and moto started by
//! `local/bench.sh`) in one run, prints a table and writes a JSON file. Latencies are compared to
//! baselines measured in the same run on the same machine, never to fixed numbers.

shared::fast_allocator!();

mod hostile;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_http::Request;
use serde_json::{Value, json};
use shared::App;
use shared::adapters::postgres::{Database, PgStore};
use shared::config::{AuthConfig, DatabaseConfig, Env, OnStoreError, RateLimitConfig};
use shared::domain::batch::{Envelope, Metrics, Source};
use shared::domain::ids::{Caller, OrgId, UserId};
use shared::http::api::Api;
use shared::http::auth::Authenticator;
use shared::ratelimit::DynamoRateLimiter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

const COMMAND_EVENT: &str = include_str!("../../../events/command-execution.json");

/// Sample sizes; `BENCH_SCALE` multiplies them.
struct Sizes {
    single: usize,
    http: usize,
    batch: usize,
    ingest_messages: usize,
    ingest_per_message: usize,
}

fn sizes() -> Sizes {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |base: f64| ((base * scale) as usize).max(20);
    Sizes {
        single: n(3000.0),
        http: n(2000.0),
        batch: n(500.0),
        ingest_messages: n(400.0),
        ingest_per_message: 500,
    }
}

#[derive(Clone, Copy)]
struct Stats {
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
}

fn stats(samples: &[f64]) -> Stats {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
    }
}

fn stats_json(s: Stats, n: usize) -> Value {
    json!({"n": n, "p50_ms": round3(s.p50), "p95_ms": round3(s.p95), "p99_ms": round3(s.p99), "mean_ms": round3(s.mean)})
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// CPU time this thread has used (excludes time blocked waiting for I/O).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Stack {
    database_url: String,
    table: String,
    connections_table: String,
    queue_url: String,
    dead_letter_url: String,
}

fn env_for(stack: &Stack, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut vars = vec![
        ("DATABASE_URL".to_owned(), stack.database_url.clone()),
        ("DATABASE_MAX_CONNECTIONS".to_owned(), "8".to_owned()),
        ("JWT_SECRET".to_owned(), shared::config::LOCAL_DEV_SECRET.to_owned()),
        // The binaries run as in Lambda, where only a local stage accepts the public secret.
        ("STAGE".to_owned(), shared::config::LOCAL_STAGE.to_owned()),
        ("RATE_LIMIT_TABLE_NAME".to_owned(), stack.table.clone()),
        // High enough that nothing is refused: the benchmark measures admitted requests.
        ("RATE_LIMIT_MAX_REQUESTS".to_owned(), "50000000".to_owned()),
        ("RATE_LIMIT_WINDOW_MS".to_owned(), "60000".to_owned()),
        ("BATCH_QUEUE_URL".to_owned(), stack.queue_url.clone()),
        ("DEAD_LETTER_QUEUE_URL".to_owned(), stack.dead_letter_url.clone()),
    ];
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    vars
}

fn env(pairs: &[(String, String)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

async fn setup() -> Stack {
    let admin = std::env::var("BENCH_DATABASE_URL").expect("BENCH_DATABASE_URL (run make bench)");
    let name = format!("bench_{}", Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let database_url = format!("{}/{name}", admin.rsplit_once('/').expect("url").0);
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
    // One dashboard of the fixtures' organization, so that the writers' pushes are real.
    let demo = Caller {
        org: OrgId::parse("demo").expect("org"),
        user: UserId::parse("dashboard").expect("user"),
    };
    shared::live::Connections::add(
        &shared::live::DynamoConnections::new(&aws, &connections_table).expect("connections"),
        &shared::live::Connection::opened_now("bench-dashboard=", &demo),
    )
    .await
    .expect("connection");
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
        queue_url,
        dead_letter_url,
    }
}

fn command_request(token: &str) -> Request {
    let mut req = lambda_http::request::from_str(COMMAND_EVENT).expect("fixture");
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header"));
    req
}

fn spec_command() -> Value {
    json!({"command_name": "claude_code_generate", "command_args": {"language": "typescript", "framework": "express"},
           "execution_time_ms": 1250, "status": "success", "context": {"project_type": "web_service", "complexity": "medium"}})
}

/// Wall-clock and own-CPU samples of one measured operation.
#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Samples {
    /// Times `work`; keeps the sample unless `warm_up`.
    async fn time<T>(&mut self, warm_up: bool, work: impl Future<Output = T>) -> T {
        let (started, cpu_started) = (Instant::now(), thread_cpu());
        let out = work.await;
        if !warm_up {
            self.wall.push(ms(started.elapsed()));
            self.cpu.push(ms(thread_cpu() - cpu_started));
        }
        out
    }
}

/// Baselines and in-process figures, all on one current-thread runtime so that the thread's CPU
/// clock sees all of our own work (the database and HTTP clients run their tasks on it too).
/// Baselines and the code under test are interleaved, one of each per round, so that they share
/// the same moments of a noisy machine.
fn in_process(stack: &Stack, n: &Sizes, results: &mut serde_json::Map<String, Value>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let vars = env_for(stack, &[]);
        let env = env(&vars);
        let aws = shared::app::aws_config().await;
        let body = spec_command();

        // Raw PostgreSQL: the same row into a same-shaped table, prepared, one round trip.
        let (mut raw, connection) = tokio_postgres::connect(&stack.database_url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        shared::adapters::postgres::migrate::provision_tenant(&mut raw, &OrgId::parse("raw").expect("org")).await.expect("tenant");
        let insert = raw
            .prepare_typed(
                "INSERT INTO \"org_raw\".command_executions (id, organization_id, user_id, command_name, command_args, \
                 execution_time_ms, status, error_message, context, \"timestamp\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())",
                &[Type::UUID, Type::TEXT, Type::TEXT, Type::TEXT, Type::JSONB, Type::FLOAT8, Type::TEXT, Type::TEXT, Type::JSONB],
            )
            .await
            .expect("prepare");
        // Raw 20-row insert: the same rows, every column from an array, prepared, one statement.
        let insert20 = raw
            .prepare_typed(
                "INSERT INTO \"org_raw\".command_executions (id, organization_id, user_id, command_name, command_args, \
                 execution_time_ms, status, error_message, context, \"timestamp\") \
                 SELECT r.id, 'raw', 'bench', r.name, r.args, r.t, r.status, r.err, r.ctx, coalesce(r.ts, now()) \
                 FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::float8[], $5::text[], $6::text[], $7::jsonb[], \
                 $8::timestamptz[]) AS r(id, name, args, t, status, err, ctx, ts)",
                &[
                    Type::UUID_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::JSONB_ARRAY,
                    Type::FLOAT8_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::JSONB_ARRAY,
                    Type::TIMESTAMPTZ_ARRAY,
                ],
            )
            .await
            .expect("prepare 20");
        // Raw DynamoDB: the conditional update the limiter makes in the common case (restart the
        // bucket's `tat` if it lies in the past), through the SDK and through the direct client.
        let sdk = aws_sdk_dynamodb::Client::new(&aws);
        let direct = shared::ratelimit::dynamo_http::DynamoHttp::new(&aws).expect("client");
        let now_us = || shared::ratelimit::now_us();
        let direct_request = |now: i64| {
            json!({
                "TableName": stack.table,
                "Key": {"pk": {"S": "bench#direct"}},
                "UpdateExpression": "SET tat = :new_tat, expires_at = :exp",
                "ConditionExpression": "attribute_not_exists(tat) OR tat < :now",
                "ExpressionAttributeValues": {
                    ":new_tat": {"N": (now + 1).to_string()},
                    ":now": {"N": now.to_string()},
                    ":exp": {"N": (now / 1_000_000 + 3600).to_string()},
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            })
        };

        // The command-execution handler, called directly, on the real adapters.
        let rate = RateLimitConfig::from_env(&env).expect("rate config");
        let limiter = Arc::new(DynamoRateLimiter::new(&aws, &rate).expect("limiter"));
        let auth = Authenticator::new(&AuthConfig::from_env(&env).expect("auth")).expect("auth");
        let db = Database::connect(&DatabaseConfig::from_env(&env).expect("db")).expect("pool");
        let app = App::new(
            Api::new(auth, limiter.clone(), OnStoreError::Deny, 1 << 20),
            Arc::new(PgStore::new(db.clone())),
        );
        let token = local_front::token::mint(shared::config::LOCAL_DEV_SECRET, "bench", "bench-user", 2).expect("token");

        let (mut pg, mut sdk_ddb, mut direct_ddb, mut handler) =
            (Samples::default(), Samples::default(), Samples::default(), Samples::default());
        let warm_up = 200;
        let mut trips_before = 0;
        for i in 0..n.single + warm_up {
            let warming = i < warm_up;
            if i == warm_up {
                trips_before = limiter.round_trips();
            }
            let params: [&(dyn ToSql + Sync); 9] = [
                &Uuid::now_v7(),
                &"raw",
                &"bench",
                &"claude_code_generate",
                &body["command_args"],
                &1250.0f64,
                &"success",
                &None::<String>,
                &body["context"],
            ];
            pg.time(warming, raw.execute(&insert, &params)).await.expect("raw insert");
            let number = |n: i64| aws_sdk_dynamodb::types::AttributeValue::N(n.to_string());
            let now = now_us();
            sdk_ddb
                .time(
                    warming,
                    sdk.update_item()
                        .table_name(&stack.table)
                        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("bench#raw".into()))
                        .update_expression("SET tat = :new_tat, expires_at = :exp")
                        .condition_expression("attribute_not_exists(tat) OR tat < :now")
                        .expression_attribute_values(":new_tat", number(now + 1))
                        .expression_attribute_values(":now", number(now))
                        .expression_attribute_values(":exp", number(now / 1_000_000 + 3600))
                        .return_values_on_condition_check_failure(
                            aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .send(),
                )
                .await
                .expect("raw update");
            let request = direct_request(now_us());
            direct_ddb.time(warming, direct.call("UpdateItem", &request)).await.expect("direct update");
            let req = command_request(&token);
            let response = handler.time(warming, command_execution::handle(&app, req)).await.expect("handler");
            assert_eq!(response.status(), 201, "benchmark requests must be admitted and stored");
        }
        let trips = (limiter.round_trips() - trips_before) as f64 / n.single as f64;

        // The worker fed one SQS event of one 20-metric envelope, against the raw 20-row insert.
        let worker = batch_worker::Worker::from_env(&env, &aws).expect("worker");
        let caller = Caller {
            org: OrgId::parse("bench").expect("org"),
            user: UserId::parse("bench-user").expect("user"),
        };
        let (mut pg20, mut batch) = (Samples::default(), Samples::default());
        for i in 0..n.batch + 50 {
            let warming = i < 50;
            let ids: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
            let names = vec!["claude_code_generate"; 20];
            let args = vec![body["command_args"].clone(); 20];
            let times = vec![1250.0f64; 20];
            let statuses = vec!["success"; 20];
            let errors = vec![None::<String>; 20];
            let ctx = vec![body["context"].clone(); 20];
            let stamps = vec![None::<chrono::DateTime<chrono::Utc>>; 20];
            pg20.time(warming, raw.execute(&insert20, &[&ids, &names, &args, &times, &statuses, &errors, &ctx, &stamps]))
                .await
                .expect("raw 20");
            let metrics = Metrics::from_request(&json!({"command_executions": vec![spec_command(); 20]}), 20).expect("batch");
            let message = Envelope::new(&caller, Source::Api, metrics).to_message().expect("message");
            let response = batch.time(warming, worker.handle(sqs_event(vec![message]))).await.expect("worker");
            assert!(response.batch_item_failures.is_empty());
        }

        let baseline_ddb = if stats(&direct_ddb.wall).p95 < stats(&sdk_ddb.wall).p95 { &direct_ddb } else { &sdk_ddb };
        let (pg_s, ddb_s, pg20_s) = (stats(&pg.wall), stats(&baseline_ddb.wall), stats(&pg20.wall));
        let (wall_s, batch_s) = (stats(&handler.wall), stats(&batch.wall));
        results.insert("raw_postgres_insert".into(), stats_json(pg_s, n.single));
        results.insert("raw_postgres_insert_cpu".into(), stats_json(stats(&pg.cpu), n.single));
        results.insert("raw_dynamodb_conditional_update".into(), stats_json(stats(&sdk_ddb.wall), n.single));
        results.insert("raw_dynamodb_update_cpu".into(), stats_json(stats(&sdk_ddb.cpu), n.single));
        results.insert("raw_dynamodb_update_direct".into(), stats_json(stats(&direct_ddb.wall), n.single));
        results.insert("raw_dynamodb_update_direct_cpu".into(), stats_json(stats(&direct_ddb.cpu), n.single));
        results.insert("raw_dynamodb_baseline".into(), stats_json(ddb_s, n.single));
        results.insert("raw_postgres_20_row_insert".into(), stats_json(pg20_s, n.batch));
        results.insert("handler_in_process".into(), stats_json(wall_s, n.single));
        results.insert("handler_cpu".into(), stats_json(stats(&handler.cpu), n.single));
        results.insert("worker_batch_of_20".into(), stats_json(batch_s, n.batch));
        results.insert("worker_batch_of_20_cpu".into(), stats_json(stats(&batch.cpu), n.batch));
        results.insert("dynamodb_round_trips_per_admitted_request".into(), json!(round3(trips)));
        results.insert(
            "ratios".into(),
            json!({
                "handler_p95_over_raw_p95_sum": round3(wall_s.p95 / (pg_s.p95 + ddb_s.p95)),
                "handler_p50_over_raw_p50_sum": round3(wall_s.p50 / (pg_s.p50 + ddb_s.p50)),
                "batch20_p50_over_raw20_p50": round3(batch_s.p50 / pg20_s.p50),
                "batch20_p95_over_raw20_p95": round3(batch_s.p95 / pg20_s.p95),
            }),
        );
    });
}

fn sqs_event(bodies: Vec<String>) -> lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent> {
    let records: Vec<Value> = bodies
        .into_iter()
        .map(|body| json!({"messageId": Uuid::new_v4().to_string(), "body": body, "eventSource": "aws:sqs"}))
        .collect();
    let event = serde_json::from_value(json!({ "Records": records })).expect("event");
    lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default())
}

/// The same handler behind the local front, over HTTP/1.1 with keep-alive.
async fn over_http(stack: &Stack, n: &Sizes, results: &mut serde_json::Map<String, Value>) {
    let (addr, mut sender) = serve_front(stack, false).await;
    let token =
        local_front::token::mint(shared::config::LOCAL_DEV_SECRET, "bench-http", "bench-user", 2).expect("token");
    let mut samples = Vec::with_capacity(n.http);
    for i in 0..n.http + 200 {
        let elapsed = post_command(&mut sender, addr, &token).await;
        if i >= 200 {
            samples.push(ms(elapsed));
        }
    }
    results.insert("handler_over_http".into(), stats_json(stats(&samples), n.http));
}

/// A front serving the template's routes on a free port, with live updates when `live` names the
/// connections table; its address and a kept-alive HTTP connection to it.
async fn serve_front(
    stack: &Stack,
    live: bool,
) -> (
    std::net::SocketAddr,
    hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut extra = vec![];
    if live {
        extra.push(("CONNECTIONS_TABLE_NAME", stack.connections_table.clone()));
        extra.push(("LIVE_UPDATES_ENDPOINT", format!("http://{addr}")));
    }
    let vars = env_for(stack, &extra);
    let aws = shared::app::aws_config().await;
    let front = local_front::Stack::from_env(&env(&vars), &aws).expect("stack");
    tokio::spawn(Arc::new(front.gateway().expect("gateway")).serve(listener));
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    (addr, sender)
}

/// One command execution over HTTP; its wall time.
async fn post_command(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    addr: std::net::SocketAddr,
    token: &str,
) -> Duration {
    use http_body_util::{BodyExt, Full};
    let req = hyper::Request::post("/api/v1/metrics/command-execution")
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(spec_command().to_string())))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let started = Instant::now();
    let response = sender.send_request(req).await.expect("send");
    let status = response.status();
    let _ = response.into_body().collect().await;
    assert_eq!(status, 201);
    started.elapsed()
}

/// The write path with live updates on (one dashboard of the organization connected) against
/// the same path with them off, interleaved; and how long after the response the update arrives.
async fn live_updates(stack: &Stack, n: &Sizes, results: &mut serde_json::Map<String, Value>) {
    let (off_addr, mut off) = serve_front(stack, false).await;
    let (on_addr, mut on) = serve_front(stack, true).await;
    let token =
        local_front::token::mint(shared::config::LOCAL_DEV_SECRET, "bench-live", "bench-user", 2).expect("token");
    let mut updates =
        local_front::live::watch(&format!("ws://{on_addr}{}?token={token}", local_front::live::LIVE_PATH))
            .await
            .expect("watch");
    let (mut off_samples, mut on_samples, mut arrivals) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n.http + 200 {
        let without = post_command(&mut off, off_addr, &token).await;
        let with = post_command(&mut on, on_addr, &token).await;
        let answered = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), updates.recv())
            .await
            .expect("the update arrives")
            .expect("socket open");
        if i >= 200 {
            off_samples.push(ms(without));
            on_samples.push(ms(with));
            arrivals.push(ms(answered.elapsed()));
        }
    }
    let (off_stats, on_stats) = (stats(&off_samples), stats(&on_samples));
    results.insert("handler_over_http_live_off".into(), stats_json(off_stats, n.http));
    results.insert("handler_over_http_live_on".into(), stats_json(on_stats, n.http));
    results.insert(
        "live_update_after_response".into(),
        stats_json(stats(&arrivals), n.http),
    );
    let ratios = results.entry("ratios").or_insert_with(|| json!({}));
    ratios["http_p95_live_on_over_off"] = json!(round3(on_stats.p95 / off_stats.p95));
    ratios["http_p50_live_on_over_off"] = json!(round3(on_stats.p50 / off_stats.p50));
}

/// Many envelopes fed to the worker as SQS events, several events at a time.
async fn sustained_ingest(stack: &Stack, n: &Sizes, results: &mut serde_json::Map<String, Value>) {
    let vars = env_for(
        stack,
        &[
            ("WORKER_CONCURRENCY", "4".into()),
            ("DATABASE_MAX_CONNECTIONS", "8".into()),
        ],
    );
    let aws = shared::app::aws_config().await;
    let worker = Arc::new(batch_worker::Worker::from_env(&env(&vars), &aws).expect("worker"));
    let orgs = ["ingest_a", "ingest_b", "ingest_c", "ingest_d"];
    let mut events = Vec::new();
    for chunk in 0..n.ingest_messages.div_ceil(10) {
        let bodies: Vec<String> = (0..10)
            .map(|i| {
                let caller = Caller {
                    org: OrgId::parse(orgs[(chunk * 10 + i) % orgs.len()]).expect("org"),
                    user: UserId::parse("importer").expect("user"),
                };
                let items: Vec<Value> = (0..n.ingest_per_message)
                    .map(|k| json!({"command_name": "lint", "execution_time_ms": k, "status": "success", "context": {"k": k}}))
                    .collect();
                let metrics = Metrics::from_request(&json!({ "command_executions": items }), 1000).expect("metrics");
                Envelope::new(&caller, Source::Import, metrics).to_message().expect("message")
            })
            .collect();
        events.push(bodies);
    }
    // Warm up: provision the organizations' schemas.
    worker
        .handle(sqs_event(vec![events[0][0].clone()]))
        .await
        .expect("warm-up");
    let total_metrics = events.len() * 10 * n.ingest_per_message;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(2));
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for bodies in events {
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        let worker = worker.clone();
        running.spawn(async move {
            let response = worker.handle(sqs_event(bodies)).await.expect("worker");
            drop(permit);
            response.batch_item_failures.len()
        });
    }
    let mut failures = 0;
    while let Some(joined) = running.join_next().await {
        failures += joined.expect("task");
    }
    let elapsed = started.elapsed();
    assert_eq!(failures, 0);
    results.insert(
        "worker_sustained_ingest".into(),
        json!({
            "metrics": total_metrics,
            "metrics_per_message": n.ingest_per_message,
            "seconds": round3(elapsed.as_secs_f64()),
            "metrics_per_second": (total_metrics as f64 / elapsed.as_secs_f64()).round(),
        }),
    );
}

const SUMMARY_EVENT: &str = include_str!("../../../events/metrics-summary.json");

/// `GET /api/v1/metrics/summary` over `BENCH_SUMMARY_ROWS` (default 1,000,000) command
/// executions written by the worker's write path (which keeps the aggregates): 20 users working
/// 09:00-17:00 UTC for 30 days, each using 15 of 30 commands. Baseline: the specification's
/// per-user query (count and average since a time) over the raw rows.
async fn summary_query(stack: &Stack, results: &mut serde_json::Map<String, Value>) {
    let rows: usize = std::env::var("BENCH_SUMMARY_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let vars = env_for(stack, &[("DATABASE_MAX_CONNECTIONS", "8".into())]);
    let aws = shared::app::aws_config().await;
    let worker = Arc::new(batch_worker::Worker::from_env(&env(&vars), &aws).expect("worker"));
    let per_message = 500;
    let now = chrono::Utc::now();
    let first_day = chrono::DurationRound::duration_trunc(now, chrono::Duration::days(1)).expect("day")
        - chrono::Duration::days(29);
    let working_minutes = 30 * 8 * 60;
    let message = |m: usize| {
        let user = m % 20;
        let caller = Caller {
            org: OrgId::parse("summary_bench").expect("org"),
            user: UserId::parse(&format!("user{user:02}")).expect("user"),
        };
        let items: Vec<Value> = (0..per_message)
            .map(|k| {
                let i = m * per_message + k;
                let minute = i * 7919 % working_minutes;
                let at = first_day
                    + chrono::Duration::days((minute / 480) as i64)
                    + chrono::Duration::hours(9)
                    + chrono::Duration::minutes((minute % 480) as i64);
                json!({"command_name": format!("cmd{:02}", (user + i % 15) % 30), "execution_time_ms": (i % 977) as f64 / 3.0,
                       "status": if i.is_multiple_of(11) { "error" } else { "success" }, "timestamp": at.to_rfc3339()})
            })
            .collect();
        let metrics = Metrics::from_request(&json!({ "command_executions": items }), 1000).expect("metrics");
        Envelope::new(&caller, Source::Import, metrics)
            .to_message()
            .expect("message")
    };
    let messages = rows.div_ceil(per_message);
    let written = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(2));
    let mut running = tokio::task::JoinSet::new();
    for first in (0..messages).step_by(10) {
        let bodies: Vec<String> = (first..(first + 10).min(messages)).map(message).collect();
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        let worker = worker.clone();
        running.spawn(async move {
            let failed = worker
                .handle(sqs_event(bodies))
                .await
                .expect("worker")
                .batch_item_failures
                .len();
            drop(permit);
            failed
        });
    }
    while let Some(failed) = running.join_next().await {
        assert_eq!(failed.expect("task"), 0);
    }
    let write_seconds = written.elapsed().as_secs_f64();

    // A settled table, as autovacuum leaves it in service.
    let (admin, connection) = tokio_postgres::connect(&stack.database_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    admin.batch_execute("ANALYZE").await.expect("analyze");
    let env = env(&vars);
    let app = App::from_env(&env, &aws).expect("app");
    let token =
        local_front::token::mint(shared::config::LOCAL_DEV_SECRET, "summary_bench", "user00", 2).expect("token");
    // The last 30 days, from an arbitrary minute: whole days from daily rows, the rest hourly.
    let since = (now - chrono::Duration::days(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let handler = time_summaries(&app, &token, &since, false, 300).await;
    let handler_p95 = time_summaries(&app, &token, &since, true, 60).await;
    // The specification's query (count and average time per user since a time) alone: the
    // aggregates' statement and its decoding, without authentication and rate limiting.
    let query = shared::domain::summary::SummaryQuery::parse([("group_by", "user"), ("since", since.as_str())], now)
        .expect("query");
    let caller = Caller {
        org: OrgId::parse("summary_bench").expect("org"),
        user: UserId::parse("user00").expect("user"),
    };
    let mut query_only = Vec::new();
    for i in 0..310 {
        let began = Instant::now();
        app.store.aggregates(&caller, &query).await.expect("aggregates");
        if i >= 10 {
            query_only.push(ms(began.elapsed()));
        }
    }
    let (raw, connection) = tokio_postgres::connect(&stack.database_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let mut scan = Vec::new();
    for _ in 0..6 {
        let began = Instant::now();
        raw.query(
            "SELECT user_id, count(*), avg(execution_time_ms) FROM \"org_summary_bench\".command_executions \
             WHERE \"timestamp\" >= $1 GROUP BY user_id",
            &[&(now - chrono::Duration::days(30))],
        )
        .await
        .expect("raw query");
        scan.push(ms(began.elapsed()));
    }
    let handler = stats(&handler);
    let handler_p95 = stats(&handler_p95);
    let query_only = stats(&query_only);
    let scan = stats(&scan);
    results.insert(
        "summary_over_raw_rows".into(),
        json!({
            "rows": messages * per_message,
            "write_seconds": round3(write_seconds),
            "write_metrics_per_second": ((messages * per_message) as f64 / write_seconds).round(),
            "summary_handler_ms": stats_json(handler, 300),
            "summary_handler_with_p95_ms": stats_json(handler_p95, 60),
            "per_user_query_on_aggregates_ms": stats_json(query_only, 300),
            "raw_per_user_scan_ms": stats_json(scan, 6),
            "specification_10k_query_ms": 8.7,
        }),
    );
}

/// Milliseconds of `runs` summary requests (group_by user, command and day in turn), after warm-up.
async fn time_summaries(app: &App, token: &str, since: &str, p95: bool, runs: usize) -> Vec<f64> {
    let mut samples = Vec::new();
    for i in 0..runs + 10 {
        let group_by = ["user", "command", "day"][i % 3];
        let mut req = lambda_http::request::from_str(SUMMARY_EVENT).expect("fixture");
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().expect("header"));
        let query: std::collections::HashMap<String, String> = [
            ("group_by".to_owned(), group_by.to_owned()),
            ("since".to_owned(), since.to_owned()),
            ("p95".to_owned(), p95.to_string()),
        ]
        .into();
        let req = lambda_http::RequestExt::with_query_string_parameters(
            req,
            lambda_http::aws_lambda_events::query_map::QueryMap::from(query),
        );
        let began = Instant::now();
        let response = metrics_summary::handle(app, req).await.expect("summary");
        assert_eq!(response.status(), 200, "{:?}", response.body());
        if i >= 10 {
            samples.push(ms(began.elapsed()));
        }
    }
    samples
}

/// Each function's release binary under a Lambda Runtime API: time until it asks for its first
/// event, and its peak resident memory after a stream of events.
async fn functions(stack: &Stack, results: &mut serde_json::Map<String, Value>) {
    let release_dir = std::env::var("BENCH_RELEASE_DIR").unwrap_or_else(|_| "target/release".into());
    let events_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let zip_dir = std::env::var("BENCH_ZIP_DIR").unwrap_or_else(|_| "target/lambda".into());
    let mut out = serde_json::Map::new();
    let manifests =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../functions")).expect("functions");
    let mut names: Vec<String> = manifests
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let binary = std::path::Path::new(&release_dir).join(&name);
        if !binary.exists() {
            eprintln!("  {name}: no release binary at {}", binary.display());
            continue;
        }
        let event = std::fs::read_to_string(events_dir.join(format!("{name}.json"))).expect("event fixture");
        let invocations = match name.as_str() {
            "migrate" | "session-reaper" => 5,
            "batch-worker" => 200,
            _ => 1000,
        };
        // Start-up: the median of several cold starts, each until the first request for work.
        let mut startups = Vec::new();
        for _ in 0..STARTS {
            let api = local_front::runtime_api::RuntimeApi::default();
            let addr = api.start().await;
            let spawned = Instant::now();
            let mut child = launch(&binary, &name, addr, stack).spawn().expect("spawn");
            while api.first_poll().is_none() {
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            startups.push(ms(api.first_poll().expect("polled") - spawned));
            let _ = child.kill().await;
        }
        let startup = stats(&startups).p50;
        // Peak resident memory after a stream of events.
        let api = local_front::runtime_api::RuntimeApi::default();
        let addr = api.start().await;
        let mut child = launch(&binary, &name, addr, stack).spawn().expect("spawn");
        for _ in 0..invocations {
            api.push(event.clone());
        }
        api.wait_for(invocations).await;
        let peak_kb = child.id().and_then(peak_rss_kb).unwrap_or(0);
        let _ = child.kill().await;
        let (flushes, pushes) = (api.extension_done(), api.pushes());
        let zip = std::path::Path::new(&zip_dir).join(&name).join("bootstrap.zip");
        let zip_bytes = std::fs::metadata(&zip).map(|m| m.len()).ok();
        eprintln!(
            "  {name:<18} start-up {startup:>6.1} ms (median of {STARTS})  peak RSS {:>6.1} MB  {} invocations ({} errors), \
             {flushes} extension flushes, {pushes} live pushes",
            peak_kb as f64 / 1024.0,
            api.responses(),
            api.errors().len()
        );
        out.insert(
            name,
            json!({
                "startup_ms": round3(startup),
                "startup_runs_ms": startups.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
                "peak_rss_mb": round3(peak_kb as f64 / 1024.0),
                "invocations": invocations,
                "errors": api.errors().len(),
                "extension_flushes": flushes,
                "live_pushes": pushes,
                "arm64_zip_bytes": zip_bytes,
            }),
        );
    }
    results.insert("functions".into(), Value::Object(out));
}

/// Cold starts measured per function.
const STARTS: usize = 7;

/// The command that runs a function's binary as Lambda would, against the Runtime API at `addr`.
fn launch(binary: &std::path::Path, name: &str, addr: std::net::SocketAddr, stack: &Stack) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(env_for(stack, &[("SESSION_IDLE_TIMEOUT_MS", "3600000".into())]))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_ENDPOINT_URL", std::env::var("AWS_ENDPOINT_URL").expect("endpoint"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    // Live updates on, as deployed: the writers push to the fixtures' organization's dashboard
    // through the Runtime API stand-in, which also plays the management API.
    if name == "live-connection" || local_front::LIVE_WRITERS.contains(&name) {
        command.env("CONNECTIONS_TABLE_NAME", &stack.connections_table);
    }
    if local_front::LIVE_WRITERS.contains(&name) {
        command.env("LIVE_UPDATES_ENDPOINT", format!("http://{addr}"));
    }
    command
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    json!({
        // Counted from /proc/cpuinfo: the benchmark itself runs pinned to one CPU.
        "cpus": std::fs::read_to_string("/proc/cpuinfo").map(|c| c.lines().filter(|l| l.starts_with("processor")).count()).unwrap_or(0),
        "pinning": "benchmark on CPU 0; PostgreSQL and moto on the last CPU",
        "cpu_model": cpu,
        "date": chrono::Utc::now().to_rfc3339(),
    })
}

/// The targets of the benchmark, as (name, measured, limit, lower-is-better).
fn targets(results: &serde_json::Map<String, Value>) -> Vec<(String, f64, f64, bool)> {
    let get = |path: &[&str]| {
        let mut v = &Value::Object(results.clone());
        for key in path {
            v = &v[*key];
        }
        v.as_f64().unwrap_or(f64::NAN)
    };
    let mut list = vec![
        (
            "single-metric p95 / (raw PG p95 + raw DynamoDB p95)".to_owned(),
            get(&["ratios", "handler_p95_over_raw_p95_sum"]),
            1.25,
            true,
        ),
        (
            "own CPU per request p95 (ms)".to_owned(),
            get(&["handler_cpu", "p95_ms"]),
            0.2,
            true,
        ),
        (
            "batch of 20 p50 / raw 20-row insert p50".to_owned(),
            get(&["ratios", "batch20_p50_over_raw20_p50"]),
            2.0,
            true,
        ),
        (
            "sustained worker ingest (metrics/s)".to_owned(),
            get(&["worker_sustained_ingest", "metrics_per_second"]),
            50_000.0,
            false,
        ),
        (
            "DynamoDB round trips per admitted request".to_owned(),
            get(&["dynamodb_round_trips_per_admitted_request"]),
            1.05,
            true,
        ),
        (
            "summary p95 over 1M rows, 30 days (ms; spec: 8.7 for 10K)".to_owned(),
            get(&["summary_over_raw_rows", "summary_handler_ms", "p95_ms"]),
            8.7,
            true,
        ),
        (
            "per-user query on the aggregates p95, 1M rows (ms; spec: 8.7 for 10K)".to_owned(),
            get(&["summary_over_raw_rows", "per_user_query_on_aggregates_ms", "p95_ms"]),
            8.7,
            true,
        ),
    ];
    if let Some(hostile) = results.get("hostile_input") {
        list.extend(hostile::targets(hostile));
    }
    if let Some(Value::Object(functions)) = results.get("functions") {
        for (name, f) in functions {
            list.push((
                format!("{name}: peak RSS (MB)"),
                f["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
                20.0,
                true,
            ));
            list.push((
                format!("{name}: start-up (ms)"),
                f["startup_ms"].as_f64().unwrap_or(f64::NAN),
                20.0,
                true,
            ));
            if let Some(bytes) = f["arm64_zip_bytes"].as_f64() {
                list.push((format!("{name}: arm64 zip (MB)"), bytes / 1e6, 6.0, true));
            }
        }
    }
    list
}

fn main() {
    shared::telemetry::init();
    let n = sizes();
    let setup_runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stack = setup_runtime.block_on(setup());
    let mut results = serde_json::Map::new();

    // BENCH_SECTIONS=in_process,http,live,ingest,functions,summary,hostile selects parts (all by default).
    let sections = std::env::var("BENCH_SECTIONS")
        .unwrap_or_else(|_| "in_process,http,live,ingest,functions,summary,hostile".into());
    let wanted = |name: &str| sections.split(',').any(|s| s.trim() == name);
    if wanted("in_process") {
        eprintln!("measuring baselines, the handler in process and the worker (current-thread runtime)...");
        in_process(&stack, &n, &mut results);
    }
    if wanted("http") {
        eprintln!("measuring the handler over HTTP through the local front...");
        setup_runtime.block_on(over_http(&stack, &n, &mut results));
    }
    if wanted("live") {
        eprintln!("measuring the write path with live updates on and off (over HTTP, interleaved)...");
        setup_runtime.block_on(live_updates(&stack, &n, &mut results));
    }
    if wanted("functions") {
        eprintln!("measuring each function's release binary (start-up, peak RSS)...");
        setup_runtime.block_on(functions(&stack, &mut results));
    }
    if wanted("ingest") {
        eprintln!("measuring sustained worker ingest...");
        setup_runtime.block_on(sustained_ingest(&stack, &n, &mut results));
    }
    if wanted("hostile") {
        eprintln!("timing the sanitiser, the redaction and hook content on the worst input shapes...");
        hostile::measure_all(&mut results);
    }
    if wanted("summary") {
        eprintln!("writing the summary benchmark's rows through the worker and querying them...");
        setup_runtime.block_on(summary_query(&stack, &mut results));
    }

    let targets = targets(&results);
    eprintln!("\n{:<58} {:>12} {:>10}  result", "measure", "value", "target");
    for (name, value, limit, lower) in &targets {
        let met = if *lower { value <= limit } else { value >= limit };
        let op = if *lower { "<=" } else { ">=" };
        eprintln!(
            "{name:<58} {value:>12.3} {op}{limit:>8}  {}",
            if met { "met" } else { "MISSED" }
        );
    }
    eprintln!(
        "\n{:<36} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p95", "p99", "mean"
    );
    for key in [
        "raw_postgres_insert",
        "raw_dynamodb_conditional_update",
        "raw_dynamodb_update_direct",
        "handler_in_process",
        "handler_over_http",
        "handler_over_http_live_off",
        "handler_over_http_live_on",
        "live_update_after_response",
        "handler_cpu",
        "raw_postgres_insert_cpu",
        "raw_dynamodb_update_cpu",
        "raw_dynamodb_update_direct_cpu",
        "raw_postgres_20_row_insert",
        "worker_batch_of_20",
        "worker_batch_of_20_cpu",
    ] {
        let Some(s) = results.get(key) else { continue };
        eprintln!(
            "{key:<36} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p95_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["mean_ms"].as_f64().unwrap_or(0.0)
        );
    }
    let output = json!({
        "machine": machine(),
        "results": results,
        "targets": targets.iter().map(|(name, value, limit, lower)| json!({
            "measure": name, "value": round3(*value), "target": limit,
            "comparison": if *lower { "<=" } else { ">=" },
            "met": if *lower { value <= limit } else { value >= limit },
        })).collect::<Vec<_>>(),
    });
    let path = std::env::var("BENCH_OUTPUT").unwrap_or_else(|_| ".local/bench/results.json".into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&path, serde_json::to_string_pretty(&output).expect("json")).expect("write results");
    eprintln!("\nresults written to {path}");
}
