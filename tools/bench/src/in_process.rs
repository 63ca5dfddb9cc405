//! Baselines and in-process figures: a raw PostgreSQL insert, the handler's own statement issued
//! directly (the row and its aggregates; prepared, and unnamed as the handler sends it), a raw
//! DynamoDB conditional update (through the SDK and through the direct client), the
//! command-execution handler called directly, a raw 20-row insert and the worker fed one
//! 20-metric envelope. All run on one current-thread runtime so that the thread's CPU clock sees
//! all of our own work (the database and HTTP clients run their tasks on it too). Baselines and the code under test are
//! interleaved, one of each per round in an order shuffled each round, so that they share the
//! same moments of a noisy machine and none always follows the same neighbour.
//!
//! May use `stats` and `stack`, the service's crates and the AWS and PostgreSQL clients.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use shared::App;
use shared::adapters::dynamodb::DynamoRateLimiter;
use shared::adapters::dynamodb::client::UpdateItem;
use shared::adapters::postgres::{Database, PgStore};
use shared::config::{AuthConfig, DatabaseConfig, Env, OnStoreError, RateLimitConfig};
use shared::domain::batch::{Envelope, Source};
use shared::domain::ids::OrgId;
use shared::http::api::Api;
use shared::http::auth::Authenticator;
use tokio_postgres::Statement;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::stack::{Sizes, Stack, caller, command_request, env, env_for, metrics, spec_command, sqs_event, token};
use crate::stats::{RoundOrder, Samples, Stats, round3};

/// Rounds run before the single-metric samples are kept.
const SINGLE_WARM_UP: usize = 200;
/// Rounds run before the batch samples are kept.
const BATCH_WARM_UP: usize = 50;
/// Rows of the batch round: one envelope, one statement.
const BATCH_ROWS: usize = 20;

/// The raw insert's target: a table shaped as the service's, in a tenant of its own.
const RAW_INSERT_INTO: &str = "INSERT INTO \"org_raw\".command_executions (id, organization_id, user_id, \
     command_name, command_args, execution_time_ms, status, error_message, context, \"timestamp\")";

/// The handler's own statement (tenant migration 0008) into the raw tenant.
const AGGREGATED_INSERT: &str = "SELECT stored_id, stored_at, $3 FROM \"org_raw\".insert_command_execution($2, $3, now(), \
     $1, $4, $5, $6, $7, $8, $9, $10)";
/// The types of [`command_row`]'s parameters, as the handler declares them.
const COMMAND_ROW_TYPES: [Type; 10] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::FLOAT8,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TIMESTAMPTZ,
];

/// The limiter's update in the common case: restart the bucket's `tat` if it lies in the past.
const UPDATE_EXPRESSION: &str = "SET tat = :new_tat, expires_at = :exp";
const UPDATE_CONDITION: &str = "attribute_not_exists(tat) OR tat < :now";

pub fn measure(stack: &Stack, sizes: &Sizes, results: &mut Map<String, Value>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let vars = env_for(stack, &[]);
        let env = env(&vars);
        let aws = shared::app::aws_config().await;
        let raw = RawPostgres::prepare(&stack.database_url).await;
        let dynamo = RawDynamo {
            sdk: aws_sdk_dynamodb::Client::new(&aws),
            direct: shared::adapters::dynamodb::client::DynamoHttp::new(
                &aws,
                &shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
            )
            .expect("client"),
            table: &stack.table,
        };
        let (app, limiter) = command_app(&env, &aws);
        let single = single_metric_rounds(&raw, &dynamo, &app, &limiter, sizes.single).await;
        let worker = batch_worker::Worker::from_env(&env, &aws).expect("worker");
        let batch = batch_rounds(&raw, &worker, sizes.batch).await;
        record(results, sizes, &single, &batch);
    });
}

/// The raw PostgreSQL baselines: a client and its prepared statements.
struct RawPostgres {
    client: tokio_postgres::Client,
    /// The same row as the handler's into a same-shaped table, one round trip.
    insert: Statement,
    /// The batch's rows, every column from an array, one statement.
    insert20: Statement,
    /// The handler's own statement (the row and its aggregates, tenant migration 0008), issued
    /// directly: the database's share of a single metric, without the service around it.
    insert_aggregated: Statement,
    /// The same statement as the handler sends it: unnamed, parsed and planned by the server on
    /// every call (`query_typed`, which proxies in transaction mode need; see `postgres/mod.rs`).
    aggregated_sql: &'static str,
}

impl RawPostgres {
    async fn prepare(database_url: &str) -> Self {
        let mut client = crate::stack::connect_postgres(database_url).await;
        shared::adapters::postgres::migrate::provision_tenant(&mut client, &OrgId::parse("raw").expect("org"))
            .await
            .expect("tenant");
        let insert = client
            .prepare_typed(
                &format!("{RAW_INSERT_INTO} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())"),
                // The row without its timestamp: the plain insert stamps `now()`.
                &COMMAND_ROW_TYPES[..9],
            )
            .await
            .expect("prepare");
        let insert20 = client
            .prepare_typed(
                &format!(
                    "{RAW_INSERT_INTO} \
                     SELECT r.id, 'raw', 'bench', r.name, r.args, r.t, r.status, r.err, r.ctx, coalesce(r.ts, now()) \
                     FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::float8[], $5::text[], $6::text[], $7::jsonb[], \
                     $8::timestamptz[]) AS r(id, name, args, t, status, err, ctx, ts)"
                ),
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
        let insert_aggregated = client
            .prepare_typed(AGGREGATED_INSERT, &COMMAND_ROW_TYPES)
            .await
            .expect("prepare the aggregated insert");
        RawPostgres {
            client,
            insert,
            insert20,
            insert_aggregated,
            aggregated_sql: AGGREGATED_INSERT,
        }
    }
}

/// The raw DynamoDB baselines: the limiter's conditional update through the SDK and through the
/// direct client.
struct RawDynamo<'a> {
    sdk: aws_sdk_dynamodb::Client,
    direct: shared::adapters::dynamodb::client::DynamoHttp,
    table: &'a str,
}

impl RawDynamo<'_> {
    /// The update at `now` (microseconds) through the SDK, ready to send.
    fn sdk_update(&self, now: i64) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
        let number = |n: i64| AttributeValue::N(n.to_string());
        self.sdk
            .update_item()
            .table_name(self.table)
            .key("pk", AttributeValue::S("bench#raw".into()))
            .update_expression(UPDATE_EXPRESSION)
            .condition_expression(UPDATE_CONDITION)
            .expression_attribute_values(":new_tat", number(now + 1))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":exp", number(now / 1_000_000 + 3600))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// The update at `now` (microseconds) as the direct client's request body.
    fn direct_update(&self, now: i64) -> UpdateItem<'_> {
        UpdateItem {
            table_name: self.table,
            key: json!({"pk": {"S": "bench#direct"}}),
            update_expression: UPDATE_EXPRESSION,
            condition_expression: UPDATE_CONDITION,
            expression_attribute_values: json!({
                ":new_tat": {"N": (now + 1).to_string()},
                ":now": {"N": now.to_string()},
                ":exp": {"N": (now / 1_000_000 + 3600).to_string()},
            }),
            return_values: None,
            expression_attribute_names: None,
            return_values_on_condition_check_failure: "ALL_OLD",
        }
    }
}

/// The command-execution handler's app on the real adapters, and its limiter (to count round trips).
fn command_app(env: &Env, aws: &aws_config::SdkConfig) -> (App, Arc<DynamoRateLimiter>) {
    let rate = RateLimitConfig::from_env(env).expect("rate config");
    let limiter = Arc::new(DynamoRateLimiter::new(aws, &rate).expect("limiter"));
    let auth = Authenticator::new(&AuthConfig::from_env(env).expect("auth")).expect("auth");
    let db = Database::connect(&DatabaseConfig::from_env(env).expect("db")).expect("pool");
    let app = App::new(
        Api::new(
            auth,
            limiter.clone(),
            Arc::new(shared::app::settings::Settings::from_env(env, aws).expect("settings")),
            OnStoreError::Deny,
            1 << 20,
        ),
        Arc::new(PgStore::new(db.clone())),
    );
    (app, limiter)
}

/// Samples of the single-metric rounds.
struct SingleMetric {
    pg: Samples,
    /// The handler's statement issued directly (`RawPostgres::insert_aggregated`).
    pg_aggregated: Samples,
    sdk_ddb: Samples,
    direct_ddb: Samples,
    handler: Samples,
    /// The handler's samples of requests the lease admitted locally (no DynamoDB call).
    handler_local: Samples,
    /// The handler's statement sent as the handler sends it (`RawPostgres::aggregated_sql`).
    pg_unnamed: Samples,
    /// DynamoDB round trips per admitted request.
    trips: f64,
}

/// The operations of one single-metric round.
#[derive(Clone, Copy)]
enum SingleOp {
    RawInsert,
    RawAggregated,
    RawAggregatedUnnamed,
    SdkUpdate,
    DirectUpdate,
    Handler,
}

impl SingleOp {
    const ALL: [SingleOp; 6] = [
        SingleOp::RawInsert,
        SingleOp::RawAggregated,
        SingleOp::RawAggregatedUnnamed,
        SingleOp::SdkUpdate,
        SingleOp::DirectUpdate,
        SingleOp::Handler,
    ];
}

/// `rounds` rounds (after warm-up) of: raw insert, the handler's statement raw, SDK update,
/// direct update, handler, in an order shuffled each round ([`RoundOrder`]).
async fn single_metric_rounds(
    raw: &RawPostgres,
    dynamo: &RawDynamo<'_>,
    app: &App,
    limiter: &DynamoRateLimiter,
    rounds: usize,
) -> SingleMetric {
    let token = token("bench", "bench-user");
    let body = spec_command();
    let mut order = RoundOrder::new();
    let (mut pg, mut pg_aggregated, mut sdk_ddb, mut direct_ddb, mut handler) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut handler_local, mut pg_unnamed) = (Samples::default(), Samples::default());
    let mut trips_before = 0;
    for i in 0..rounds + SINGLE_WARM_UP {
        let warming = i < SINGLE_WARM_UP;
        if i == SINGLE_WARM_UP {
            trips_before = limiter.round_trips();
        }
        use SingleOp::*;
        for op in order.shuffle(SingleOp::ALL) {
            match op {
                RawInsert => {
                    // Its own id: the plain insert and the handler's statement write to different tables.
                    let id = Uuid::now_v7();
                    pg.time(warming, raw.client.execute(&raw.insert, &command_row(&id, &body)[..9]))
                        .await
                        .expect("raw insert");
                }
                RawAggregated => {
                    let id = Uuid::now_v7();
                    let row = command_row(&id, &body);
                    pg_aggregated
                        .time(warming, raw.client.query_one(&raw.insert_aggregated, &row))
                        .await
                        .expect("raw aggregated insert");
                }
                RawAggregatedUnnamed => {
                    let id = Uuid::now_v7();
                    let row = command_row(&id, &body);
                    let typed: Vec<_> = row.into_iter().zip(COMMAND_ROW_TYPES).collect();
                    pg_unnamed
                        .time(warming, raw.client.query_typed(raw.aggregated_sql, &typed))
                        .await
                        .expect("raw unnamed aggregated insert");
                }
                SdkUpdate => {
                    let now = shared::domain::ratelimit::now_us();
                    sdk_ddb
                        .time(warming, dynamo.sdk_update(now).send())
                        .await
                        .expect("raw update");
                }
                DirectUpdate => {
                    let request = dynamo.direct_update(shared::domain::ratelimit::now_us());
                    direct_ddb
                        .time(warming, dynamo.direct.call(&request))
                        .await
                        .expect("direct update");
                }
                Handler => {
                    let req = command_request(&token);
                    let calls_before = limiter.round_trips();
                    let response = handler
                        .time(warming, command_execution::handle(app, req))
                        .await
                        .expect("handler");
                    assert_eq!(response.status(), 201, "benchmark requests must be admitted and stored");
                    if !warming && limiter.round_trips() == calls_before {
                        handler_local.wall.extend(handler.wall.last());
                        handler_local.cpu.extend(handler.cpu.last());
                    }
                }
            }
        }
    }
    let trips = (limiter.round_trips() - trips_before) as f64 / rounds as f64;
    SingleMetric {
        pg,
        pg_aggregated,
        sdk_ddb,
        direct_ddb,
        handler,
        handler_local,
        pg_unnamed,
        trips,
    }
}

/// Samples of the batch rounds: the raw 20-row insert and the worker, on an envelope the
/// importer sent (the database's work alone) and on one the batch route sent (which also frees
/// its batch slot: one more DynamoDB call).
struct Batch {
    pg20: Samples,
    worker: Samples,
    worker_route: Samples,
}

/// `rounds` rounds (after warm-up) of: the raw 20-row insert, the worker fed one SQS event of
/// one 20-metric envelope from the importer, and one from the batch route (whose DynamoDB call
/// would otherwise always come just before the next round's raw insert), shuffled each round.
async fn batch_rounds(raw: &RawPostgres, worker: &batch_worker::Worker, rounds: usize) -> Batch {
    let body = spec_command();
    let caller = caller("bench", "bench-user");
    let (mut pg20, mut batch, mut route) = (Samples::default(), Samples::default(), Samples::default());
    let mut order = RoundOrder::new();
    for i in 0..rounds + BATCH_WARM_UP {
        let warming = i < BATCH_WARM_UP;
        let ids: Vec<Uuid> = (0..BATCH_ROWS).map(|_| Uuid::now_v7()).collect();
        let names = vec!["claude_code_generate"; BATCH_ROWS];
        let args = vec![body["command_args"].clone(); BATCH_ROWS];
        let times = vec![1250.0f64; BATCH_ROWS];
        let statuses = vec!["success"; BATCH_ROWS];
        let errors = vec![None::<String>; BATCH_ROWS];
        let ctx = vec![body["context"].clone(); BATCH_ROWS];
        let stamps = vec![None::<chrono::DateTime<chrono::Utc>>; BATCH_ROWS];
        let params: [&(dyn ToSql + Sync); 8] = [&ids, &names, &args, &times, &statuses, &errors, &ctx, &stamps];
        // `None` is the raw insert, `Some` the worker on an envelope from that source.
        for source in order.shuffle([None, Some(Source::Import), Some(Source::Api)]) {
            let Some(source) = source else {
                pg20.time(warming, raw.client.execute(&raw.insert20, &params))
                    .await
                    .expect("raw 20");
                continue;
            };
            let metrics = metrics(vec![spec_command(); BATCH_ROWS], BATCH_ROWS);
            let message = Envelope::new(&caller, source, metrics).to_message().expect("message");
            let samples = if source == Source::Import {
                &mut batch
            } else {
                &mut route
            };
            let response = samples
                .time(warming, worker.handle(sqs_event(vec![message])))
                .await
                .expect("worker");
            assert!(response.batch_item_failures.is_empty());
        }
    }
    Batch {
        pg20,
        worker: batch,
        worker_route: route,
    }
}

/// The section's figures into `results`. The DynamoDB baseline is the faster of the SDK and the
/// direct client (by p95).
fn record(results: &mut Map<String, Value>, sizes: &Sizes, single: &SingleMetric, batch: &Batch) {
    let (n, n_batch) = (sizes.single, sizes.batch);
    let sdk_ddb = Stats::of(&single.sdk_ddb.wall);
    let direct_ddb = Stats::of(&single.direct_ddb.wall);
    let ddb_s = if direct_ddb.p95 < sdk_ddb.p95 {
        direct_ddb
    } else {
        sdk_ddb
    };
    let (pg_s, pg20_s) = (Stats::of(&single.pg.wall), Stats::of(&batch.pg20.wall));
    let pg_aggregated_s = Stats::of(&single.pg_aggregated.wall);
    let (wall_s, batch_s) = (Stats::of(&single.handler.wall), Stats::of(&batch.worker.wall));
    let route_s = Stats::of(&batch.worker_route.wall);
    // Every sample when no request was admitted locally (no leases): the ratio then says so.
    let local = &single.handler_local;
    let local_s = if local.wall.is_empty() {
        None
    } else {
        Some(Stats::of(&local.wall))
    };
    let figures = [
        ("raw_postgres_insert", pg_s.json(n)),
        ("raw_postgres_insert_cpu", Stats::of(&single.pg.cpu).json(n)),
        ("raw_postgres_aggregated_insert", pg_aggregated_s.json(n)),
        (
            "raw_postgres_aggregated_insert_unnamed",
            Stats::of(&single.pg_unnamed.wall).json(n),
        ),
        ("raw_dynamodb_conditional_update", sdk_ddb.json(n)),
        ("raw_dynamodb_update_cpu", Stats::of(&single.sdk_ddb.cpu).json(n)),
        ("raw_dynamodb_update_direct", direct_ddb.json(n)),
        (
            "raw_dynamodb_update_direct_cpu",
            Stats::of(&single.direct_ddb.cpu).json(n),
        ),
        ("raw_dynamodb_baseline", ddb_s.json(n)),
        ("raw_postgres_20_row_insert", pg20_s.json(n_batch)),
        ("handler_in_process", wall_s.json(n)),
        ("handler_cpu", Stats::of(&single.handler.cpu).json(n)),
        ("worker_batch_of_20", batch_s.json(n_batch)),
        ("worker_batch_of_20_cpu", Stats::of(&batch.worker.cpu).json(n_batch)),
        ("worker_batch_of_20_from_the_route", route_s.json(n_batch)),
        (
            "handler_admitted_locally",
            local_s.map_or(Value::Null, |s| s.json(local.wall.len())),
        ),
        ("dynamodb_round_trips_per_admitted_request", json!(round3(single.trips))),
        (
            "ratios",
            json!({
                "handler_p95_over_raw_p95_sum": round3(wall_s.p95 / (pg_s.p95 + ddb_s.p95)),
                "handler_p50_over_raw_p50_sum": round3(wall_s.p50 / (pg_s.p50 + ddb_s.p50)),
                "batch20_p50_over_raw20_p50": round3(batch_s.p50 / pg20_s.p50),
                "batch20_p95_over_raw20_p95": round3(batch_s.p95 / pg20_s.p95),
                "batch20_from_the_route_p50_over_raw20_p50": round3(route_s.p50 / pg20_s.p50),
                "handler_admitted_locally_p95_over_raw_pg_p95": local_s.map(|s| round3(s.p95 / pg_s.p95)),
                "handler_admitted_locally_p95_over_raw_aggregated_insert_p95":
                    local_s.map(|s| round3(s.p95 / pg_aggregated_s.p95)),
            }),
        ),
    ];
    for (key, figure) in figures {
        results.insert(key.into(), figure);
    }
}

/// The benchmark's command as the insert statements take it: its id, the specification's
/// example's fields, and (the tenant function's last parameter only) no timestamp of its own.
fn command_row<'a>(id: &'a Uuid, body: &'a Value) -> [&'a (dyn ToSql + Sync); 10] {
    [
        id,
        &"raw",
        &"bench",
        &"claude_code_generate",
        &body["command_args"],
        &1250.0f64,
        &"success",
        &None::<String>,
        &body["context"],
        &None::<chrono::DateTime<chrono::Utc>>,
    ]
}
