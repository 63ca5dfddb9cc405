//! Per-organization alerts on the real PostgreSQL, posting to a real HTTP receiver on
//! 127.0.0.1 that checks each message's HMAC: an alert fires once, is not repeated while its
//! condition lasts, resolves when it ends; a 500 is retried; a failed delivery stays owed and
//! the next run sends it; too few samples decide nothing; the SSRF policy refuses internal
//! addresses, also behind host names, and the connection goes to the address that was checked.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use integration_tests::{TestApp, request};
use serde_json::{Value, json};
use shared::adapters::postgres::Database;
use shared::adapters::postgres::alerts::PgAlerts;
use shared::adapters::webhook::{Dns, HttpWebhooks, WebhookConfig};
use shared::app::alerts::{AlertTarget, AlertTargets, Alerts, AlertsConfig, RunReport};
use shared::config::{DatabaseConfig, Env};
use shared::domain::ids::OrgId;
use shared::domain::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookPolicy, verify};
use shared::ports::alerts::{DeliveryError, WebhookSender};

const SECRET: &str = "whsec_test_secret";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    host: String,
    signature: String,
    timestamp: String,
    body: Bytes,
}

impl Received {
    /// The body, after checking its signature as a receiver would.
    fn verified(&self) -> Value {
        self.verified_with(SECRET)
    }

    fn verified_with(&self, secret: &str) -> Value {
        let now = Utc::now().timestamp();
        verify(secret, &self.signature, &self.body, now, 300).expect("signature verifies");
        assert_eq!(
            self.signature.split(',').next().unwrap(),
            format!("t={}", self.timestamp)
        );
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A webhook receiver: answers each POST with the next scripted status (200 once the script
/// is used up) and keeps what it got.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Self, SocketAddr) {
        let receiver = Receiver::default();
        receiver.script.lock().unwrap().extend(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let server = server.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let (host, signature, timestamp) =
                                (header("host"), header(SIGNATURE_HEADER), header(TIMESTAMP_HEADER));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            server.got.lock().unwrap().push(Received {
                                host,
                                signature,
                                timestamp,
                                body,
                            });
                            let status = server.script.lock().unwrap().pop_front().unwrap_or(200);
                            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (receiver, addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Settings as a table: an organization's target, or an unreadable one.
struct Fixed(HashMap<String, Result<AlertTarget, String>>);

#[async_trait]
impl AlertTargets for Fixed {
    async fn target(&self, org: &OrgId) -> Result<Option<AlertTarget>, String> {
        self.0.get(org.as_str()).cloned().transpose()
    }
}

/// A resolver with fixed answers (names no real DNS knows).
struct FixedDns(HashMap<&'static str, Vec<std::net::IpAddr>>);

#[async_trait]
impl Dns for FixedDns {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let ips = self
            .0
            .get(host)
            .ok_or_else(|| std::io::Error::other(format!("unknown host {host}")))?;
        Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
    }
}

fn target(url: &str) -> AlertTarget {
    AlertTarget {
        high_error_rate_threshold: 5.0,
        slow_response_threshold_ms: 1000.0,
        webhook_url: url.to_owned(),
        secret: SECRET.to_owned(),
    }
}

fn sender(policy: WebhookPolicy, attempts: u32, dns: FixedDns) -> HttpWebhooks {
    let config = WebhookConfig {
        policy,
        attempts,
        timeout: StdDuration::from_secs(5),
        backoff: StdDuration::from_millis(10),
    };
    HttpWebhooks::new(config, Arc::new(dns)).unwrap()
}

fn no_dns() -> FixedDns {
    FixedDns(HashMap::new())
}

/// The alert run on the test's database, with the given settings and sender.
fn alerts(given: &TestApp, targets: Fixed, sender: HttpWebhooks) -> Alerts {
    let env = Env::from_pairs([("DATABASE_URL", given.database_url.as_str())]);
    let db = Database::connect(&DatabaseConfig::from_env(&env).unwrap()).unwrap();
    Alerts {
        store: Arc::new(PgAlerts::new(db)),
        targets: Arc::new(targets),
        sender: Arc::new(sender),
        config: AlertsConfig {
            min_samples: 10,
            window: Duration::minutes(5),
            hold: Duration::minutes(1),
            evaluation_budget: std::time::Duration::from_secs(30),
        },
    }
}

/// Stores `n` commands of `org` through the command-execution route.
async fn commands(given: &TestApp, org: &str, n: usize, status: &str, ms: f64) {
    for _ in 0..n {
        let body = json!({"command_name": "build", "execution_time_ms": ms, "status": status});
        let response = command_execution::handle(&given.app, request("command-execution", org, "alice", &body))
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

async fn state(given: &TestApp, org: &str, condition: &str) -> (bool, bool) {
    let row = given
        .db()
        .await
        .query_one(
            &format!("SELECT firing, delivered FROM \"org_{org}\".alert_state WHERE condition = $1"),
            &[&condition],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn at(start: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
    start + Duration::minutes(minutes)
}

#[tokio::test]
async fn an_alert_fires_once_is_not_repeated_while_it_lasts_and_resolves_when_it_ends() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let url = format!("http://{addr}/hooks/acme");
    let targets = Fixed(HashMap::from([("acme".to_owned(), Ok(target(&url)))]));
    let alerts = alerts(&given, targets, sender(WebhookPolicy::LOCAL, 3, no_dns()));
    commands(&given, "acme", 1, "success", 1.0).await;
    let start = Utc::now();

    // The first run has no baseline: it only takes a snapshot.
    let first = alerts.run(start).await.unwrap();
    assert_eq!((first.evaluated, first.firing_sent), (1, 0));

    // 12 failures of 12 in the window: the error-rate alert fires, once.
    commands(&given, "acme", 12, "error", 1.0).await;
    let fired = alerts.run(at(start, 5)).await.unwrap();
    assert_eq!(fired.firing_sent, 1, "{fired:?}");
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    let message = got[0].verified();
    assert_eq!(message["alert"]["organization_id"], "acme");
    assert_eq!(message["alert"]["condition"], "high_error_rate");
    assert_eq!(message["alert"]["state"], "firing");
    assert_eq!(message["alert"]["observed"], 100.0);
    assert_eq!(message["alert"]["threshold"], 5.0);
    assert_eq!(message["alert"]["samples"], 12);
    assert!(message["text"].as_str().unwrap().contains("FIRING"));
    assert_eq!(state(&given, "acme", "high_error_rate").await, (true, true));
    assert_eq!(state(&given, "acme", "slow_response").await, (false, true));

    // Still failing five minutes later: nothing is sent again.
    commands(&given, "acme", 12, "error", 1.0).await;
    let lasting = alerts.run(at(start, 10)).await.unwrap();
    assert_eq!((lasting.firing_sent, lasting.resolved_sent), (0, 0));
    assert_eq!(receiver.got().len(), 1);

    // Healthy again: one "resolved" message.
    commands(&given, "acme", 20, "success", 1.0).await;
    let resolved = alerts.run(at(start, 15)).await.unwrap();
    assert_eq!(resolved.resolved_sent, 1, "{resolved:?}");
    let got = receiver.got();
    assert_eq!(got.len(), 2);
    let message = got[1].verified();
    assert_eq!(message["alert"]["state"], "resolved");
    assert_eq!(message["alert"]["observed"], 0.0);
    assert_eq!(message["attachments"][0]["color"], "good");
    assert_eq!(state(&given, "acme", "high_error_rate").await, (false, true));

    // And quiet stays quiet.
    commands(&given, "acme", 20, "success", 1.0).await;
    assert_eq!(
        alerts.run(at(start, 20)).await.unwrap(),
        RunReport {
            organizations: 1,
            evaluated: 1,
            ..RunReport::default()
        }
    );
    assert_eq!(receiver.got().len(), 2);
}

#[tokio::test]
async fn slow_responses_fire_the_latency_alert() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let targets = Fixed(HashMap::from([(
        "acme".to_owned(),
        Ok(target(&format!("http://{addr}/h"))),
    )]));
    let alerts = alerts(&given, targets, sender(WebhookPolicy::LOCAL, 1, no_dns()));
    commands(&given, "acme", 1, "success", 1.0).await;
    let start = Utc::now();
    alerts.run(start).await.unwrap();
    commands(&given, "acme", 15, "success", 4000.0).await;
    assert_eq!(alerts.run(at(start, 5)).await.unwrap().firing_sent, 1);
    let message = receiver.got()[0].verified();
    assert_eq!(message["alert"]["condition"], "slow_response");
    assert!(message["alert"]["observed"].as_f64().unwrap() >= 4000.0, "{message}");
    assert_eq!(message["alert"]["unit"], "ms");
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_and_the_alert_is_sent_once() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[500, 503]).await;
    let targets = Fixed(HashMap::from([(
        "acme".to_owned(),
        Ok(target(&format!("http://{addr}/h"))),
    )]));
    let alerts = alerts(&given, targets, sender(WebhookPolicy::LOCAL, 3, no_dns()));
    commands(&given, "acme", 1, "success", 1.0).await;
    let start = Utc::now();
    alerts.run(start).await.unwrap();
    commands(&given, "acme", 12, "error", 1.0).await;
    let report = alerts.run(at(start, 5)).await.unwrap();
    assert_eq!((report.firing_sent, report.deliveries_failed), (1, 0));
    let got = receiver.got();
    assert_eq!(got.len(), 3, "two failures, then the delivery");
    for attempt in &got {
        assert_eq!(
            attempt.verified()["alert"]["state"],
            "firing",
            "every attempt is signed"
        );
    }
    assert_eq!(state(&given, "acme", "high_error_rate").await, (true, true));
}

#[tokio::test]
async fn a_failed_delivery_stays_owed_and_the_next_run_sends_it() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[500, 500]).await;
    let targets = Fixed(HashMap::from([(
        "acme".to_owned(),
        Ok(target(&format!("http://{addr}/h"))),
    )]));
    let alerts = alerts(&given, targets, sender(WebhookPolicy::LOCAL, 2, no_dns()));
    commands(&given, "acme", 1, "success", 1.0).await;
    let start = Utc::now();
    alerts.run(start).await.unwrap();
    commands(&given, "acme", 12, "error", 1.0).await;
    let failed = alerts.run(at(start, 5)).await.unwrap();
    assert_eq!((failed.firing_sent, failed.deliveries_failed), (0, 1));
    assert_eq!(
        state(&given, "acme", "high_error_rate").await,
        (true, false),
        "the change is kept, owed"
    );
    assert_eq!(receiver.got().len(), 2);

    // The next run (no new metric, the window still shows the failures) delivers it, once.
    let retried = alerts.run(at(start, 6)).await.unwrap();
    assert_eq!(retried.firing_sent, 1, "{retried:?}");
    assert_eq!(state(&given, "acme", "high_error_rate").await, (true, true));
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].verified()["alert"]["state"], "firing");
    assert_eq!(alerts.run(at(start, 7)).await.unwrap().firing_sent, 0);
}

#[tokio::test]
async fn fewer_samples_than_the_minimum_decide_nothing() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let targets = Fixed(HashMap::from([(
        "acme".to_owned(),
        Ok(target(&format!("http://{addr}/h"))),
    )]));
    let alerts = alerts(&given, targets, sender(WebhookPolicy::LOCAL, 1, no_dns()));
    commands(&given, "acme", 1, "success", 1.0).await;
    let start = Utc::now();
    alerts.run(start).await.unwrap();
    // 9 failures of 9 (100%, and slow) with a minimum of 10: no alert.
    commands(&given, "acme", 9, "error", 4000.0).await;
    let report = alerts.run(at(start, 5)).await.unwrap();
    assert_eq!((report.evaluated, report.firing_sent), (1, 0));
    assert!(receiver.got().is_empty());
    assert_eq!(state(&given, "acme", "high_error_rate").await, (false, true));
}

#[tokio::test]
async fn organizations_without_webhook_or_with_unreadable_settings_are_skipped_and_others_alerted() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let targets = Fixed(HashMap::from([
        ("acme".to_owned(), Ok(target(&format!("http://{addr}/h")))),
        ("broken".to_owned(), Err("settings table unreachable".to_owned())),
    ]));
    let alerts = alerts(&given, targets, sender(WebhookPolicy::LOCAL, 1, no_dns()));
    for org in ["acme", "broken", "quiet"] {
        commands(&given, org, 1, "success", 1.0).await;
    }
    let start = Utc::now();
    alerts.run(start).await.unwrap();
    for org in ["acme", "broken", "quiet"] {
        commands(&given, org, 12, "error", 1.0).await;
    }
    let report = alerts.run(at(start, 5)).await.unwrap();
    assert_eq!(
        (
            report.organizations,
            report.evaluated,
            report.without_webhook,
            report.settings_unreadable
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(report.firing_sent, 1);
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].verified()["alert"]["organization_id"], "acme");
}

#[tokio::test]
async fn deployed_stages_refuse_http_and_internal_addresses_at_send_time_even_behind_names() {
    let (receiver, addr) = Receiver::start(&[]).await;
    let dns = FixedDns(HashMap::from([
        ("private.example.test", vec!["10.1.2.3".parse().unwrap()]),
        ("metadata.example.test", vec!["169.254.169.254".parse().unwrap()]),
        ("loopback.example.test", vec!["127.0.0.1".parse().unwrap()]),
        ("v6.example.test", vec!["fd00:ec2::254".parse().unwrap()]),
        (
            "mixed.example.test",
            vec!["93.184.216.34".parse().unwrap(), "192.168.0.10".parse().unwrap()],
        ),
    ]));
    let deployed = sender(WebhookPolicy::DEPLOYED, 3, dns);
    let refused = [
        (format!("http://{addr}/h"), "https"),
        ("https://127.0.0.1/h".to_owned(), "loopback"),
        ("https://10.0.0.8/h".to_owned(), "private"),
        ("https://169.254.169.254/latest/meta-data/".to_owned(), "metadata"),
        ("https://[fe80::1]/h".to_owned(), "link-local"),
        ("https://private.example.test/h".to_owned(), "resolves to 10.1.2.3"),
        ("https://metadata.example.test/h".to_owned(), "metadata"),
        ("https://loopback.example.test/h".to_owned(), "loopback"),
        ("https://v6.example.test/h".to_owned(), "unique-local"),
        ("https://mixed.example.test/h".to_owned(), "resolves to 192.168.0.10"),
    ];
    for (url, why) in refused {
        match deployed.send(&url, SECRET, b"{}").await {
            Err(DeliveryError::Refused(reason)) => assert!(reason.contains(why), "{url}: {reason}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(receiver.got().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_refused_webhook_keeps_the_alert_owed_and_sends_nothing() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let targets = Fixed(HashMap::from([(
        "acme".to_owned(),
        Ok(target(&format!("http://{addr}/h"))),
    )]));
    // A deployed stage's sender: the loopback receiver is refused.
    let alerts = alerts(&given, targets, sender(WebhookPolicy::DEPLOYED, 3, no_dns()));
    commands(&given, "acme", 1, "success", 1.0).await;
    let start = Utc::now();
    alerts.run(start).await.unwrap();
    commands(&given, "acme", 12, "error", 1.0).await;
    let report = alerts.run(at(start, 5)).await.unwrap();
    assert_eq!((report.firing_sent, report.deliveries_refused), (0, 1));
    assert!(receiver.got().is_empty());
    assert_eq!(state(&given, "acme", "high_error_rate").await, (true, false));
}

#[tokio::test]
async fn the_connection_goes_to_the_address_that_was_checked() {
    let (receiver, addr) = Receiver::start(&[]).await;
    // A name only the checked answer knows: the system resolver cannot find it, so the POST
    // arrives only if the connection uses the pinned address.
    let dns = FixedDns(HashMap::from([("receiver.alerts.invalid", vec![addr.ip()])]));
    let local = sender(WebhookPolicy::LOCAL, 1, dns);
    let url = format!("http://receiver.alerts.invalid:{}/hook", addr.port());
    assert_eq!(local.send(&url, SECRET, br#"{"text":"hi"}"#).await, Ok(1));
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].host, format!("receiver.alerts.invalid:{}", addr.port()));
    assert_eq!(got[0].verified(), json!({"text": "hi"}));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (receiver, addr) = Receiver::start(&[302]).await;
    let local = sender(WebhookPolicy::LOCAL, 3, no_dns());
    let result = local.send(&format!("http://{addr}/h"), SECRET, b"{}").await;
    assert!(
        matches!(&result, Err(DeliveryError::Failed { attempts: 1, last }) if last.contains("redirect")),
        "{result:?}"
    );
    assert_eq!(receiver.got().len(), 1);
}

#[tokio::test]
async fn the_alerts_function_reads_thresholds_webhook_and_secret_from_the_organizations_settings() {
    let given = TestApp::spawn_with(&[("WEBHOOK_ALLOW_LOOPBACK", "true"), ("ALERT_MIN_SAMPLES", "10")]).await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let admin = shared::domain::ids::Caller {
        role: shared::domain::ids::Role::Admin,
        ..shared::domain::ids::Caller::member(
            OrgId::parse("acme").unwrap(),
            shared::domain::ids::UserId::parse("boss").unwrap(),
        )
    };
    // An admin sets the webhook (the secret is made then) and a 20% error-rate threshold.
    let patch = json!({"alerts": {"webhook_url": format!("http://{addr}/slack"), "high_error_rate_threshold": 20.0}});
    let written = given
        .stack
        .settings
        .write(&admin, &patch, shared::app::settings::Write::Merge)
        .await
        .unwrap();
    let secret = written["webhook_secret"].as_str().expect("a signing secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    commands(&given, "acme", 1, "success", 1.0).await;
    commands(&given, "other", 1, "success", 1.0).await;
    let alerts = &given.stack.alerts;
    let start = Utc::now();
    alerts.run(start).await.unwrap();

    // 3 failures in 20 (15%): under this organization's 20%, so nothing (the default 5% would fire).
    commands(&given, "acme", 3, "error", 1.0).await;
    commands(&given, "acme", 17, "success", 1.0).await;
    let under = alerts.run(at(start, 5)).await.unwrap();
    assert_eq!(
        (under.evaluated, under.without_webhook, under.firing_sent),
        (1, 1, 0),
        "{under:?}"
    );

    // 10 failures in 20 (50%): fired, signed with the organization's secret.
    commands(&given, "acme", 10, "error", 1.0).await;
    commands(&given, "acme", 10, "success", 1.0).await;
    assert_eq!(alerts.run(at(start, 10)).await.unwrap().firing_sent, 1);
    let message = receiver.got()[0].verified_with(&secret);
    assert_eq!(message["alert"]["threshold"], 20.0);
    assert_eq!(message["alert"]["observed"], 50.0);
}

#[tokio::test]
async fn overlapping_runs_send_a_change_once() {
    let given = TestApp::spawn().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let url = format!("http://{addr}/h");
    let targets = || Fixed(HashMap::from([("acme".to_owned(), Ok(target(&url)))]));
    // Two containers' runs (EventBridge may deliver a schedule twice).
    let one = alerts(&given, targets(), sender(WebhookPolicy::LOCAL, 1, no_dns()));
    let two = alerts(&given, targets(), sender(WebhookPolicy::LOCAL, 1, no_dns()));
    commands(&given, "acme", 1, "success", 1.0).await;
    let start = Utc::now();
    one.run(start).await.unwrap();
    commands(&given, "acme", 12, "error", 1.0).await;
    for minute in 5..8 {
        let (a, b) = tokio::join!(one.run(at(start, minute)), two.run(at(start, minute)));
        let _ = (a.unwrap(), b.unwrap());
    }
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].verified()["alert"]["state"], "firing");
}

/// An admin's PATCH of the organization's webhook over HTTP: the status and the errors' fields.
async fn save_webhook(addr: SocketAddr, url: &str) -> (u16, Vec<String>) {
    let body = json!({"alerts": {"webhook_url": url}}).to_string();
    let bearer = integration_tests::admin_token("acme", "lead");
    let (status, _, answer) = integration_tests::http(
        addr,
        "PATCH",
        "/api/v1/organization/settings",
        Some(&bearer),
        "application/json",
        &body,
    )
    .await;
    let fields = answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (status, fields)
}

#[tokio::test]
async fn saving_a_webhook_that_points_inside_is_refused_naming_the_field() {
    let deployed = TestApp::spawn().await;
    let addr = deployed.serve_http().await;
    for url in [
        "http://hooks.example.com/a",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/a",
        "https://127.1/a",
        "https://localhost/a",
        "https://[::ffff:192.168.0.1]/a",
    ] {
        assert_eq!(
            save_webhook(addr, url).await,
            (400, vec!["alerts.webhook_url".to_owned()]),
            "{url}"
        );
    }
    assert_eq!(save_webhook(addr, "https://hooks.example.com/a").await.0, 200);

    // The local stack accepts a receiver on this machine.
    let local = TestApp::spawn_with(&[("WEBHOOK_ALLOW_LOOPBACK", "true")]).await;
    let addr = local.serve_http().await;
    assert_eq!(save_webhook(addr, "http://127.0.0.1:9099/a").await.0, 200);
    assert_eq!(save_webhook(addr, "http://10.0.0.1/a").await.0, 400);
}
