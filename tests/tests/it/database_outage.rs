//! PostgreSQL stopped: 503 with `retry_after`, no internal text, nothing half-written.

use integration_tests::{
    PgCluster, TestApp, answer, command_execution_request, fresh_database_on, spec_command_example,
};

#[tokio::test]
async fn a_stopped_database_answers_503_and_loses_nothing_acknowledged() {
    let cluster = PgCluster::start();
    let database_url = fresh_database_on(&cluster.url("postgres")).await;
    let given = TestApp::spawn_on(&database_url, &[("DATABASE_TIMEOUT_MS", "2000")]).await;
    let send = |org: &'static str| {
        let app = given.app.clone();
        async move {
            answer(
                command_execution::handle(&app, command_execution_request(org, &spec_command_example()))
                    .await
                    .unwrap(),
            )
            .await
        }
    };

    assert_eq!(send("acme").await.status, 201);
    cluster.stop();

    for org in ["acme", "brandnew"] {
        let a = send(org).await;
        assert_eq!(a.status, 503, "{}", a.body);
        assert_eq!(a.body["message"], "Database temporarily unavailable");
        assert_eq!(a.body["retry_after"], 30);
        assert_eq!(a.headers["retry-after"], "30");
        let raw = a.body.to_string().to_lowercase();
        for leak in ["127.0.0.1", "refused", "connection", "postgres", "error"] {
            assert!(!raw.contains(leak), "503 body leaks {leak:?}: {raw}");
        }
    }

    cluster.restart();
    assert_eq!(
        send("acme").await.status,
        201,
        "the pool reconnects once the database is back"
    );
    assert_eq!(send("brandnew").await.status, 201);
    assert_eq!(
        given.count("acme", "command_executions").await,
        2,
        "exactly the acknowledged rows"
    );
    assert_eq!(given.count("brandnew", "command_executions").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_use_leaves_no_partial_tenant() {
    let cluster = PgCluster::start();
    let database_url = fresh_database_on(&cluster.url("postgres")).await;
    let given = TestApp::spawn_on(&database_url, &[("DATABASE_TIMEOUT_MS", "2000")]).await;
    let send = |org: &'static str| {
        let app = given.app.clone();
        async move {
            answer(
                command_execution::handle(&app, command_execution_request(org, &spec_command_example()))
                    .await
                    .unwrap(),
            )
            .await
            .status
        }
    };
    // Crash the server while a burst of first requests provisions new organizations.
    let burst: Vec<_> = ["t1", "t2", "t3", "t4", "t5", "t6"]
        .into_iter()
        .map(|org| tokio::spawn(send(org)))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill();
        cluster
    })
    .await
    .unwrap();
    let mut acknowledged = vec![];
    for (org, handle) in ["t1", "t2", "t3", "t4", "t5", "t6"].into_iter().zip(burst) {
        let status = handle.await.unwrap();
        assert!(status == 201 || status == 503, "{org}: {status}");
        if status == 201 {
            acknowledged.push(org);
        }
    }
    eprintln!("acknowledged before the crash: {acknowledged:?}");
    cluster.restart();
    let db = given.db().await;
    for org in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        let registered: i64 = db
            .query_one(
                "SELECT count(*) FROM public.tenants WHERE organization_id = $1",
                &[&org],
            )
            .await
            .unwrap()
            .get(0);
        let schema: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&format!("org_{org}")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(registered, schema, "{org}: registry and schema agree");
        if acknowledged.contains(&org) {
            assert_eq!(
                given.count(org, "command_executions").await,
                1,
                "{org} was acknowledged"
            );
        }
    }
}
