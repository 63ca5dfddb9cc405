//! Rolling aggregates and `GET /api/v1/metrics/summary` on the real PostgreSQL: the write paths
//! (single routes and the batch worker, redeliveries included) keep the aggregates equal to what
//! the raw rows say, also when batches, or batches and single metrics, race on the same keys and
//! ids, or are replayed; summaries
//! are per organization, bounded, and p95 is within a bucket.

use std::net::SocketAddr;

use integration_tests::{TestApp, admin_token, connect, fresh_database, http, request, token};
use serde_json::{Value, json};
use shared::adapters::postgres::migrate::{LOCK_NAMESPACE, Migration, TENANT, provision_tenant, provision_tenant_with};
use shared::domain::batch::{Envelope, Metrics, Source};
use shared::domain::identified::Identify;
use shared::domain::ids::{Caller, OrgId, UserId};
use shared::domain::summary::latency_bucket;

/// The summary an admin of `org` reads.
async fn summary(addr: SocketAddr, org: &str, query: &str) -> Value {
    summary_as(addr, &admin_token(org, "boss"), query).await
}

async fn summary_as(addr: SocketAddr, bearer: &str, query: &str) -> Value {
    let (status, body) = summary_answer(addr, bearer, query).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn summary_answer(addr: SocketAddr, bearer: &str, query: &str) -> (u16, Value) {
    let path = format!("/api/v1/metrics/summary?{query}");
    let (status, _, body) = http(addr, "GET", &path, Some(bearer), "application/json", "").await;
    (status, body)
}

async fn post(addr: SocketAddr, org: &str, user: &str, route: &str, body: Value) {
    let (status, _, answer) = http(
        addr,
        "POST",
        route,
        Some(&token(org, user)),
        "application/json",
        &body.to_string(),
    )
    .await;
    assert!(status == 201 || status == 202, "{status}: {answer}");
}

/// Commands and agents over three hours, by three users, through every write path.
async fn write_history(given: &TestApp, addr: SocketAddr) {
    let hours = ["2026-11-27T08:15:00Z", "2026-11-27T09:40:00Z", "2026-11-27T10:05:00Z"];
    for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        for (h, at) in hours.iter().enumerate() {
            for n in 0..(3 + i + h) {
                let status = if n % 3 == 0 { "error" } else { "success" };
                let name = ["build", "test"][n % 2];
                let body = json!({"command_name": name, "execution_time_ms": 10.0 * (n + 1) as f64,
                                  "status": status, "timestamp": at});
                post(addr, "acme", user, "/api/v1/metrics/command-execution", body).await;
            }
            let agent = json!({"agent_name": "coder", "interaction_type": "tool_call", "input_tokens": 100 * (i + 1),
                               "output_tokens": 7, "processing_time_ms": 250, "success": h != 1, "timestamp": at});
            post(addr, "acme", user, "/api/v1/metrics/agent-interaction", agent).await;
        }
    }
    // The batch path, with its message delivered twice.
    let batch = json!({
        "command_executions": (0..5).map(|n| json!({"command_name": "lint", "execution_time_ms": 3 + n,
            "status": "success", "timestamp": "2026-11-27T09:01:00Z"})).collect::<Vec<_>>(),
        "agent_interactions": [{"agent_name": "reviewer", "interaction_type": "delegation", "input_tokens": 40,
            "output_tokens": 60, "processing_time_ms": 1200, "success": true, "timestamp": "2026-11-27T09:02:00Z"}]
    });
    post(addr, "acme", "dave", "/api/v1/metrics/batch", batch).await;
    let message = integration_tests::receive_all(&given.queue_url).await.remove(0);
    for _ in 0..2 {
        let records = json!([{"messageId": message.message_id, "body": message.body}]);
        assert!(
            integration_tests::deliver(&given.stack.worker, records)
                .await
                .is_empty()
        );
    }
}

/// What the raw rows say, per user: (user, commands, errors, average ms, input tokens).
async fn raw_per_user(given: &TestApp) -> Vec<(String, i64, i64, f64, i64)> {
    given
        .db()
        .await
        .query(
            "SELECT u, sum(c)::bigint, sum(e)::bigint, coalesce(sum(t) / nullif(sum(c), 0), 0), sum(ti)::bigint FROM ( \
               SELECT user_id u, count(*) c, count(*) FILTER (WHERE status <> 'success') e, sum(execution_time_ms) t, 0 ti \
               FROM \"org_acme\".command_executions GROUP BY 1 \
               UNION ALL SELECT user_id, 0, 0, 0, sum(input_tokens) FROM \"org_acme\".agent_interactions GROUP BY 1) x \
             GROUP BY u ORDER BY u",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn summaries_equal_what_the_raw_rows_say_for_every_grouping() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    write_history(&given, addr).await;
    // Every table exactly, for the single routes' statement and the batch's alike.
    assert_eq!(aggregates_unlike_the_raw_rows(&given, "acme").await, agreeing());
    let span = "since=2026-11-27T00:00:00Z&until=2026-11-28T00:00:00Z";

    let by_user = summary(addr, "acme", &format!("group_by=user&{span}")).await;
    let mut from_summary: Vec<(String, i64, i64, f64, i64)> = by_user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_owned(),
                g["commands"]["count"].as_i64().unwrap_or(0),
                g["commands"]["error_count"].as_i64().unwrap_or(0),
                g["commands"]["avg_execution_time_ms"].as_f64().unwrap_or(0.0),
                g["agents"]["input_tokens"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    from_summary.sort_by(|a, b| a.0.cmp(&b.0));
    let raw = raw_per_user(&given).await;
    assert_eq!(from_summary.len(), raw.len());
    for (s, r) in from_summary.iter().zip(&raw) {
        assert_eq!((&s.0, s.1, s.2, s.4), (&r.0, r.1, r.2, r.4), "{s:?} vs {r:?}");
        assert!((s.3 - r.3).abs() < 0.001, "{s:?} vs {r:?}");
    }
    let counts: Vec<i64> = by_user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["commands"]["count"].as_i64().unwrap_or(0))
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "busiest first: {counts:?}");

    let by_command = summary(addr, "acme", &format!("group_by=command&{span}")).await;
    let lint = by_command["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "lint")
        .unwrap();
    assert_eq!(lint["commands"]["count"], 5, "the redelivered batch counted once");
    assert!(lint.get("agents").is_none());

    let by_agent = summary(addr, "acme", &format!("group_by=agent&{span}")).await;
    let coder = &by_agent["groups"][0];
    assert_eq!(coder["key"], "coder");
    assert_eq!(coder["agents"]["interactions"], 9);
    assert_eq!(coder["agents"]["failures"], 3);
    assert_eq!(coder["agents"]["input_tokens"], 3 * (100 + 200 + 300));

    let by_hour = summary(addr, "acme", &format!("group_by=hour&{span}")).await;
    let hours: Vec<&str> = by_hour["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        hours,
        ["2026-11-27T08:00:00Z", "2026-11-27T09:00:00Z", "2026-11-27T10:00:00Z"]
    );
    let by_day = summary(addr, "acme", &format!("group_by=day&{span}")).await;
    let raw_total: i64 = raw.iter().map(|r| r.1).sum();
    assert_eq!(by_day["groups"][0]["key"], "2026-11-27");
    assert_eq!(by_day["groups"][0]["commands"]["count"], raw_total);

    // Whole days come from the daily rows, the hours around them from the hourly rows.
    let total = |data: &Value| -> i64 {
        data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["commands"]["count"].as_i64().unwrap_or(0))
            .sum()
    };
    let around = summary(
        addr,
        "acme",
        "group_by=user&since=2026-11-26T20:00:00Z&until=2026-11-28T10:00:00Z",
    )
    .await;
    assert_eq!(total(&around), raw_total);
    let from_nine = summary(
        addr,
        "acme",
        "group_by=user&since=2026-11-27T09:00:00Z&until=2026-11-29T00:00:00Z",
    )
    .await;
    let nine_and_ten: i64 = [1, 2]
        .iter()
        .map(|h| by_hour["groups"][*h]["commands"]["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total(&from_nine), nine_and_ten, "hourly edge plus daily rows");
    let days_from_nine = summary(
        addr,
        "acme",
        "group_by=day&since=2026-11-27T09:00:00Z&until=2026-11-29T00:00:00Z",
    )
    .await;
    assert_eq!(days_from_nine["groups"][0]["key"], "2026-11-27");
    assert_eq!(
        total(&days_from_nine),
        nine_and_ten,
        "a day summed from its hourly edge"
    );
    let by_day_p95 = summary(addr, "acme", &format!("group_by=day&p95=true&{span}")).await;
    assert!(by_day_p95["groups"][0]["commands"]["p95_execution_time_ms"].is_number());

    let narrow = summary(
        addr,
        "acme",
        "group_by=user&since=2026-11-27T09:30:00Z&until=2026-11-27T09:45:00Z",
    )
    .await;
    assert_eq!(narrow["since"], "2026-11-27T09:00:00Z", "whole hours");
    assert_eq!(narrow["until"], "2026-11-27T10:00:00Z");
    let nine_oclock: i64 = narrow["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["commands"]["count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(nine_oclock, by_hour["groups"][1]["commands"]["count"].as_i64().unwrap());
}

/// The summary functions in `org`'s schema (one per grouping read since the statement last
/// changed; see `SummaryFunction`).
async fn summary_functions(given: &TestApp, org: &str) -> Vec<String> {
    given
        .column(
            "SELECT proname::text FROM pg_proc WHERE pronamespace = $1::text::regnamespace \
             AND proname LIKE 'summary\\_%' ORDER BY 1",
            &[&format!("org_{org}")],
        )
        .await
}

/// GIVEN acme's history, read once by day with p95, WHEN its summary function is gone (as in a
/// tenant whose function a new deploy has not created yet) and eight readers all find it
/// missing and wait for the tenant's lock, THEN every reader gets the same figures as before and
/// the tenant has the one function again — created once: the definition is a plain `CREATE
/// FUNCTION`, so a second creation would fail its reader.
#[tokio::test]
async fn a_missing_summary_function_is_created_once_while_readers_race_for_it() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    write_history(&given, addr).await;
    let query = "group_by=day&p95=true&since=2026-11-27T00:00:00Z&until=2026-11-28T00:00:00Z";
    let before = summary(addr, "acme", query).await;
    let functions = summary_functions(&given, "acme").await;
    assert_eq!(functions.len(), 1, "{functions:?}");
    assert!(functions[0].starts_with("summary_day_p95_"), "{functions:?}");
    let holder = given.db().await;
    holder
        .batch_execute(&format!("DROP FUNCTION \"org_acme\".{}", functions[0]))
        .await
        .unwrap();
    let tenant_lock = "SELECT pg_advisory_lock($1, hashtext($2))";
    holder.execute(tenant_lock, &[&LOCK_NAMESPACE, &"acme"]).await.unwrap();

    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        readers.spawn(summary(addr, "acme", query));
    }
    let waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let started = std::time::Instant::now();
    while holder.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) < 8 {
        assert!(
            started.elapsed().as_secs() < 30,
            "the readers never all waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let unlock = "SELECT pg_advisory_unlock($1, hashtext($2))";
    holder.execute(unlock, &[&LOCK_NAMESPACE, &"acme"]).await.unwrap();
    let answers = readers.join_all().await;

    assert_eq!(answers.len(), 8);
    for answer in answers {
        assert_eq!(answer["groups"], before["groups"]);
    }
    assert_eq!(summary_functions(&given, "acme").await, functions);
}

#[tokio::test]
async fn summaries_are_per_organization_and_bounded() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    write_history(&given, addr).await;
    let span = "since=2026-11-27T00:00:00Z&until=2026-11-28T00:00:00Z";
    let empty = summary(addr, "globex", &format!("group_by=user&{span}")).await;
    assert_eq!(
        empty["groups"],
        json!([]),
        "another organization sees nothing of acme's"
    );
    let limited = summary(addr, "acme", &format!("group_by=user&limit=2&{span}")).await;
    assert_eq!(limited["groups"].as_array().unwrap().len(), 2);
    assert_eq!(limited["truncated"], true);
    let (status, _, body) = http(
        addr,
        "GET",
        "/api/v1/metrics/summary?limit=100000&group_by=everything",
        Some(&token("acme", "alice")),
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["group_by", "limit"]);
}

#[tokio::test]
async fn a_member_reads_the_organizations_totals_and_only_its_own_per_user_figures() {
    // GIVEN three developers' history in acme
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    write_history(&given, addr).await;
    let span = "since=2026-11-27T00:00:00Z&until=2026-11-28T00:00:00Z";
    let bob = token("acme", "bob");
    // WHEN bob (a member) groups by user THEN he reads his own row, equal to the admin's view of it
    let own = summary_as(addr, &bob, &format!("group_by=user&{span}")).await;
    let all = summary(addr, "acme", &format!("group_by=user&{span}")).await;
    assert!(all["groups"].as_array().unwrap().len() >= 3, "{all}");
    assert_eq!(own["groups"].as_array().unwrap().len(), 1);
    let bobs_row = all["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "bob")
        .unwrap();
    assert_eq!(&own["groups"][0], bobs_row);
    assert_eq!(
        (own["per_user_rows"].as_str(), all["per_user_rows"].as_str()),
        (Some("own"), Some("all"))
    );
    // AND the organization's totals by hour, command and agent are the admin's
    for group_by in ["hour", "day", "command", "agent"] {
        let query = format!("group_by={group_by}&p95=true&{span}");
        assert_eq!(
            summary_as(addr, &bob, &query).await["groups"],
            summary(addr, "acme", &query).await["groups"],
            "{group_by}"
        );
    }
    // AND another developer's figures are forbidden, his own allowed
    for query in ["group_by=model&user=alice", "group_by=day&user=carol"] {
        let (status, body) = summary_answer(addr, &bob, query).await;
        assert_eq!(status, 403, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains("user="), "{body}");
    }
    let (status, _) = summary_answer(addr, &bob, "group_by=day&user=bob").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn p95_is_within_one_bucket_of_the_exact_percentile() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    for n in 1..=200 {
        let body = json!({"command_name": "compile", "execution_time_ms": (n * n) as f64 / 10.0, "status": "success"});
        post(addr, "acme", "alice", "/api/v1/metrics/command-execution", body).await;
    }
    let exact: f64 = given
        .db()
        .await
        .query_one(
            "SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY execution_time_ms) FROM \"org_acme\".command_executions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let without = summary(addr, "acme", "group_by=command").await;
    assert_eq!(
        without["groups"][0]["commands"]["p95_execution_time_ms"],
        Value::Null,
        "only when asked"
    );
    let data = summary(addr, "acme", "group_by=command&p95=true").await;
    let p95 = data["groups"][0]["commands"]["p95_execution_time_ms"].as_f64().unwrap();
    assert!(
        p95 >= exact && p95 <= exact * 2f64.powf(0.25) * 1.001,
        "p95 {p95} vs exact {exact}"
    );
}

#[tokio::test]
async fn p95_by_day_and_hour_merges_every_users_buckets() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    // GIVEN on each of two days, at 09:00, alice's 60 commands of 10 ms and bob's 50 of 10 ms, 4
    // of 100 and 6 of 1,000: alone, alice's p95 is 10 ms and bob's 1,000; together it is 100
    let bob = [(50, 10.0), (4, 100.0), (6, 1000.0)];
    let alice = [(60, 10.0)];
    for day in ["2026-11-27", "2026-11-28"] {
        for (user, runs) in [("alice", &alice[..]), ("bob", &bob[..])] {
            let times = runs.iter().flat_map(|(n, ms)| std::iter::repeat_n(*ms, *n));
            for (minute, ms) in times.enumerate() {
                let at = format!("{day}T09:{minute:02}:00Z");
                let body =
                    json!({"command_name": "compile", "execution_time_ms": ms, "status": "success", "timestamp": at});
                post(addr, "acme", user, "/api/v1/metrics/command-execution", body).await;
            }
        }
    }
    let p95_edge = |ms: f64| (ms, ms * 2f64.powf(0.25) * 1.001);
    let within = |group: &Value, (low, high): (f64, f64), what: &str| {
        let p95 = group["commands"]["p95_execution_time_ms"].as_f64().unwrap();
        assert!(p95 >= low && p95 <= high, "{what}: p95 {p95}, expected {low}..{high}");
    };
    // WHEN grouped by day over a span whose first day comes from hourly rows (the 27th, from
    // 09:00) and whose second from its daily row, and by hour THEN every group's p95 is that of
    // both users' metrics together, and each user's alone is their own
    let days = "group_by=day&p95=true&since=2026-11-27T09:00:00Z&until=2026-11-29T00:00:00Z";
    let hour = "group_by=hour&p95=true&since=2026-11-27T09:00:00Z&until=2026-11-27T10:00:00Z";
    for query in [days, hour] {
        let data = summary(addr, "acme", query).await;
        let groups = data["groups"].as_array().unwrap();
        assert_eq!(groups.len(), if query == days { 2 } else { 1 }, "{query}: {data}");
        for group in groups {
            assert_eq!(group["commands"]["count"], 120, "{query}: {data}");
            within(group, p95_edge(100.0), query);
        }
        for (user, alone) in [("alice", 10.0), ("bob", 1000.0)] {
            let data = summary(addr, "acme", &format!("{query}&user={user}")).await;
            for group in data["groups"].as_array().unwrap() {
                assert_eq!(group["commands"]["count"], 60, "{query} {user}: {data}");
                within(group, p95_edge(alone), &format!("{query} {user}"));
            }
        }
    }
}

#[tokio::test]
async fn the_database_and_rust_agree_on_latency_buckets() {
    let given = TestApp::spawn().await;
    // Provision a tenant so its functions exist.
    let a = integration_tests::answer(
        command_execution::handle(
            &given.app,
            request(
                "command-execution",
                "acme",
                "alice",
                &json!({"command_name": "x", "execution_time_ms": 1, "status": "success"}),
            ),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(a.status, 201);
    let samples: Vec<f64> = (0..2000)
        .map(|i| 0.01 * 1.013f64.powi(i))
        .chain([0.0, 0.1, 0.2, 1.0, 300_000.0, 86_400_000.0])
        .collect();
    let db = given.db().await;
    let from_db: Vec<i16> = db
        .query(
            "SELECT \"org_acme\".latency_bucket(ms) FROM unnest($1::float8[]) WITH ORDINALITY AS s(ms, i) ORDER BY i",
            &[&samples],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (ms, bucket) in samples.iter().zip(from_db) {
        assert_eq!(latency_bucket(*ms), bucket as usize, "{ms} ms");
    }
}

#[tokio::test]
async fn metrics_stored_before_the_aggregates_existed_are_counted_by_the_migration() {
    let url = fresh_database().await;
    let mut client = connect(&url).await;
    let org = shared::domain::ids::OrgId::parse("legacy").unwrap();
    let before_aggregates: Vec<Migration> = TENANT
        .iter()
        .take_while(|m| !m.name.contains("aggregates"))
        .map(|m| Migration {
            version: m.version,
            name: m.name,
            sql: m.sql,
        })
        .collect();
    provision_tenant_with(&mut client, &org, &before_aggregates)
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO \"org_legacy\".command_executions (id, organization_id, user_id, command_name, execution_time_ms, status) \
             SELECT gen_random_uuid(), 'legacy', 'alice', 'old', n, CASE WHEN n % 4 = 0 THEN 'error' ELSE 'success' END \
             FROM generate_series(1, 40) n",
        )
        .await
        .unwrap();
    provision_tenant(&mut client, &org).await.unwrap();
    for period in ["hourly", "daily"] {
        let row = client
            .query_one(
                &format!(
                    "SELECT a.count, a.error_count, a.total_ms, \
                       (SELECT sum(count)::bigint FROM \"org_legacy\".{period}_latency WHERE name = 'old') \
                     FROM \"org_legacy\".{period}_aggregates a WHERE name = 'old'"
                ),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, f64>(2),
                row.get::<_, i64>(3)
            ),
            (40, 10, 820.0, 40),
            "{period} totals and latency buckets"
        );
    }
}

/// Starts a session of `user` in `org` at `at` and answers its id.
async fn start_session(addr: SocketAddr, org: &str, user: &str, at: &str) -> String {
    let body = json!({"session_start": at}).to_string();
    let route = "/api/v1/metrics/session/start";
    let (status, _, answer) = http(addr, "POST", route, Some(&token(org, user)), "application/json", &body).await;
    assert_eq!(status, 201, "{answer}");
    answer["data"]["id"].as_str().unwrap().to_owned()
}

/// What `user_sessions` says of the span (`[since, until)`, optionally one user's): started,
/// active, completed, average duration of those with one.
async fn raw_sessions(given: &TestApp, user: Option<&str>) -> (i64, i64, i64, Option<f64>) {
    let row = given
        .db()
        .await
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'completed'), \
               avg(total_duration_ms)::float8 FROM \"org_acme\".user_sessions \
             WHERE session_start >= '2026-11-27T08:00:00Z' AND session_start < '2026-11-27T11:00:00Z' \
               AND ($1::text IS NULL OR user_id = $1)",
            &[&user],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn sessions_count_where_they_started_per_organization_and_as_each_role_may_see() {
    // GIVEN acme's sessions at both edges of 08:00-11:00 and outside it, one ended, and globex's
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    let ended = start_session(addr, "acme", "alice", "2026-11-27T08:00:00Z").await;
    start_session(addr, "acme", "alice", "2026-11-27T10:59:59.999Z").await;
    start_session(addr, "acme", "bob", "2026-11-27T09:30:00Z").await;
    start_session(addr, "acme", "bob", "2026-11-27T11:00:00Z").await;
    start_session(addr, "acme", "carol", "2026-11-27T07:59:59.999Z").await;
    start_session(addr, "globex", "alice", "2026-11-27T09:00:00Z").await;
    let end = json!({"session_id": ended}).to_string();
    let route = "/api/v1/metrics/session/end";
    let (status, _, answer) = http(
        addr,
        "POST",
        route,
        Some(&token("acme", "alice")),
        "application/json",
        &end,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let span = "since=2026-11-27T08:00:00Z&until=2026-11-27T11:00:00Z";
    let figures = |sessions: &Value| {
        (
            sessions["started"].as_i64().unwrap(),
            sessions["active"].as_i64().unwrap(),
            sessions["completed"].as_i64().unwrap(),
            sessions["avg_duration_ms"].as_f64(),
        )
    };
    let group = |data: &Value, key: &str| {
        let groups = data["groups"].as_array().unwrap();
        groups.iter().find(|g| g["key"] == key).cloned()
    };

    // WHEN an admin reads them by user THEN the total is the three started inside the span, as
    // the rows say, and each user's group has theirs
    let all = summary(addr, "acme", &format!("group_by=user&{span}")).await;
    let total = figures(&all["sessions"]);
    assert_eq!(total, raw_sessions(&given, None).await);
    assert_eq!((total.0, total.1, total.2), (3, 2, 1), "{all}");
    assert!(total.3.unwrap() > 0.0, "the ended session has a duration: {all}");
    assert_eq!(all["sessions"]["abandoned"], 0);
    let alices = group(&all, "alice").expect("alice's group");
    assert_eq!(figures(&alices["sessions"]), raw_sessions(&given, Some("alice")).await);
    assert_eq!(group(&all, "bob").expect("bob's group")["sessions"]["started"], 1);
    assert_eq!(group(&all, "carol"), None, "carol's session started before the span");
    // AND by hour, each hour has those started in it; by command, only the total
    let hours = summary(addr, "acme", &format!("group_by=hour&{span}")).await;
    let started_in = |hour: &str| group(&hours, hour).map(|g| g["sessions"]["started"].clone());
    assert_eq!(started_in("2026-11-27T08:00:00Z"), Some(json!(1)));
    assert_eq!(started_in("2026-11-27T09:00:00Z"), Some(json!(1)));
    assert_eq!(started_in("2026-11-27T10:00:00Z"), Some(json!(1)));
    assert_eq!(hours["sessions"], all["sessions"]);
    let commands = summary(addr, "acme", &format!("group_by=command&{span}")).await;
    assert_eq!(
        (commands["groups"].clone(), commands["sessions"].clone()),
        (json!([]), all["sessions"].clone())
    );

    // AND globex sees its own session only
    let globex = summary(addr, "globex", &format!("group_by=user&{span}")).await;
    assert_eq!(globex["sessions"]["started"], 1, "{globex}");
    assert_eq!(globex["groups"].as_array().unwrap().len(), 1);

    // AND bob, a member, reads his own sessions by user, the organization's by hour or day
    let bob = token("acme", "bob");
    let own = summary_as(addr, &bob, &format!("group_by=user&{span}")).await;
    assert_eq!(figures(&own["sessions"]), raw_sessions(&given, Some("bob")).await);
    assert_eq!(own["groups"].as_array().unwrap().len(), 1);
    assert_eq!(own["groups"][0]["key"], "bob");
    for group_by in ["hour", "day", "command"] {
        let query = format!("group_by={group_by}&{span}");
        assert_eq!(
            summary_as(addr, &bob, &query).await["sessions"],
            all["sessions"],
            "{group_by}"
        );
    }
    let (status, _) = summary_answer(addr, &bob, &format!("group_by=day&user=alice&{span}")).await;
    assert_eq!(status, 403);
}

/// The rows of `org`'s hourly and daily aggregates and latency buckets that differ from the same
/// recomputed from its raw rows (both ways), per table: all zero when they agree exactly.
async fn aggregates_unlike_the_raw_rows(given: &TestApp, org: &str) -> Vec<(String, i64)> {
    let schema = format!("\"org_{org}\"");
    let raw = format!(
        "SELECT \"timestamp\" AS t, user_id, 'command' AS kind, command_name AS name, status <> 'success' AS failed, \
           execution_time_ms AS ms, 0::bigint AS tokens_in, 0::bigint AS tokens_out FROM {schema}.command_executions \
         UNION ALL SELECT \"timestamp\", user_id, 'agent', agent_name, NOT success, processing_time_ms, input_tokens, \
           output_tokens FROM {schema}.agent_interactions"
    );
    let db = given.db().await;
    let mut differences = vec![];
    for (unit, period) in [("hour", "hourly"), ("day", "daily")] {
        let totals = format!(
            "SELECT date_trunc('{unit}', t, 'UTC'), user_id, kind, name, count(*), count(*) FILTER (WHERE failed), \
               sum(ms), sum(tokens_in)::bigint, sum(tokens_out)::bigint FROM raw GROUP BY 1, 2, 3, 4"
        );
        let latency = format!(
            "SELECT date_trunc('{unit}', t, 'UTC'), user_id, kind, name, {schema}.latency_bucket(ms), count(*) \
             FROM raw GROUP BY 1, 2, 3, 4, 5"
        );
        for (table, expected) in [
            (format!("{period}_aggregates"), totals),
            (format!("{period}_latency"), latency),
        ] {
            let unlike: i64 = db
                .query_one(
                    &format!(
                        "WITH raw AS ({raw}), expected AS ({expected}) SELECT count(*) FROM ( \
                           (SELECT * FROM expected EXCEPT ALL SELECT * FROM {schema}.{table}) UNION ALL \
                           (SELECT * FROM {schema}.{table} EXCEPT ALL SELECT * FROM expected)) AS d"
                    ),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            differences.push((table, unlike));
        }
    }
    differences
}

/// Every aggregate table agrees with the raw rows.
fn agreeing() -> Vec<(String, i64)> {
    [
        "hourly_aggregates",
        "hourly_latency",
        "daily_aggregates",
        "daily_latency",
    ]
    .map(|table| (table.to_owned(), 0))
    .to_vec()
}

/// A batch of `user`'s commands and agent interactions with these ids, over two hours of two
/// days, on a few names (so batches share aggregate keys), in the ids' order.
fn batch_with_ids(org: &str, user: &str, ids: &[uuid::Uuid]) -> Envelope {
    let caller = Caller::member(OrgId::parse(org).unwrap(), UserId::parse(user).unwrap());
    let at = ["2026-11-27T08:15:00Z", "2026-11-27T09:40:00Z", "2026-11-28T09:05:00Z"];
    // What a metric says depends on its id only, so every copy of an id is the same metric.
    let n = |id: &uuid::Uuid| id.as_u128() as usize;
    let commands: Vec<Value> = ids
        .iter()
        .map(|id| {
            let name = ["build", "test", "lint"][n(id) % 3];
            json!({"id": id, "command_name": name,
                   "execution_time_ms": (n(id) % 5000) as f64, "status": if n(id) % 4 == 0 { "error" } else { "success" },
                   "timestamp": at[n(id) / 3 % 3]})
        })
        .collect();
    let agents: Vec<Value> = ids
        .iter()
        .take(5)
        .map(|id| {
            let name = ["coder", "reviewer"][n(id) % 2];
            json!({"id": id, "agent_name": name, "interaction_type": "tool_call",
                   "input_tokens": n(id) % 1000, "output_tokens": 7, "processing_time_ms": (n(id) % 900) as f64,
                   "success": n(id) % 3 != 0, "timestamp": at[n(id) / 7 % 3]})
        })
        .collect();
    let body = json!({"command_executions": commands, "agent_interactions": agents});
    Envelope::new(&caller, Source::Import, Metrics::from_request(&body, 1000).unwrap())
}

/// `rounds` lists of `per_round` fresh ids.
fn rounds_of_ids(rounds: usize, per_round: usize) -> Vec<Vec<uuid::Uuid>> {
    (0..rounds)
        .map(|_| (0..per_round).map(|_| uuid::Uuid::new_v4()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_racing_on_the_same_aggregate_keys_neither_deadlock_nor_miscount() {
    let given = TestApp::spawn().await;
    const WRITERS: usize = 8;
    const ROUNDS: usize = 6;
    const SHARED: usize = 200;
    const OWN: usize = 3;
    // Each round, every writer sends the round's shared ids at the same moment, each in its own
    // order, plus ids of its own: rows and aggregate keys locked by one are wanted by the others.
    let shared_ids = rounds_of_ids(ROUNDS, SHARED);
    let start_together = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = given.app.store.clone();
        let shared_ids = shared_ids.clone();
        let start_together = start_together.clone();
        writers.spawn(async move {
            let mut written = 0;
            for ids in shared_ids {
                let mut ids: Vec<uuid::Uuid> = ids.into_iter().chain((0..OWN).map(|_| uuid::Uuid::new_v4())).collect();
                let start = writer * 37 % ids.len();
                ids.rotate_left(start);
                if writer % 2 == 1 {
                    ids.reverse();
                }
                let batch = batch_with_ids("race", ["alice", "bob"][writer % 2], &ids);
                start_together.wait().await;
                let counts = store.write_envelope(&batch).await.unwrap();
                written += counts.command_executions + counts.agent_interactions;
            }
            written
        });
    }
    let mut written = 0;
    while let Some(done) = writers.join_next().await {
        written += done.unwrap();
    }
    let commands = given.count("race", "command_executions").await;
    let stored = commands + given.count("race", "agent_interactions").await;
    assert_eq!(written as i64, stored, "each stored metric counted as new once");
    // A shared id is kept once, by whichever writer came first (another user's writer skips it).
    assert_eq!(commands as usize, ROUNDS * (SHARED + OWN * WRITERS));
    assert_eq!(aggregates_unlike_the_raw_rows(&given, "race").await, agreeing());
}

/// The aggregate tables `write` touches, in the order it first writes to each (a row's lock is
/// taken as it is written or deleted), seen by triggers that log every row about to be written
/// or deleted.
async fn aggregate_write_order(given: &TestApp, org: &str, write: impl AsyncFnOnce()) -> Vec<String> {
    let schema = format!("\"org_{org}\"");
    let db = given.db().await;
    db.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.write_log (n bigserial, tab text); TRUNCATE {schema}.write_log; \
         CREATE OR REPLACE FUNCTION {schema}.log_write() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN INSERT INTO {schema}.write_log (tab) VALUES (TG_TABLE_NAME); \
              RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; END $$;"
    ))
    .await
    .unwrap();
    for table in [
        "hourly_aggregates",
        "hourly_latency",
        "daily_aggregates",
        "daily_latency",
    ] {
        db.batch_execute(&format!(
            "CREATE OR REPLACE TRIGGER log_write BEFORE INSERT OR DELETE ON {schema}.{table} \
             FOR EACH ROW EXECUTE FUNCTION {schema}.log_write()"
        ))
        .await
        .unwrap();
    }
    write().await;
    let mut order: Vec<String> = given
        .column(&format!("SELECT tab FROM {schema}.write_log ORDER BY n"), &[])
        .await;
    order.dedup();
    order
}

#[tokio::test]
async fn single_metrics_batches_and_erasures_take_the_aggregates_row_locks_in_one_order() {
    // GIVEN an organization with a command and an agent interaction stored by a batch
    let given = TestApp::spawn().await;
    let ids: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
    let store = given.app.store.clone();
    store
        .write_envelope(&batch_with_ids("order", "alice", &ids[..1]))
        .await
        .unwrap();
    // WHEN a batch and then single metrics are written, with their aggregate rows' writes logged
    let batch = aggregate_write_order(&given, "order", async || {
        store
            .write_envelope(&batch_with_ids("order", "alice", &ids[1..3]))
            .await
            .unwrap();
    })
    .await;
    let single = batch_with_ids("order", "alice", &ids[3..4]);
    let caller = Caller::member(single.organization_id.clone(), single.user_id.clone());
    let singles = aggregate_write_order(&given, "order", async || {
        let command = single.metrics.command_executions[0].clone().identified();
        store.insert_command_execution(&caller, &command).await.unwrap();
    })
    .await;
    let agents = aggregate_write_order(&given, "order", async || {
        let agent = single.metrics.agent_interactions[0].clone().identified();
        store.insert_agent_interaction(&caller, &agent).await.unwrap();
    })
    .await;
    // AND the user's data is erased (the user-erase function's own lifecycle)
    let lifecycle = given.stack.eraser.lifecycle.clone();
    let erasure = aggregate_write_order(&given, "order", async || {
        lifecycle.erase_user(&caller.org, &caller.user).await.unwrap();
    })
    .await;
    // THEN each writes the four tables in one order (the batch once per kind, commands first),
    // the one PostgreSQL gives the batch's statement: two writers of one user's keys, or a writer
    // and the erasure, never hold what the other waits for (a deadlock, which PostgreSQL ends by
    // failing one of them)
    let order = [
        "daily_latency",
        "daily_aggregates",
        "hourly_latency",
        "hourly_aggregates",
    ];
    assert_eq!(batch, [order, order].concat(), "a batch of commands and agents");
    assert_eq!(singles, order, "a single command");
    assert_eq!(agents, order, "a single agent interaction");
    assert_eq!(erasure, order, "a user's erasure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_metrics_racing_batches_on_the_same_aggregate_keys_neither_deadlock_nor_miscount() {
    // GIVEN rounds of ids whose metrics share aggregate keys (a few names, hours and days)
    let given = TestApp::spawn().await;
    const BATCH_WRITERS: usize = 3;
    const SINGLE_WRITERS: usize = 3;
    const ROUNDS: usize = 4;
    const SHARED: usize = 60;
    const PER_ENVELOPE: usize = 10;
    const OWN: usize = 20;
    let rounds = rounds_of_ids(ROUNDS, SHARED);
    let start_together = std::sync::Arc::new(tokio::sync::Barrier::new(BATCH_WRITERS + SINGLE_WRITERS));
    let mut writers = tokio::task::JoinSet::new();
    // WHEN, each round at the same moment, batch writers send the round's shared ids in
    // envelopes of ten, each in its own order, while single writers send ids of their own, one
    // metric at a time (the single routes' statement), on the same aggregate keys
    for writer in 0..BATCH_WRITERS + SINGLE_WRITERS {
        let store = given.app.store.clone();
        let rounds = rounds.clone();
        let start_together = start_together.clone();
        writers.spawn(async move {
            let mut written = 0;
            for mut ids in rounds {
                if writer >= BATCH_WRITERS {
                    let own: Vec<uuid::Uuid> = (0..OWN).map(|_| uuid::Uuid::new_v4()).collect();
                    let metrics = batch_with_ids("mixed", "alice", &own);
                    let caller = Caller::member(metrics.organization_id.clone(), metrics.user_id.clone());
                    let mut agents = metrics.metrics.agent_interactions.into_iter();
                    start_together.wait().await;
                    for command in metrics.metrics.command_executions {
                        let command = command.identified();
                        written += u64::from(store.insert_command_execution(&caller, &command).await.unwrap().new);
                        if let Some(agent) = agents.next() {
                            let agent = agent.identified();
                            written += u64::from(store.insert_agent_interaction(&caller, &agent).await.unwrap().new);
                        }
                    }
                    continue;
                }
                ids.rotate_left(writer * 17 % SHARED);
                if writer % 2 == 1 {
                    ids.reverse();
                }
                start_together.wait().await;
                for chunk in ids.chunks(PER_ENVELOPE) {
                    written += store
                        .write_envelope(&batch_with_ids("mixed", "alice", chunk))
                        .await
                        .unwrap()
                        .total();
                }
            }
            written
        });
    }
    let mut written = 0;
    while let Some(done) = writers.join_next().await {
        written += done.unwrap();
    }
    // THEN every metric is stored once, counted as new once, and the aggregates equal the rows
    let commands = given.count("mixed", "command_executions").await;
    let stored = commands + given.count("mixed", "agent_interactions").await;
    assert_eq!(commands as usize, ROUNDS * (SHARED + SINGLE_WRITERS * OWN));
    assert_eq!(written as i64, stored, "each stored metric counted as new once");
    assert_eq!(aggregates_unlike_the_raw_rows(&given, "mixed").await, agreeing());
}

#[tokio::test]
async fn a_replayed_batch_leaves_the_aggregates_as_they_were_and_equal_to_the_raw_rows() {
    let given = TestApp::spawn().await;
    let ids: Vec<uuid::Uuid> = (0..20).map(|_| uuid::Uuid::new_v4()).collect();
    let batch = batch_with_ids("replay", "alice", &ids);
    let snapshot = async || {
        let db = given.db().await;
        let mut tables = vec![];
        for table in [
            "hourly_aggregates",
            "hourly_latency",
            "daily_aggregates",
            "daily_latency",
        ] {
            let rows = db
                .query(
                    &format!("SELECT to_jsonb(a)::text FROM \"org_replay\".{table} a ORDER BY 1"),
                    &[],
                )
                .await
                .unwrap();
            tables.push(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>());
        }
        tables
    };
    let first = given.app.store.write_envelope(&batch).await.unwrap();
    assert_eq!((first.command_executions, first.agent_interactions), (20, 5));
    let counted = snapshot().await;
    assert!(counted.iter().all(|rows| !rows.is_empty()), "{counted:?}");
    let replayed = given.app.store.write_envelope(&batch).await.unwrap();
    assert_eq!(replayed.total(), 0, "nothing new in a replay");
    assert_eq!(snapshot().await, counted, "the replay counted nothing");
    // Half the ids again, with new ones: only the new ones count.
    let mixed: Vec<uuid::Uuid> = ids[..10]
        .iter()
        .copied()
        .chain((0..10).map(|_| uuid::Uuid::new_v4()))
        .collect();
    let again = given
        .app
        .store
        .write_envelope(&batch_with_ids("replay", "alice", &mixed))
        .await
        .unwrap();
    assert_eq!(again.command_executions, 10);
    assert_eq!(aggregates_unlike_the_raw_rows(&given, "replay").await, agreeing());
}
