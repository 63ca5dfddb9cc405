//! Authentication by API key (`Authorization: Bearer mcsk_…`): the shape is checked first (a
//! wrong shape is refused with no lookup), the record is read by key id through a cache of this
//! container, and the secret is checked against the record's hash in constant time, with the
//! key's revocation and expiry (expiry against the clock on every use, cached or not).
//!
//! The cache keeps what was read, found or not, for `API_KEY_CACHE_MS` (at most 60 s): a cached
//! key costs no round trip, and a revocation takes effect within that time. It holds at most
//! [`MAX_CACHED_KEYS`] keys and [`MAX_CACHED_UNKNOWN`] unknown ids, so a flood of made-up ids
//! cannot grow it. Keys and secrets are never logged.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::domain::api_keys::{KeyId, KeyRefusal, PresentedKey, StoredKey, check};
use crate::domain::ids::Caller;
use crate::http::auth::AuthError;
use crate::lock;
use crate::ports::api_keys::ApiKeyStore;

/// Most keys one container remembers.
pub const MAX_CACHED_KEYS: usize = 10_000;
/// Most unknown ids one container remembers.
pub const MAX_CACHED_UNKNOWN: usize = 1_000;

pub struct ApiKeyAuth {
    store: Arc<dyn ApiKeyStore>,
    ttl: Duration,
    known: Mutex<HashMap<KeyId, (Instant, Arc<StoredKey>)>>,
    unknown: Mutex<HashMap<KeyId, (Instant, ())>>,
}

impl ApiKeyAuth {
    /// Keys read from `store`, each trusted for `ttl` once read.
    pub fn new(store: Arc<dyn ApiKeyStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            known: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
        }
    }

    /// Reads every key from the store, trusting no cached record: for the routes where a key
    /// revoked a moment ago must already be refused (see `Api::reading_keys_fresh`).
    pub fn uncached(mut self) -> Self {
        self.ttl = Duration::ZERO;
        self
    }

    /// The caller `token` (a bearer starting with `mcsk_`) names, with the key's expiry (Unix
    /// seconds) when it has one.
    pub async fn authenticate(&self, token: &str) -> Result<(Caller, Option<i64>), AuthError> {
        let presented = PresentedKey::parse(token).ok_or(AuthError::MalformedKey)?;
        let stored = self.lookup(presented.id()).await?;
        let info = check(&presented, stored.as_deref(), Utc::now()).map_err(refused)?;
        Ok((info.caller(), info.expires_at.map(|at| at.timestamp())))
    }

    /// The key's record: from the cache while it is fresh, else from the store (and cached).
    async fn lookup(&self, id: &KeyId) -> Result<Option<Arc<StoredKey>>, AuthError> {
        if let Some(fresh) = fresh(&self.known, id, self.ttl) {
            return Ok(Some(fresh));
        }
        if fresh(&self.unknown, id, self.ttl).is_some() {
            return Ok(None);
        }
        let read = self
            .store
            .get(id)
            .await
            .map_err(|err| AuthError::KeyStoreUnavailable(err.to_string()))?
            .map(Arc::new);
        if !self.ttl.is_zero() {
            match &read {
                Some(key) => remember(&self.known, id, key.clone(), MAX_CACHED_KEYS, self.ttl),
                None => remember(&self.unknown, id, (), MAX_CACHED_UNKNOWN, self.ttl),
            }
        }
        Ok(read)
    }

    /// Entries in the cache (known keys, unknown ids), for tests of its bound.
    pub fn cached(&self) -> (usize, usize) {
        (lock(&self.known).len(), lock(&self.unknown).len())
    }
}

fn refused(refusal: KeyRefusal) -> AuthError {
    match refusal {
        KeyRefusal::Malformed => AuthError::MalformedKey,
        KeyRefusal::Invalid => AuthError::InvalidKey,
        KeyRefusal::Revoked => AuthError::KeyRevoked,
        KeyRefusal::Expired => AuthError::KeyExpired,
    }
}

/// The entry for `id` when it was read less than `ttl` ago.
fn fresh<V: Clone>(cache: &Mutex<HashMap<KeyId, (Instant, V)>>, id: &KeyId, ttl: Duration) -> Option<V> {
    lock(cache)
        .get(id)
        .filter(|(read_at, _)| read_at.elapsed() < ttl)
        .map(|(_, value)| value.clone())
}

/// Caches `value` under `id`; when the cache is full, stale entries go first, then the oldest.
fn remember<K: Hash + Eq + Clone, V>(
    cache: &Mutex<HashMap<K, (Instant, V)>>,
    id: &K,
    value: V,
    most: usize,
    ttl: Duration,
) {
    let mut cache = lock(cache);
    if cache.len() >= most && !cache.contains_key(id) {
        cache.retain(|_, (read_at, _)| read_at.elapsed() < ttl);
        if cache.len() >= most {
            let oldest = cache
                .iter()
                .min_by_key(|(_, (read_at, _))| *read_at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
    }
    cache.insert(id.clone(), (Instant::now(), value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::api_keys::{KeyInfo, NewKey};
    use crate::domain::ids::{OrgId, Role, UserId};
    use crate::fakes::api_keys::InMemoryApiKeys;

    async fn stored_key(store: &InMemoryApiKeys, expires_in: Option<chrono::Duration>) -> NewKey {
        let key = crate::app::keys::generate();
        let now = Utc::now();
        let info = KeyInfo {
            id: key.id.clone(),
            org: OrgId::parse("acme").unwrap(),
            user: UserId::parse("alice").unwrap(),
            role: Role::Admin,
            name: None,
            created_at: now,
            created_by: UserId::parse("root").unwrap(),
            expires_at: expires_in.map(|d| now + d),
            revoked_at: None,
        };
        let stored = StoredKey {
            info,
            hash: key.hash.clone(),
        };
        crate::ports::api_keys::ApiKeyStore::create(store, &stored)
            .await
            .unwrap();
        key
    }

    fn auth(store: &Arc<InMemoryApiKeys>, ttl_ms: u64) -> ApiKeyAuth {
        ApiKeyAuth::new(store.clone(), Duration::from_millis(ttl_ms))
    }

    #[tokio::test]
    async fn a_cached_key_costs_no_round_trip_and_a_revocation_is_seen_after_the_ttl() {
        let store = Arc::new(InMemoryApiKeys::new());
        let key = stored_key(&store, None).await;
        let auth = auth(&store, 200);
        let (caller, expires) = auth.authenticate(key.text()).await.unwrap();
        assert_eq!(
            (caller.org.as_str(), caller.user.as_str(), caller.role),
            ("acme", "alice", Role::Admin)
        );
        assert_eq!(expires, None);
        for _ in 0..5 {
            auth.authenticate(key.text()).await.unwrap();
        }
        assert_eq!(store.reads(), 1, "one read, then the cache");

        let org = OrgId::parse("acme").unwrap();
        crate::ports::api_keys::ApiKeyStore::revoke(store.as_ref(), &org, &key.id, Utc::now())
            .await
            .unwrap();
        assert!(auth.authenticate(key.text()).await.is_ok(), "still cached");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(auth.authenticate(key.text()).await.unwrap_err(), AuthError::KeyRevoked);
    }

    #[tokio::test]
    async fn expiry_is_checked_on_every_use_even_from_the_cache() {
        let store = Arc::new(InMemoryApiKeys::new());
        let key = stored_key(&store, Some(chrono::Duration::milliseconds(300))).await;
        let auth = auth(&store, 60_000);
        let (_, expires) = auth.authenticate(key.text()).await.unwrap();
        assert!(expires.is_some());
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(auth.authenticate(key.text()).await.unwrap_err(), AuthError::KeyExpired);
        assert_eq!(store.reads(), 1, "the cached record, checked against the clock");
    }

    #[tokio::test]
    async fn wrong_shapes_cost_no_lookup_and_wrong_secrets_say_nothing_of_the_id() {
        let store = Arc::new(InMemoryApiKeys::new());
        let key = stored_key(&store, None).await;
        let auth = auth(&store, 60_000);
        for bad in ["mcsk_", "mcsk_abc_def", &format!("{}0", key.text())] {
            assert_eq!(
                auth.authenticate(bad).await.unwrap_err(),
                AuthError::MalformedKey,
                "{bad}"
            );
        }
        assert_eq!(store.reads(), 0);
        let wrong_secret = format!("{}{}", &key.text()[..38], "0".repeat(64));
        let unknown = crate::app::keys::generate();
        let a = auth.authenticate(&wrong_secret).await.unwrap_err();
        let b = auth.authenticate(unknown.text()).await.unwrap_err();
        assert_eq!((a.to_string(), &b), (b.to_string(), &AuthError::InvalidKey));
    }

    #[tokio::test]
    async fn an_unreachable_store_is_an_outage_not_a_refusal() {
        let store = Arc::new(InMemoryApiKeys::new());
        let key = stored_key(&store, None).await;
        store.set_unavailable(true);
        let err = auth(&store, 60_000).authenticate(key.text()).await.unwrap_err();
        assert!(matches!(err, AuthError::KeyStoreUnavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn the_cache_stays_bounded_under_a_flood_of_unknown_ids() {
        let store = Arc::new(InMemoryApiKeys::new());
        let key = stored_key(&store, None).await;
        let auth = auth(&store, 60_000);
        auth.authenticate(key.text()).await.unwrap();
        for _ in 0..MAX_CACHED_UNKNOWN + 50 {
            let _ = auth.authenticate(crate::app::keys::generate().text()).await;
        }
        assert_eq!(auth.cached(), (1, MAX_CACHED_UNKNOWN));
        auth.authenticate(key.text()).await.unwrap();
        assert_eq!(store.reads(), MAX_CACHED_UNKNOWN + 51, "the real key stayed cached");
    }
}
