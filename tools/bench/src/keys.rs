//! The single-metric route authenticated by API key against the same route by JWT, over HTTP and
//! interleaved on one connection; the key table reads that a key's authentications cost (one per
//! `API_KEY_CACHE_MS`: a cached key adds no round trip to the request); and the time of one
//! authentication in process, a cached key against a JWT.
//!
//! May use `stats`, `stack` and `http` (for the front and the requests), and the service's crates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::adapters::dynamodb::api_keys::{ApiKeyConfig, DEFAULT_API_KEY_CACHE_MS, DynamoApiKeys};
use shared::config::AuthConfig;
use shared::domain::api_keys::request::NewKeyRequest;
use shared::domain::api_keys::{KeyId, KeyInfo, StoredKey};
use shared::domain::ids::{Caller, OrgId, Role, UserId};
use shared::http::api_keys::ApiKeyAuth;
use shared::http::auth::Authenticator;
use shared::ports::api_keys::{ApiKeyStore, KeyStoreError};

use crate::http::{WARM_UP, post_command, serve_front};
use crate::stack::{Sizes, Stack, env, env_for, token};
use crate::stats::{RoundOrder, Stats, ms, round3};

const ORG: &str = "bench-keys";

pub async fn measure(stack: &Stack, sizes: &Sizes, results: &mut Map<String, Value>) {
    let store = table(stack).await;
    let key = new_key(&store).await;
    let (addr, mut connection) = serve_front(stack, false).await;
    let jwt = token(ORG, "bench-user");
    let (mut by_jwt, mut by_key) = (Vec::new(), Vec::new());
    let mut order = RoundOrder::new();
    for i in 0..sizes.http + WARM_UP {
        for by_key_now in order.shuffle([false, true]) {
            let (credential, samples) = if by_key_now {
                (&key, &mut by_key)
            } else {
                (&jwt, &mut by_jwt)
            };
            let took = post_command(&mut connection, addr, credential).await;
            if i >= WARM_UP {
                samples.push(ms(took));
            }
        }
    }
    let (jwt_stats, key_stats) = (Stats::of(&by_jwt), Stats::of(&by_key));
    results.insert("handler_over_http_jwt".into(), jwt_stats.json(sizes.http));
    results.insert("handler_over_http_api_key".into(), key_stats.json(sizes.http));
    let ratios = results.entry("ratios").or_insert_with(|| json!({}));
    ratios["http_p50_api_key_over_jwt"] = json!(round3(key_stats.p50 / jwt_stats.p50));
    ratios["http_p95_api_key_over_jwt"] = json!(round3(key_stats.p95 / jwt_stats.p95));
    let n = sizes.http + WARM_UP;
    let (reads, auth) = table_reads(store, &key, n).await;
    results.insert(
        "api_key_table_reads".into(),
        json!({"reads": reads, "authentications": n}),
    );
    results.insert(
        "api_key_table_reads_per_request".into(),
        json!(round3(reads as f64 / n as f64)),
    );
    results.insert(
        "authentication_in_process_us".into(),
        in_process(&auth, &key, &jwt, n * 10).await,
    );
}

/// Mean microseconds of one authentication in process, by JWT and by a cached key (`n` of each).
async fn in_process(auth: &ApiKeyAuth, key: &str, jwt: &str, n: usize) -> Value {
    let env = env(&[("JWT_SECRET".to_owned(), shared::config::LOCAL_DEV_SECRET.to_owned())]);
    let tokens = Authenticator::new(&AuthConfig::from_env(&env).expect("auth configuration")).expect("authenticator");
    let started = Instant::now();
    for _ in 0..n {
        tokens.verify(jwt).expect("the token is accepted");
    }
    let by_jwt = started.elapsed();
    let started = Instant::now();
    for _ in 0..n {
        auth.authenticate(key).await.expect("the key is accepted");
    }
    let by_key = started.elapsed();
    let mean_us = |total: Duration| round3(total.as_secs_f64() * 1e6 / n as f64);
    json!({"n": n, "jwt": mean_us(by_jwt), "cached_api_key": mean_us(by_key)})
}

/// The stack's keys table, as the functions configure it.
async fn table(stack: &Stack) -> DynamoApiKeys {
    let config = ApiKeyConfig::from_env(&env(&env_for(stack, &[]))).expect("key configuration");
    DynamoApiKeys::new(&shared::app::aws_config().await, &config).expect("keys table")
}

/// A member key of the benchmark's organization, made as `POST /api/v1/keys` makes one.
async fn new_key(store: &DynamoApiKeys) -> String {
    let admin = Caller {
        org: OrgId::parse(ORG).expect("org"),
        user: UserId::parse("bench-admin").expect("user"),
        role: Role::Admin,
    };
    let now = Utc::now();
    let request = NewKeyRequest::from_json(&json!({"user_id": "bench-user"}), now).expect("request");
    let (key, _) = shared::app::keys::issue(store, &admin, &request, now)
        .await
        .expect("key");
    key.text().to_owned()
}

/// Reads of the keys table for `n` authentications by the same key, with the default cache; and
/// the authenticator, the key cached.
async fn table_reads(store: DynamoApiKeys, key: &str, n: usize) -> (usize, ApiKeyAuth) {
    let counted = Arc::new(Counted {
        inner: store,
        reads: AtomicUsize::new(0),
    });
    let auth = ApiKeyAuth::new(counted.clone(), Duration::from_millis(DEFAULT_API_KEY_CACHE_MS));
    for _ in 0..n {
        auth.authenticate(key).await.expect("the key is accepted");
    }
    (counted.reads.load(Ordering::Relaxed), auth)
}

/// The keys table, counting its reads by id.
struct Counted {
    inner: DynamoApiKeys,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl ApiKeyStore for Counted {
    async fn create(&self, key: &StoredKey) -> Result<(), KeyStoreError> {
        self.inner.create(key).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, KeyStoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(id).await
    }

    async fn list(&self, org: &OrgId) -> Result<Vec<KeyInfo>, KeyStoreError> {
        self.inner.list(org).await
    }

    async fn revoke(&self, org: &OrgId, id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyInfo>, KeyStoreError> {
        self.inner.revoke(org, id, at).await
    }
}
