//! The API-key port: where keys' records are kept — create one, read one by id, list an
//! organization's, revoke one. Only the hash of a secret ever reaches it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::api_keys::{KeyId, KeyInfo, StoredKey};
use crate::domain::ids::OrgId;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The store cannot be reached or did not answer in time: not the client's fault.
    #[error("API key store unavailable: {0}")]
    Unavailable(String),
    /// A key with this id exists already (128 random bits: only a broken generator gets here).
    #[error("an API key with this id exists already")]
    IdTaken,
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Keeps a new key; never replaces one with the same id.
    async fn create(&self, key: &StoredKey) -> Result<(), KeyStoreError>;

    /// The key with this id, whatever its organization or status.
    async fn get(&self, id: &KeyId) -> Result<Option<StoredKey>, KeyStoreError>;

    /// The organization's keys, revoked and expired ones included, newest first.
    async fn list(&self, org: &OrgId) -> Result<Vec<KeyInfo>, KeyStoreError>;

    /// Revokes the organization's key `id` at `at` (a key revoked already keeps its first
    /// `revoked_at`) and answers it; `None` when `org` has no such key, whether it is unknown or
    /// another organization's.
    async fn revoke(&self, org: &OrgId, id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyInfo>, KeyStoreError>;
}
