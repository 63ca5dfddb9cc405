//! Verification keys from the issuer's JWKS URL: fetched on first use, cached by `kid`, and
//! fetched again when a token names a key the cache does not hold — at most once per
//! `JWT_JWKS_MIN_REFRESH_MS`, so a flood of made-up `kid`s cannot turn into a flood of fetches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::adapters::tls::HttpClient;
use crate::config::ConfigError;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

pub struct Jwks {
    url: http::Uri,
    algorithm: Algorithm,
    client: HttpClient,
    timeout: Duration,
    min_refresh: Duration,
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    /// When the keys were last fetched (successfully or not); one fetch at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum JwksError {
    /// The key server could not be read (or sent nothing usable).
    Unavailable(String),
}

impl Jwks {
    pub fn new(url: &str, algorithm: Algorithm, min_refresh: Duration, timeout: Duration) -> Result<Self, ConfigError> {
        let url: http::Uri = url
            .parse()
            .map_err(|e| ConfigError::new("JWT_JWKS_URL", format!("not a URL: {e}")))?;
        if !matches!(url.scheme_str(), Some("https" | "http")) {
            return Err(ConfigError::new("JWT_JWKS_URL", "must be an http(s) URL"));
        }
        Ok(Self {
            url,
            algorithm,
            client: crate::adapters::tls::http_client("JWT_JWKS_URL")?,
            timeout,
            min_refresh,
            keys: RwLock::new(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    /// Fetches made so far (tests check that they are bounded).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The key named `kid`, fetching the set again if it is unknown and the last fetch is old
    /// enough; `None` when the issuer does not publish it.
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<DecodingKey>>, JwksError> {
        if let Some(key) = self.cached(kid) {
            return Ok(Some(key));
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached(kid) {
            return Ok(Some(key));
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Ok(None);
        }
        *last_fetch = Some(Instant::now());
        let fetched = self.fetch().await;
        let keys = match fetched {
            Ok(keys) => keys,
            // With keys cached, an unreachable key server only means this kid stays unknown.
            Err(err) if !self.is_empty() => {
                tracing::warn!(error = ?err, "JWKS refresh failed; keeping the cached keys");
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(self.cached(kid))
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).get(kid).cloned()
    }

    fn is_empty(&self) -> bool {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let unavailable = |e: &dyn std::fmt::Display| JwksError::Unavailable(format!("JWKS {}: {e}", self.url));
        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| unavailable(&e))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| unavailable(&"no answer in time"))?
            .map_err(|e| unavailable(&e))?;
        if !response.status().is_success() {
            return Err(unavailable(&response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| unavailable(&e))?
            .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| unavailable(&e))?;
        let keys: HashMap<String, Arc<DecodingKey>> = set
            .keys
            .iter()
            .filter(|jwk| self.usable(jwk))
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        if keys.is_empty() {
            return Err(unavailable(&format!("no {:?} signing key with a kid", self.algorithm)));
        }
        Ok(keys)
    }

    /// A signing key of this deployment's algorithm (keys without `alg`/`use` are accepted).
    fn usable(&self, jwk: &Jwk) -> bool {
        let wanted = match self.algorithm {
            Algorithm::RS256 => KeyAlgorithm::RS256,
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => return false,
        };
        jwk.common.key_algorithm.is_none_or(|alg| alg == wanted)
            && jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature)
    }
}
