//! Organization settings kept in this process; for unit tests of handlers. Passes the same
//! settings contract as the DynamoDB store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::domain::ids::OrgId;
use crate::lock;
use crate::ports::settings::{PutError, SettingsStore, SettingsUnavailable, StoredSettings};

#[derive(Default)]
pub struct InMemorySettings {
    stored: Mutex<HashMap<OrgId, StoredSettings>>,
    unavailable: AtomicBool,
}

impl InMemorySettings {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that cannot be reached: every call fails.
    pub fn unavailable() -> Self {
        let store = Self::default();
        store.set_unavailable(true);
        store
    }

    /// Stores `overrides` for `org` as its next version (a test's set-up).
    pub fn set(&self, org: &OrgId, overrides: serde_json::Value) {
        let mut stored = lock(&self.stored);
        let entry = stored.entry(org.clone()).or_default();
        entry.overrides = overrides;
        entry.version += 1;
    }

    /// Makes every call fail (`true`) or work again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::Relaxed);
    }

    fn reachable(&self) -> Result<(), SettingsUnavailable> {
        if self.unavailable.load(Ordering::Relaxed) {
            return Err(SettingsUnavailable("in-memory settings set to unavailable".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl SettingsStore for InMemorySettings {
    async fn get(&self, org: &OrgId) -> Result<Option<StoredSettings>, SettingsUnavailable> {
        self.reachable()?;
        Ok(lock(&self.stored).get(org).cloned())
    }

    async fn put(&self, org: &OrgId, settings: &StoredSettings) -> Result<(), PutError> {
        self.reachable()?;
        let mut stored = lock(&self.stored);
        let current = stored.get(org).map_or(0, |s| s.version);
        if settings.version == 0 || current != settings.version - 1 {
            return Err(PutError::Conflict);
        }
        stored.insert(org.clone(), settings.clone());
        Ok(())
    }

    async fn delete(&self, org: &OrgId) -> Result<(), SettingsUnavailable> {
        self.reachable()?;
        lock(&self.stored).remove(org);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_settings_keep_the_settings_contract() {
        crate::fakes::settings_contract::every_case(&InMemorySettings::new(), "contract").await;
    }
}
