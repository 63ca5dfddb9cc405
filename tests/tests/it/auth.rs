//! Authentication over HTTP: the attack list (API keys included) on every authenticated route,
//! RS256/ES256 keys from a JWKS URL (cached, chosen by `kid`, unknown `kid`s refreshed at most
//! once per interval), and tokens never written to the logs.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use integration_tests::{
    SECRET, TestApp, fresh_database, http, http_with_authorization, parsed, spec_command_example, token,
};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const RSA_PRIVATE: &str = include_str!("../../../shared/testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../../shared/testdata/rsa_public.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("../../../shared/testdata/rsa_other_private.pem");
const EC_PRIVATE: &str = include_str!("../../../shared/testdata/ec_private.pem");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({"sub": "alice", "org_id": "acme", "exp": now() + 600})
}

fn signed(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every route that needs a token, with a body it would accept.
fn authenticated_routes() -> Vec<(&'static str, String, String)> {
    let session = uuid::Uuid::new_v4();
    vec![
        (
            "POST",
            "/api/v1/metrics/command-execution".into(),
            spec_command_example().to_string(),
        ),
        (
            "POST",
            "/api/v1/metrics/agent-interaction".into(),
            json!({"agent_name": "a", "interaction_type": "response", "input_tokens": 1, "output_tokens": 1,
                   "processing_time_ms": 1, "success": true})
            .to_string(),
        ),
        (
            "POST",
            "/api/v1/metrics/productivity".into(),
            json!({"metric_type": "error_rate", "value": 1, "unit": "percent",
                   "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"})
            .to_string(),
        ),
        ("POST", "/api/v1/metrics/session/start".into(), "{}".into()),
        ("PUT", format!("/api/v1/metrics/session/{session}"), "{}".into()),
        (
            "POST",
            "/api/v1/metrics/session/end".into(),
            json!({"session_id": session}).to_string(),
        ),
        (
            "POST",
            "/api/v1/metrics/batch".into(),
            json!({"command_executions": [spec_command_example()]}).to_string(),
        ),
        (
            "POST",
            "/api/v1/hooks/claude-code".into(),
            json!({"session_id": "s", "hook_event_name": "Stop"}).to_string(),
        ),
        ("POST", "/api/v1/keys".into(), json!({"user_id": "bob"}).to_string()),
        ("GET", "/api/v1/keys".into(), String::new()),
        ("DELETE", format!("/api/v1/keys/{}", "0".repeat(32)), String::new()),
    ]
}

/// The attack list of the foundation issue: (what, Authorization header or none).
fn attacks() -> Vec<(&'static str, Option<String>)> {
    let hs = |claims: &Value, secret: &str| {
        signed(
            Algorithm::HS256,
            None,
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
    };
    let mut expired = claims();
    expired["exp"] = json!(now() - 60);
    let mut not_yet = claims();
    not_yet["nbf"] = json!(now() + 600);
    let mut no_org = claims();
    no_org.as_object_mut().unwrap().remove("org_id");
    let mut hostile_org = claims();
    hostile_org["org_id"] = json!("acme\"; DROP SCHEMA public CASCADE; --");
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims().to_string().as_bytes())
    );
    vec![
        ("missing header", None),
        ("basic scheme", Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l".into())),
        ("garbage token", Some("Bearer not.a.token".into())),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "wrong secret",
            Some(format!("Bearer {}", hs(&claims(), "another-secret-0123456789"))),
        ),
        (
            "RS256 token at an HS256 deployment",
            Some(format!(
                "Bearer {}",
                signed(Algorithm::RS256, None, &claims(), &rsa(RSA_PRIVATE))
            )),
        ),
        (
            "HS256 signed with the RSA public key",
            Some(format!("Bearer {}", hs(&claims(), RSA_PUBLIC))),
        ),
        ("expired", Some(format!("Bearer {}", hs(&expired, SECRET)))),
        ("not yet valid", Some(format!("Bearer {}", hs(&not_yet, SECRET)))),
        ("no exp", Some(format!("Bearer {}", hs(&no_exp, SECRET)))),
        ("no org_id", Some(format!("Bearer {}", hs(&no_org, SECRET)))),
        ("hostile org_id", Some(format!("Bearer {}", hs(&hostile_org, SECRET)))),
        ("oversized token", Some(format!("Bearer {}", "a".repeat(9000)))),
        ("malformed API key", Some("Bearer mcsk_0123456789abcdef".into())),
        (
            "made-up API key",
            Some(format!("Bearer mcsk_{}_{}", "7".repeat(32), "e".repeat(64))),
        ),
    ]
}

/// Sends a request with an explicit Authorization header (or none).
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    parsed(http_with_authorization(addr, method, path, authorization, "application/json", body).await)
}

#[tokio::test]
async fn every_attack_is_refused_on_every_authenticated_route_and_nothing_is_stored() {
    let given = TestApp::spawn().await;
    let addr = given.serve_http().await;
    for (method, path, body) in authenticated_routes() {
        for (what, authorization) in attacks() {
            let (status, head, answer) = send(addr, method, &path, authorization.as_deref(), &body).await;
            assert_eq!(status, 401, "{what} on {method} {path}: {answer}");
            assert!(head.contains("www-authenticate: bearer"), "{what} on {path}");
            assert_eq!(answer["success"], false);
        }
    }
    let schemas: i64 = given
        .db()
        .await
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'org_%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0, "no refused request provisioned anything");
}

/// A JWKS endpoint whose key set can be changed, counting its hits; it can also fail.
#[derive(Clone, Default)]
struct KeyServer {
    keys: Arc<Mutex<Vec<Jwk>>>,
    hits: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl KeyServer {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let server = server.clone();
                        async move {
                            server.hits.fetch_add(1, Ordering::SeqCst);
                            let mut response = if server.down.load(Ordering::SeqCst) {
                                let mut r = hyper::Response::new(Full::new(Bytes::from("down")));
                                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                                r
                            } else {
                                let set = JwkSet {
                                    keys: server.keys.lock().unwrap().clone(),
                                };
                                hyper::Response::new(Full::new(Bytes::from(serde_json::to_vec(&set).unwrap())))
                            };
                            response
                                .headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        format!("http://{addr}/.well-known/jwks.json")
    }

    fn publish(&self, kid: &str, key: &EncodingKey, alg: Algorithm) {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        self.keys.lock().unwrap().push(jwk);
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn jwks_app(url: &str, algorithm: &str) -> TestApp {
    let database_url = fresh_database().await;
    TestApp::spawn_on(
        &database_url,
        &[
            ("JWT_ALGORITHM", algorithm),
            ("JWT_JWKS_URL", url),
            ("JWT_JWKS_MIN_REFRESH_MS", "300"),
        ],
    )
    .await
}

async fn post_command(addr: std::net::SocketAddr, token: &str) -> (u16, Value) {
    let (status, _, body) = http(
        addr,
        "POST",
        "/api/v1/metrics/command-execution",
        Some(token),
        "application/json",
        &spec_command_example().to_string(),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn rs256_keys_come_from_the_jwks_url_chosen_by_kid_and_cached() {
    let keys = KeyServer::default();
    keys.publish("k1", &rsa(RSA_PRIVATE), Algorithm::RS256);
    let given = jwks_app(&keys.start().await, "RS256").await;
    let addr = given.serve_http().await;
    let k1 = signed(Algorithm::RS256, Some("k1"), &claims(), &rsa(RSA_PRIVATE));

    for _ in 0..5 {
        assert_eq!(post_command(addr, &k1).await.0, 201);
    }
    assert_eq!(keys.hits(), 1, "fetched once, then cached");

    // A token naming a key the issuer does not publish: one refresh, then refused; a burst of
    // such tokens does not turn into a burst of fetches.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let unknown = signed(Algorithm::RS256, Some("k-unknown"), &claims(), &rsa(RSA_OTHER_PRIVATE));
    let (status, body) = post_command(addr, &unknown).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Token signing key is not known"))
    );
    assert_eq!(keys.hits(), 2);
    for i in 0..20 {
        let made_up = signed(
            Algorithm::RS256,
            Some(&format!("k-made-up-{i}")),
            &claims(),
            &rsa(RSA_OTHER_PRIVATE),
        );
        assert_eq!(post_command(addr, &made_up).await.0, 401);
    }
    assert_eq!(keys.hits(), 2, "refreshes are bounded by JWT_JWKS_MIN_REFRESH_MS");

    // The issuer rotates in a new key: after the interval, its tokens are accepted.
    keys.publish("k2", &rsa(RSA_OTHER_PRIVATE), Algorithm::RS256);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let k2 = signed(Algorithm::RS256, Some("k2"), &claims(), &rsa(RSA_OTHER_PRIVATE));
    assert_eq!(post_command(addr, &k2).await.0, 201);
    assert_eq!(
        post_command(addr, &k1).await.0,
        201,
        "the old key still works while published"
    );

    // A kid with the wrong key's signature, a missing kid, or another algorithm: refused.
    let forged = signed(Algorithm::RS256, Some("k1"), &claims(), &rsa(RSA_OTHER_PRIVATE));
    assert_eq!(post_command(addr, &forged).await.0, 401);
    let no_kid = signed(Algorithm::RS256, None, &claims(), &rsa(RSA_PRIVATE));
    let (status, body) = post_command(addr, &no_kid).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Token header has no key id (kid)"))
    );
    let confused = signed(
        Algorithm::HS256,
        Some("k1"),
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    );
    assert_eq!(post_command(addr, &confused).await.0, 401);
}

#[tokio::test]
async fn es256_keys_from_a_jwks_are_accepted() {
    let keys = KeyServer::default();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    keys.publish("ec-1", &ec, Algorithm::ES256);
    let given = jwks_app(&keys.start().await, "ES256").await;
    let addr = given.serve_http().await;
    assert_eq!(
        post_command(addr, &signed(Algorithm::ES256, Some("ec-1"), &claims(), &ec))
            .await
            .0,
        201
    );
    let rs = signed(Algorithm::RS256, Some("ec-1"), &claims(), &rsa(RSA_PRIVATE));
    assert_eq!(
        post_command(addr, &rs).await.0,
        401,
        "an ES256 deployment refuses RS256"
    );
}

#[tokio::test]
async fn an_unreachable_key_server_is_an_outage_not_a_bad_token() {
    let keys = KeyServer::default();
    keys.down.store(true, Ordering::SeqCst);
    let given = jwks_app(&keys.start().await, "RS256").await;
    let addr = given.serve_http().await;
    let k1 = signed(Algorithm::RS256, Some("k1"), &claims(), &rsa(RSA_PRIVATE));
    let (status, body) = post_command(addr, &k1).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "Token keys temporarily unavailable");
    assert!(!body.to_string().contains("127.0.0.1"));
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let captured = integration_tests::logs();
    let given = TestApp::spawn_with(&[("RATE_LIMIT_MAX_REQUESTS", "3"), ("RATE_LIMIT_WINDOW_MS", "86400000")]).await;
    let addr = given.serve_http().await;
    let good = token("logcheck", "alice");
    let mut sent = vec![good.clone()];
    // Served, refused (validation, rate limit) and failed (bad tokens) requests all log a line.
    for _ in 0..5 {
        post_command(addr, &good).await;
    }
    http(
        addr,
        "POST",
        "/api/v1/metrics/command-execution",
        Some(&good),
        "application/json",
        "{\"bad\": 1}",
    )
    .await;
    for (_, authorization) in attacks() {
        if let Some(value) = authorization {
            send(addr, "POST", "/api/v1/metrics/command-execution", Some(&value), "{}").await;
            sent.push(value.trim_start_matches("Bearer ").to_owned());
        }
    }
    let logs = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
    assert!(logs.contains("\"org\":\"logcheck\""), "the requests were logged");
    for token in sent.iter().filter(|t| t.len() > 16) {
        let signature = token.rsplit('.').next().unwrap_or(token);
        assert!(!logs.contains(token.as_str()), "a token reached the logs");
        assert!(
            signature.len() < 8 || !logs.contains(signature),
            "a token signature reached the logs"
        );
    }
    assert!(!logs.contains(SECRET), "the signing secret reached the logs");
    assert!(!logs.contains("Bearer ey"), "an Authorization header reached the logs");
}

#[tokio::test]
async fn tokens_minted_for_a_stage_carry_the_issuer_and_audience_it_checks() {
    let given = TestApp::spawn_with(&[
        ("JWT_ISSUER", "https://auth.example.com"),
        ("JWT_AUDIENCE", "metrics-api, dashboards"),
    ])
    .await;
    let addr = given.serve_http().await;
    let for_stage = local_front::token::mint_for(
        SECRET,
        "acme",
        "alice",
        1,
        Some("https://auth.example.com"),
        Some("metrics-api"),
    )
    .unwrap();
    assert_eq!(post_command(addr, &for_stage).await.0, 201);
    let (status, body) = post_command(addr, &token("acme", "alice")).await;
    assert_eq!(status, 401, "without iss and aud: {body}");
}
