//! The data lifecycle against the real PostgreSQL and moto: retention per kind at the boundary
//! day, in chunks, within a time budget; a user's erasure; an organization's export re-imported
//! elsewhere; a whole tenant's delete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use integration_tests::{TestApp, admin_token, connect, dynamo, fresh_connections_table, http, token};
use retention::{RetentionJob, StageRetention};
use serde_json::{Value, json};
use shared::adapters::postgres::Database;
use shared::adapters::postgres::lifecycle::PgLifecycle;
use shared::adapters::postgres::migrate::provision_tenant;
use shared::config::{DatabaseConfig, Env};
use shared::domain::ids::{Caller, OrgId, Role, UserId};
use shared::domain::lifecycle::{ERASED, Expiring, Retention};
use tokio_postgres::Client;
use uuid::Uuid;

fn org(id: &str) -> OrgId {
    OrgId::parse(id).unwrap()
}

fn database(url: &str) -> DatabaseConfig {
    DatabaseConfig::from_env(&Env::from_pairs([("DATABASE_URL", url)])).unwrap()
}

/// A retention job on the test's database, deleting `chunk_rows` rows per statement.
fn retention_job(given: &TestApp, retention: Retention, chunk_rows: u32) -> RetentionJob {
    let db = Database::connect(&database(&given.database_url)).unwrap();
    RetentionJob {
        lifecycle: Arc::new(PgLifecycle::new(
            db,
            chunk_rows,
            Duration::ZERO,
            Duration::from_secs(10),
        )),
        settings: Arc::new(StageRetention(retention)),
        budget: Duration::from_secs(60),
    }
}

async fn provisioned(given: &TestApp, id: &str) -> Client {
    let mut client = given.db().await;
    provision_tenant(&mut client, &org(id)).await.unwrap();
    client
}

/// One row of `user` in every table retention and erasure know, each at the time `at(table)`.
async fn insert_everywhere(client: &Client, org: &str, user: &str, at: impl Fn(Expiring) -> DateTime<Utc>) {
    let s = format!("\"org_{org}\"");
    let id = Uuid::new_v4;
    let name = Uuid::new_v4().to_string();
    let (org, user) = (&org.to_owned(), &user.to_owned());
    let run = async |sql: String, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]| {
        client
            .execute(&sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    };
    run(
        format!(
            "INSERT INTO {s}.command_executions (id, organization_id, user_id, command_name, execution_time_ms, \
             status, \"timestamp\") VALUES ($1, $2, $3, 'build', 10, 'success', $4)"
        ),
        &[&id(), org, user, &at(Expiring::CommandExecutions)],
    )
    .await;
    run(
        format!(
            "INSERT INTO {s}.agent_interactions (id, organization_id, user_id, agent_name, interaction_type, \
             input_tokens, output_tokens, processing_time_ms, success, \"timestamp\") \
             VALUES ($1, $2, $3, 'coder', 'response', 1, 2, 3, true, $4)"
        ),
        &[&id(), org, user, &at(Expiring::AgentInteractions)],
    )
    .await;
    run(
        format!(
            "INSERT INTO {s}.user_sessions (id, organization_id, user_id, session_start, session_end, status) \
             VALUES ($1, $2, $3, $4::timestamptz, $4::timestamptz + interval '1 minute', 'completed')"
        ),
        &[&id(), org, user, &at(Expiring::UserSessions)],
    )
    .await;
    run(
        format!(
            "INSERT INTO {s}.productivity_metrics (id, organization_id, user_id, metric_type, value, unit, \
             period_start, period_end) \
             VALUES ($1, $2, $3, 'completion_rate', 0.5, 'ratio', $4::timestamptz - interval '1 hour', $4)"
        ),
        &[&id(), org, user, &at(Expiring::ProductivityMetrics)],
    )
    .await;
    run(
        format!(
            "INSERT INTO {s}.hook_events (id, organization_id, user_id, session_id, event_name, payload, received_at) \
             VALUES ($1, $2, $3, 's', 'Stop', '{{}}', $4)"
        ),
        &[&id(), org, user, &at(Expiring::HookEvents)],
    )
    .await;
    let series = id();
    run(
        format!(
            "INSERT INTO {s}.otlp_series (series, start_ns, last_ns, last_value) \
             VALUES ($1, 0, (extract(epoch FROM $2::timestamptz) * 1e9)::bigint, 1)"
        ),
        &[&series, &at(Expiring::OtlpSeries)],
    )
    .await;
    run(
        format!(
            "INSERT INTO {s}.otlp_points (id, organization_id, user_id, series, metric, model, point_type, \
             cumulative, \"time\", value, delta, labels) \
             VALUES ($1, $2, $3, $4, 'claude_code.token.usage', 'm', 'sum', true, $5, 1, 1, '{{}}')"
        ),
        &[&id(), org, user, &series, &at(Expiring::OtlpPoints)],
    )
    .await;
    run(
        format!(
            "INSERT INTO {s}.otlp_events (id, organization_id, user_id, event_name, model, \"timestamp\", attributes) \
             VALUES ($1, $2, $3, 'api_request', 'm', $4, '{{}}')"
        ),
        &[&id(), org, user, &at(Expiring::OtlpEvents)],
    )
    .await;
    for (table, column, rest) in [
        (Expiring::HourlyAggregates, "hour", "'command', $3, 1, 0, 10, 0, 0"),
        (Expiring::DailyAggregates, "day", "'command', $3, 1, 0, 10, 0, 0"),
        (Expiring::HourlyLatency, "hour", "'command', $3, 5, 1"),
        (Expiring::DailyLatency, "day", "'command', $3, 5, 1"),
    ] {
        let t = table.table();
        run(
            format!(
                "INSERT INTO {s}.{t} ({column}, user_id, kind, name, {}) VALUES ($1, $2, {rest})",
                if rest.matches(',').count() == 6 {
                    "count, error_count, total_ms, tokens_in, tokens_out"
                } else {
                    "bucket, count"
                }
            ),
            &[&at(table), user, &name],
        )
        .await;
    }
    for (table, column) in [(Expiring::HourlyUsage, "hour"), (Expiring::DailyUsage, "day")] {
        let t = table.table();
        run(
            format!("INSERT INTO {s}.{t} ({column}, user_id, model, cost_usd) VALUES ($1, $2, $3, 0.5)"),
            &[&at(table), user, &name],
        )
        .await;
    }
}

/// The time column of each table, as a timestamp.
fn time_of(table: Expiring) -> &'static str {
    match table {
        Expiring::CommandExecutions | Expiring::AgentInteractions | Expiring::OtlpEvents => "\"timestamp\"",
        Expiring::UserSessions => "session_start",
        Expiring::ProductivityMetrics => "period_end",
        Expiring::HookEvents => "received_at",
        Expiring::OtlpPoints => "\"time\"",
        Expiring::OtlpSeries => "to_timestamp(last_ns / 1e9)",
        Expiring::HourlyAggregates | Expiring::HourlyLatency | Expiring::HourlyUsage => "hour",
        Expiring::DailyAggregates | Expiring::DailyLatency | Expiring::DailyUsage => "day",
    }
}

async fn count_where(client: &Client, org: &str, table: &str, condition: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT count(*) FROM \"org_{org}\".{table} WHERE {condition}"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

#[tokio::test]
async fn retention_deletes_each_kind_a_day_past_its_days_and_keeps_it_a_day_inside() {
    let given = TestApp::spawn().await;
    let client = provisioned(&given, "acme").await;
    // Each kind its own days, so a row kept or deleted proves its own kind's setting.
    let retention = Retention {
        command_executions_days: 10,
        agent_interactions_days: 20,
        user_sessions_days: 30,
        productivity_metrics_days: 40,
        hook_events_days: 50,
        otlp_days: 60,
        aggregates_days: 70,
    };
    let now = Utc::now();
    let kept_for = |table: Expiring| i64::from(table.days(&retention));
    insert_everywhere(&client, "acme", "alice", |t| now - days(kept_for(t) - 1)).await;
    insert_everywhere(&client, "acme", "alice", |t| now - days(kept_for(t) + 1)).await;
    // An active session is never deleted, however old.
    client
        .execute(
            "INSERT INTO \"org_acme\".user_sessions (id, organization_id, user_id, session_start, status) \
             VALUES ($1, 'acme', 'alice', now() - interval '400 days', 'active')",
            &[&Uuid::new_v4()],
        )
        .await
        .unwrap();

    let job = retention_job(&given, retention, 1000);
    let report = job.run(now, Instant::now() + Duration::from_secs(60)).await.unwrap();
    assert_eq!(report.complete, vec![org("acme")], "{report:?}");
    for table in Expiring::ALL {
        assert_eq!(report.deleted.get(&table), Some(&1), "{table:?} deleted: {report:?}");
        let cutoff = format!(
            "{} < '{}'::timestamptz",
            time_of(table),
            table.cutoff(&retention, now).to_rfc3339()
        );
        let active = if table == Expiring::UserSessions { 1 } else { 0 };
        assert_eq!(
            count_where(&client, "acme", table.table(), &cutoff).await,
            active,
            "{table:?}: the row a day past its retention is gone"
        );
        assert_eq!(
            count_where(&client, "acme", table.table(), "true").await,
            1 + active,
            "{table:?}: the row a day inside its retention is kept"
        );
    }
    // Aggregates outlive raw rows: a day 61 to 69 old keeps its aggregates, not its commands.
    assert_eq!(
        count_where(&client, "acme", "daily_aggregates", "day < now() - interval '60 days'").await,
        1
    );

    let again = job.run(now, Instant::now() + Duration::from_secs(60)).await.unwrap();
    assert!(again.deleted.is_empty(), "a second run finds nothing: {again:?}");
}

#[tokio::test]
async fn retention_deletes_in_chunks_resumes_after_its_budget_and_runs_from_the_local_front() {
    let given = TestApp::spawn().await;
    let client = provisioned(&given, "bulk").await;
    client
        .execute(
            "INSERT INTO \"org_bulk\".command_executions (id, organization_id, user_id, command_name, \
             execution_time_ms, status, \"timestamp\") \
             SELECT gen_random_uuid(), 'bulk', 'u' || (i % 3), 'build', i, 'success', now() - interval '100 days' \
             FROM generate_series(1, 10) AS i",
            &[],
        )
        .await
        .unwrap();
    let job = retention_job(&given, Retention::default(), 3);

    let spent = job.run(Utc::now(), Instant::now()).await.unwrap();
    assert_eq!(spent.unfinished, vec![org("bulk")]);
    assert_eq!(
        given.count("bulk", "command_executions").await,
        10,
        "no budget, nothing deleted"
    );

    let report = job
        .run(Utc::now(), Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        report.deleted[&Expiring::CommandExecutions],
        10,
        "four chunks of at most 3"
    );
    assert_eq!(report.complete, vec![org("bulk")]);
    assert_eq!(given.count("bulk", "command_executions").await, 0);

    // The stage's job, as the scheduler and `local-front invoke retention` run it.
    client
        .execute(
            "INSERT INTO \"org_bulk\".hook_events (id, organization_id, user_id, session_id, event_name, payload, \
             received_at) VALUES ($1, 'bulk', 'u', 's', 'Stop', '{}', now() - interval '91 days')",
            &[&Uuid::new_v4()],
        )
        .await
        .unwrap();
    let mut jobs = local_front::jobs(&given.stack);
    let result = (jobs.remove("retention").expect("the retention job"))().await.unwrap();
    assert_eq!(result["deleted"]["hook_events"], 1, "{result}");
    assert_eq!(result["complete"], true, "{result}");
}

/// Rows of `user` per table of the erasure.
async fn rows_of(client: &Client, org: &str, user: &str) -> Vec<(&'static str, i64)> {
    let mut rows = Vec::new();
    for table in ERASED {
        let condition = match table {
            "otlp_series" => {
                format!("series IN (SELECT series FROM \"org_{org}\".otlp_points WHERE user_id = '{user}')")
            }
            _ => format!("user_id = '{user}'"),
        };
        rows.push((table, count_where(client, org, table, &condition).await));
    }
    rows
}

#[tokio::test]
async fn an_admin_erases_one_users_data_of_every_kind_and_a_member_cannot() {
    let given = TestApp::spawn().await;
    let acme = provisioned(&given, "acme").await;
    let beta = provisioned(&given, "beta").await;
    let now = Utc::now();
    for user in ["alice", "bob"] {
        insert_everywhere(&acme, "acme", user, |_| now - days(1)).await;
    }
    insert_everywhere(&beta, "beta", "bob", |_| now - days(1)).await;
    let one_each: Vec<(&str, i64)> = ERASED.iter().map(|t| (*t, 1)).collect();
    let addr = given.serve_http().await;
    let path = "/api/v1/organization/users/bob";

    let (status, _, body) = http(
        addr,
        "DELETE",
        path,
        Some(&token("acme", "alice")),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(rows_of(&acme, "acme", "bob").await, one_each, "a member erased nothing");

    let (status, _, body) = http(
        addr,
        "DELETE",
        path,
        Some(&admin_token("acme", "root")),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let expected: serde_json::Map<String, Value> = ERASED.iter().map(|t| (t.to_string(), json!(1))).collect();
    assert_eq!(body["data"]["deleted"], Value::Object(expected));
    assert_eq!(body["data"]["total"], 14);
    let none: Vec<(&str, i64)> = ERASED.iter().map(|t| (*t, 0)).collect();
    assert_eq!(rows_of(&acme, "acme", "bob").await, none, "bob is gone");
    assert_eq!(rows_of(&acme, "acme", "alice").await, one_each, "alice is untouched");
    assert_eq!(
        rows_of(&beta, "beta", "bob").await,
        one_each,
        "another organization's bob is untouched"
    );

    // Erasing again, or a user never seen, removes nothing and says so.
    let (status, _, body) = http(
        addr,
        "DELETE",
        path,
        Some(&admin_token("acme", "root")),
        "application/json",
        "",
    )
    .await;
    assert_eq!((status, body["data"]["total"].clone()), (200, json!(0)));
    let (status, _, body) = http(
        addr,
        "DELETE",
        path,
        Some(&admin_token("never-seen", "root")),
        "application/json",
        "",
    )
    .await;
    assert_eq!((status, body["data"]["total"].clone()), (200, json!(0)), "{body}");
}

/// Imports NDJSON into `org` through the queue and the worker, as `metrics-import` does.
async fn import(given: &TestApp, org: &str, ndjson: &str) {
    let plan = metrics_import::plan(
        ndjson.as_bytes(),
        &OrgId::parse(org).unwrap(),
        &UserId::parse("importer").unwrap(),
        500,
    )
    .unwrap();
    assert!(plan.invalid.is_empty(), "{:?}", plan.invalid);
    let report = metrics_import::send(
        &integration_tests::sqs().await,
        &given.queue_url,
        &plan.envelopes,
        |_| {},
    )
    .await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    given.drain().await;
}

async fn export(given: &TestApp, org: &str) -> String {
    let mut out = Vec::new();
    metrics_import::export(&database(&given.database_url), &OrgId::parse(org).unwrap(), &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn an_export_reimported_into_another_organization_exports_the_same() {
    let given = TestApp::spawn().await;
    let lines = [
        json!({"kind": "command_execution", "user_id": "alice", "command_name": "build", "execution_time_ms": 1250.5,
               "status": "error", "error_message": "exit 1", "command_args": {"target": "web"},
               "context": {"project_type": "web_service"}, "timestamp": "2026-01-02T03:04:05.123456Z"}),
        json!({"kind": "command_execution", "user_id": "bob", "command_name": "test", "execution_time_ms": 3,
               "status": "success"}),
        json!({"kind": "agent_interaction", "user_id": "alice", "agent_name": "coder", "interaction_type": "tool_call",
               "input_tokens": 100, "output_tokens": 20, "processing_time_ms": 42.25, "success": false,
               "metadata": {"tool": "Bash"}, "timestamp": "2026-01-02T03:05:00Z"}),
        json!({"kind": "user_session", "user_id": "alice", "session_start": "2026-01-02T03:00:00Z",
               "session_end": "2026-01-02T04:00:00Z", "commands_executed": 7, "agents_used": ["coder", "reviewer"],
               "productivity_score": 0.75, "context": {"repo": "web"}}),
        json!({"kind": "user_session", "user_id": "bob", "session_start": "2026-01-03T03:00:00Z"}),
        json!({"kind": "productivity_metric", "user_id": "bob", "metric_type": "efficiency_score", "value": 0.9,
               "unit": "score", "period_start": "2026-01-01T00:00:00Z", "period_end": "2026-01-02T00:00:00Z",
               "dimensions": {"team": "core"}}),
    ];
    let ndjson: String = lines.iter().map(|l| format!("{l}\n")).collect();
    import(&given, "source", &ndjson).await;
    // And one written by the API, with the server's own timestamp.
    let req = integration_tests::request(
        "command-execution",
        "source",
        "carol",
        &integration_tests::spec_command_example(),
    );
    assert_eq!(command_execution::handle(&given.app, req).await.unwrap().status(), 201);

    let exported = export(&given, "source").await;
    assert_eq!(exported.lines().count(), 7, "{exported}");
    for kind in [
        "command_execution",
        "agent_interaction",
        "user_session",
        "productivity_metric",
    ] {
        assert!(exported.contains(&format!("\"kind\":\"{kind}\"")), "{kind}: {exported}");
    }
    import(&given, "target", &exported).await;
    assert_eq!(export(&given, "target").await, exported);
}

async fn item(table: &str, key: &str, value: &str) -> bool {
    dynamo()
        .await
        .get_item()
        .table_name(table)
        .key(key, AttributeValue::S(value.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .is_some()
}

#[tokio::test]
async fn deleting_a_tenant_removes_its_schema_registry_row_and_dynamodb_items_and_nothing_else() {
    let given = TestApp::spawn().await;
    let connections = fresh_connections_table().await;
    let now = Utc::now();
    for id in ["doomed", "kept"] {
        let req = integration_tests::request(
            "command-execution",
            id,
            "alice",
            &integration_tests::spec_command_example(),
        );
        assert_eq!(command_execution::handle(&given.app, req).await.unwrap().status(), 201);
        let root = Caller {
            org: org(id),
            user: UserId::parse("root").unwrap(),
            role: Role::Admin,
        };
        let request =
            shared::domain::api_keys::request::NewKeyRequest::from_json(&json!({"user_id": "alice"}), now).unwrap();
        shared::app::keys::issue(given.stack.keys.keys.as_ref(), &root, &request, now)
            .await
            .unwrap();
        let dynamo = dynamo().await;
        dynamo
            .put_item()
            .table_name(&given.table)
            .item("pk", AttributeValue::S(format!("limits#{id}")))
            .item("max_requests", AttributeValue::N("100".into()))
            .send()
            .await
            .unwrap();
        dynamo
            .put_item()
            .table_name(&given.table)
            .item("pk", AttributeValue::S(format!("inflight#{id}")))
            .send()
            .await
            .unwrap();
        dynamo
            .put_item()
            .table_name(&connections)
            .item("connection_id", AttributeValue::S(format!("conn-{id}")))
            .item("org_id", AttributeValue::S(id.into()))
            .item("user_id", AttributeValue::S("alice".into()))
            .item("role", AttributeValue::S("member".into()))
            .item("expires_at", AttributeValue::N((now.timestamp() + 3600).to_string()))
            .send()
            .await
            .unwrap();
    }
    let schemas = async |client: &Client| -> Vec<String> {
        client
            .query(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'org_%' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let client = connect(&given.database_url).await;
    assert_eq!(schemas(&client).await, ["org_doomed", "org_kept"]);
    for id in ["doomed", "kept"] {
        assert!(item(&given.table, "pk", &format!("org#{id}")).await);
        assert!(item(&given.table, "pk", &format!("user#{id}#alice")).await);
    }

    let stores = tenant_admin::Stores {
        database: database(&given.database_url),
        rate_limit_table: given.table.clone(),
        api_keys_table: given.keys_table.clone(),
        connections_table: Some(connections.clone()),
    };
    let report = tenant_admin::delete_tenant(&stores, &dynamo().await, &org("doomed"))
        .await
        .unwrap();
    assert_eq!(report["schema_dropped"], true, "{report}");
    assert_eq!(
        (report["api_keys"].clone(), report["connections"].clone()),
        (json!(1), json!(1))
    );

    assert_eq!(schemas(&client).await, ["org_kept"]);
    let registered: Vec<String> = client
        .query("SELECT organization_id FROM public.tenants ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(registered, ["kept"]);
    for (id, present) in [("doomed", false), ("kept", true)] {
        for pk in [
            format!("org#{id}"),
            format!("user#{id}#alice"),
            format!("limits#{id}"),
            format!("inflight#{id}"),
        ] {
            assert_eq!(item(&given.table, "pk", &pk).await, present, "{pk}");
        }
        assert_eq!(
            item(&connections, "connection_id", &format!("conn-{id}")).await,
            present,
            "{id}"
        );
        let keys = given.stack.keys.keys.list(&org(id)).await.unwrap();
        assert_eq!(keys.len(), usize::from(present), "{id}'s keys");
    }
    // Deleting again finds nothing and fails nowhere.
    let again = tenant_admin::delete_tenant(&stores, &dynamo().await, &org("doomed"))
        .await
        .unwrap();
    assert_eq!(again["schema_dropped"], false);
}
