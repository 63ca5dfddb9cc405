//! API keys kept in memory, behaving as the DynamoDB table does (the key contract runs on
//! both), with a switch that makes the store unreachable and a count of reads by id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::api_keys::{KeyId, KeyInfo, StoredKey, at_key_precision};
use crate::domain::ids::OrgId;
use crate::lock;
use crate::ports::api_keys::{ApiKeyStore, KeyStoreError};

#[derive(Default)]
pub struct InMemoryApiKeys {
    keys: Mutex<HashMap<KeyId, StoredKey>>,
    unavailable: AtomicBool,
    reads: AtomicUsize,
}

impl InMemoryApiKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on every call fails as an unreachable table would (or works again).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Reads by id so far ([`ApiKeyStore::get`]): the round trips an authentication made.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn reachable(&self) -> Result<(), KeyStoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(KeyStoreError::Unavailable(
                "in-memory key store set to unavailable".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ApiKeyStore for InMemoryApiKeys {
    async fn create(&self, key: &StoredKey) -> Result<(), KeyStoreError> {
        self.reachable()?;
        let mut keys = lock(&self.keys);
        if keys.contains_key(&key.info.id) {
            return Err(KeyStoreError::IdTaken);
        }
        keys.insert(key.info.id.clone(), key.clone());
        Ok(())
    }

    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, KeyStoreError> {
        self.reachable()?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.keys).get(id).cloned())
    }

    async fn list(&self, org: &OrgId) -> Result<Vec<KeyInfo>, KeyStoreError> {
        self.reachable()?;
        let mut keys: Vec<KeyInfo> = lock(&self.keys)
            .values()
            .filter(|key| &key.info.org == org)
            .map(|key| key.info.clone())
            .collect();
        keys.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(keys)
    }

    async fn revoke(&self, org: &OrgId, id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyInfo>, KeyStoreError> {
        self.reachable()?;
        let mut keys = lock(&self.keys);
        let Some(key) = keys.get_mut(id).filter(|key| &key.info.org == org) else {
            return Ok(None);
        };
        // The table keeps times to the millisecond.
        key.info.revoked_at.get_or_insert(at_key_precision(at));
        Ok(Some(key.info.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_key_store_keeps_the_key_contract() {
        crate::fakes::key_contract::every_case(&InMemoryApiKeys::new(), "contract").await;
    }
}
