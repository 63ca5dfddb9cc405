//! The fault matrix. Each test counts what was acknowledged (201/202) against what is stored at
//! the end: the two sets must be equal, with no duplicates. Clients behave as hooks and importers
//! do: they retry a refused metric with the same id.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::{
    PgCluster, TestApp, answer, command_execution_request, connect, deliver, free_port, fresh_database,
    fresh_database_on, receive_all, request, sqs, venv_python,
};
use serde_json::{Value, json};
use shared::App;
use uuid::Uuid;

/// These tests queue many batches before any worker runs: the batches-in-flight bound (tested in
/// `settings`) would refuse them.
const MANY_BATCHES_IN_FLIGHT: &str = r#"{"performance": {"concurrent_requests": 1000}}"#;

fn command(id: Uuid) -> Value {
    json!({"id": id, "command_name": "build", "execution_time_ms": 1, "status": "success"})
}

/// One attempt on the single-metric path; the status.
async fn send_once(app: &Arc<App>, org: &str, id: Uuid) -> (u16, Value) {
    let response = command_execution::handle(app, command_execution_request(org, &command(id)))
        .await
        .expect("the handler answers");
    let a = answer(response).await;
    (a.status, a.body)
}

/// Sends until acknowledged, as a hook retries a 503; counts the 503s it met.
async fn send_until_acknowledged(app: &Arc<App>, org: &str, id: Uuid, refusals: &AtomicUsize) {
    for _ in 0..300 {
        match send_once(app, org, id).await {
            (201, _) => return,
            (503, body) => {
                assert_eq!(body["retry_after"], 30, "{body}");
                refusals.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (status, body) => panic!("{status}: {body}"),
        }
    }
    panic!("{id} never acknowledged");
}

/// Posts one batch of `ids` until it is queued (202).
async fn post_batch_until_acknowledged(given: &TestApp, org: &str, ids: &[Uuid]) {
    let body = json!({"command_executions": ids.iter().map(|id| command(*id)).collect::<Vec<_>>()});
    for _ in 0..50 {
        let a = answer(
            batch::handle(&given.stack.batch, request("batch", org, "alice", &body))
                .await
                .unwrap(),
        )
        .await;
        match a.status {
            202 => return,
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            status => panic!("{status}: {}", a.body),
        }
    }
    panic!("batch never acknowledged");
}

async fn stored_ids(database_url: &str, org: &str) -> Vec<Uuid> {
    connect(database_url)
        .await
        .query(
            &format!("SELECT id FROM \"org_{org}\".command_executions ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Rows so far; none while the organization's schema does not exist yet.
async fn stored_count(database_url: &str, org: &str) -> usize {
    let Ok(db) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await else {
        return 0;
    };
    tokio::spawn(db.1);
    db.0.query_one(&format!("SELECT count(*) FROM \"org_{org}\".command_executions"), &[])
        .await
        .map(|row| row.get::<_, i64>(0) as usize)
        .unwrap_or(0)
}

/// Stored ids equal the acknowledged ones, each once.
async fn assert_stored_exactly(database_url: &str, org: &str, acknowledged: &[Uuid]) {
    let stored = stored_ids(database_url, org).await;
    let expected: BTreeSet<Uuid> = acknowledged.iter().copied().collect();
    assert_eq!(stored.len(), expected.len(), "{org}: rows vs acknowledged metrics");
    assert_eq!(
        stored.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "{org}: the same ids"
    );
}

fn new_ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

/// A queue of the test's own: redelivery after a second, and enough receives that an outage of
/// a few seconds cannot push good messages to the dead-letter queue.
async fn patient_queue() -> (String, String) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let url = format!("{endpoint}/123456789012/patient-{}", Uuid::new_v4().simple());
    let settings = local_front::provision::QueueSettings {
        visibility_timeout_seconds: 1,
        max_receive_count: 100,
    };
    let dlq = local_front::provision::ensure_batch_queues(&sqs().await, &url, settings)
        .await
        .unwrap();
    (url, dlq)
}

/// Statements of the test's database blocked on a lock.
async fn statements_waiting_on_a_lock(database_url: &str) -> i64 {
    connect(database_url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Kills PostgreSQL (an immediate shutdown, as in a crash) and starts it again after `down`.
async fn crash_and_restart(cluster: &Arc<PgCluster>, down: Duration) {
    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || {
        pg.kill();
        std::thread::sleep(down);
        pg.restart();
    })
    .await
    .unwrap();
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_on_the_single_path_loses_and_duplicates_nothing() {
    let cluster = Arc::new(PgCluster::start());
    let database_url = fresh_database_on(&cluster.url("postgres")).await;
    let given = TestApp::spawn_on(&database_url, &[("DATABASE_TIMEOUT_MS", "1000")]).await;
    let acknowledged = Arc::new(Mutex::new(vec![]));
    let refusals = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, acknowledged, refusals, restarted) = (
                given.app.clone(),
                acknowledged.clone(),
                refusals.clone(),
                restarted.clone(),
            );
            tokio::spawn(async move {
                // Until each client has had five metrics acknowledged after the restart: a fixed
                // count can all be stored before the crash lands (seen in CI), and then the test
                // proves nothing about the crash.
                let mut after_restart = 0;
                while after_restart < 5 {
                    let was_restarted = restarted.load(Ordering::SeqCst);
                    let id = Uuid::new_v4();
                    send_until_acknowledged(&app, "acme", id, &refusals).await;
                    acknowledged.lock().unwrap().push(id);
                    after_restart += usize::from(was_restarted);
                }
            })
        })
        .collect();
    wait_until("some are stored", async || {
        stored_count(&database_url, "acme").await >= 80
    })
    .await;
    crash_and_restart(&cluster, Duration::from_millis(500)).await;
    restarted.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert!(refusals.load(Ordering::Relaxed) > 0, "the restart was felt as 503s");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_stored_exactly(&database_url, "acme", &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_on_the_batch_path_loses_and_duplicates_nothing() {
    let cluster = Arc::new(PgCluster::start());
    let database_url = fresh_database_on(&cluster.url("postgres")).await;
    let (queue, dlq) = patient_queue().await;
    let given = TestApp::spawn_on(
        &database_url,
        &[
            ("DATABASE_TIMEOUT_MS", "1000"),
            ("BATCH_QUEUE_URL", &queue),
            ("DEAD_LETTER_QUEUE_URL", &dlq),
            ("ORGANIZATION_SETTINGS_DEFAULTS", MANY_BATCHES_IN_FLIGHT),
        ],
    )
    .await;
    let given = Arc::new(given);
    let ids = new_ids(600);
    let worker = {
        let poller = given.poller().await;
        tokio::spawn(async move {
            loop {
                let _ = poller.poll_once().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let importers: Vec<_> = ids
        .chunks(150)
        .map(|chunk| {
            let (given, chunk) = (given.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for batch in chunk.chunks(15) {
                    post_batch_until_acknowledged(&given, "acme", batch).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    wait_until("the worker has written some", async || {
        stored_count(&database_url, "acme").await > 0
    })
    .await;
    crash_and_restart(&cluster, Duration::from_millis(800)).await;
    for importer in importers {
        importer.await.unwrap();
    }
    wait_until("every acknowledged metric is stored", async || {
        stored_count(&database_url, "acme").await >= ids.len()
    })
    .await;
    worker.abort();
    given.drain().await;
    assert_stored_exactly(&database_url, "acme", &ids).await;
    assert!(receive_all(&dlq).await.is_empty(), "no good message was given up on");
}

/// The batch worker as a process of its own, fed from the test's queue.
fn worker_process(given: &TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_queue-worker"))
        .env("DATABASE_URL", &given.database_url)
        .env("DATABASE_TIMEOUT_MS", "30000")
        .env("BATCH_QUEUE_URL", &given.queue_url)
        .env("DEAD_LETTER_QUEUE_URL", &given.dead_letter_url)
        .env("RATE_LIMIT_TABLE_NAME", &given.table)
        .env("JWT_SECRET", integration_tests::SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the queue-worker binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_killed_in_the_middle_of_a_batch_loses_and_duplicates_nothing() {
    let (queue, dlq) = patient_queue().await;
    let given = TestApp::spawn_with(&[
        ("BATCH_QUEUE_URL", &queue),
        ("DEAD_LETTER_QUEUE_URL", &dlq),
        ("ORGANIZATION_SETTINGS_DEFAULTS", MANY_BATCHES_IN_FLIGHT),
    ])
    .await;
    // globex exists, so its table can be locked: the worker will block inside a batch.
    let refusals = AtomicUsize::new(0);
    let first = Uuid::new_v4();
    send_until_acknowledged(&given.app, "globex", first, &refusals).await;
    let mut acknowledged = std::collections::HashMap::from([("acme", vec![]), ("globex", vec![first])]);
    for round in 0..20 {
        for org in ["acme", "globex"] {
            let ids = new_ids(10 + round % 11);
            post_batch_until_acknowledged(&given, org, &ids).await;
            acknowledged.get_mut(org).unwrap().extend(ids);
        }
    }

    let mut locker = connect(&given.database_url).await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE \"org_globex\".command_executions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut doomed = worker_process(&given);
    let database_url = given.database_url.clone();
    wait_until("the worker is blocked inside a batch", async || {
        statements_waiting_on_a_lock(&database_url).await > 0
    })
    .await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    lock.rollback().await.unwrap();

    let mut successor = worker_process(&given);
    for (org, ids) in &acknowledged {
        wait_until("the successor has written everything", async || {
            stored_count(&database_url, org).await >= ids.len()
        })
        .await;
    }
    // Redeliveries still in flight get their chance to duplicate something.
    tokio::time::sleep(Duration::from_secs(2)).await;
    successor.kill().unwrap();
    successor.wait().unwrap();
    for (org, ids) in &acknowledged {
        assert_stored_exactly(&database_url, org, ids).await;
    }
    assert!(receive_all(&dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_concurrently_is_written_once() {
    let given = TestApp::spawn_with(&[("ORGANIZATION_SETTINGS_DEFAULTS", MANY_BATCHES_IN_FLIGHT)]).await;
    let mut acknowledged = vec![];
    for _ in 0..30 {
        let ids = new_ids(20);
        post_batch_until_acknowledged(&given, "acme", &ids).await;
        acknowledged.extend(ids);
    }
    let messages = receive_all(&given.queue_url).await;
    assert_eq!(messages.len(), 30);
    let records: Vec<Value> = messages
        .iter()
        .map(|m| json!({"messageId": m.message_id, "body": m.body}))
        .collect();
    let mut runs = vec![];
    for chunk in records.chunks(10) {
        for _ in 0..2 {
            let (worker, chunk) = (given.stack.worker.clone(), Value::from(chunk.to_vec()));
            runs.push(tokio::spawn(async move { deliver(&worker, chunk).await }));
        }
    }
    for run in runs {
        assert!(run.await.unwrap().is_empty());
    }
    // And a third time through the queue once the visibility timeout has passed.
    given.drain().await;
    assert_stored_exactly(&given.database_url, "acme", &acknowledged).await;
}

/// A moto server of the test's own, so it can be killed without disturbing other tests.
struct PrivateMoto {
    process: Child,
    endpoint: String,
}

impl PrivateMoto {
    async fn start() -> Self {
        let port = free_port();
        let process = Command::new(venv_python())
            .arg(integration_tests::repo_root().join("local/moto_server.py"))
            .args(["127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn aws(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }

    fn kill(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_lost_under_load_follows_the_configured_policy_and_loses_nothing() {
    for policy in ["allow", "deny"] {
        let mut moto = PrivateMoto::start().await;
        let aws = moto.aws().await;
        let table = format!("limits-{}", Uuid::new_v4().simple());
        local_front::provision::ensure_rate_limit_table(&aws_sdk_dynamodb::Client::new(&aws), &table)
            .await
            .unwrap();
        let database_url = fresh_database().await;
        let given = TestApp::spawn_with_aws(
            &database_url,
            &[
                ("RATE_LIMIT_TABLE_NAME", &table),
                ("RATE_LIMIT_ON_STORE_ERROR", policy),
                ("RATE_LIMIT_TIMEOUT_MS", "500"),
            ],
            &aws,
        )
        .await;
        let acknowledged = Arc::new(Mutex::new(vec![]));
        let after_loss = Arc::new(Mutex::new(vec![]));
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (app, acknowledged, after_loss, lost, sent) = (
                    given.app.clone(),
                    acknowledged.clone(),
                    after_loss.clone(),
                    lost.clone(),
                    sent.clone(),
                );
                tokio::spawn(async move {
                    // Until each client has sent five requests with DynamoDB gone: with leases,
                    // requests admitted locally are fast enough to finish any fixed count before
                    // the kill lands (seen in CI).
                    let mut sent_after_loss = 0;
                    while sent_after_loss < 5 {
                        let id = Uuid::new_v4();
                        let was_lost = lost.load(Ordering::SeqCst);
                        sent_after_loss += usize::from(was_lost);
                        let (status, body) = send_once(&app, "acme", id).await;
                        sent.fetch_add(1, Ordering::SeqCst);
                        match status {
                            201 => acknowledged.lock().unwrap().push(id),
                            503 => assert_eq!(body["message"], "Rate limiter temporarily unavailable"),
                            other => panic!("{other}: {body}"),
                        }
                        if was_lost {
                            after_loss.lock().unwrap().push(status);
                        }
                    }
                })
            })
            .collect();
        wait_until("half is sent", async || sent.load(Ordering::SeqCst) >= 100).await;
        moto.kill();
        lost.store(true, Ordering::SeqCst);
        for client in clients {
            client.await.unwrap();
        }
        let after_loss = after_loss.lock().unwrap().clone();
        assert!(
            !after_loss.is_empty(),
            "{policy}: requests were sent with DynamoDB gone"
        );
        // Requests the container could admit from a lease taken before the loss are admitted
        // (their tokens were counted); once the leases have expired, every request follows the
        // policy.
        let expected = if policy == "allow" { 201 } else { 503 };
        assert!(
            after_loss.iter().all(|s| *s == expected || *s == 201),
            "{policy}: {after_loss:?}"
        );
        let horizon = shared::domain::ratelimit::lease::HORIZON_US as u64;
        tokio::time::sleep(Duration::from_micros(horizon)).await;
        for _ in 0..3 {
            let id = Uuid::new_v4();
            let (status, body) = send_once(&given.app, "acme", id).await;
            assert_eq!(status, expected, "{policy}, the leases expired: {body}");
            if status == 201 {
                acknowledged.lock().unwrap().push(id);
            }
        }
        let acknowledged = acknowledged.lock().unwrap().clone();
        assert_stored_exactly(&database_url, "acme", &acknowledged).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_is_a_503_within_the_budget_and_the_retry_is_stored_once() {
    let given = TestApp::spawn_with(&[("DATABASE_TIMEOUT_MS", "1000")]).await;
    let refusals = AtomicUsize::new(0);
    let first = Uuid::new_v4();
    send_until_acknowledged(&given.app, "acme", first, &refusals).await;

    let mut locker = given.db().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE \"org_acme\".command_executions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let slow = Uuid::new_v4();
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), send_once(&given.app, "acme", slow))
        .await
        .expect("an answer, not a hang");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["retry_after"], 30);
    let database_url = given.database_url.clone();
    wait_until("the server has cancelled the statement too", async || {
        statements_waiting_on_a_lock(&database_url).await == 0
    })
    .await;
    lock.rollback().await.unwrap();

    send_until_acknowledged(&given.app, "acme", slow, &refusals).await;
    assert_stored_exactly(&given.database_url, "acme", &[first, slow]).await;
}
