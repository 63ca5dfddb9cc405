//! The settings port: keep each organization's stored settings (only what it changed, see
//! `domain::settings`) with a version for safe concurrent writes, and read its effective
//! settings through a per-container cache.

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::ids::OrgId;
use crate::domain::settings::OrganizationSettings;

#[derive(Debug, thiserror::Error)]
#[error("settings store unavailable: {0}")]
pub struct SettingsUnavailable(pub String);

/// Why a write was not made.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// Someone else wrote first: the version read is no longer the stored one.
    #[error("the settings changed since they were read")]
    Conflict,
    #[error(transparent)]
    Unavailable(#[from] SettingsUnavailable),
}

/// What is stored for one organization. (Its `Debug` never shows the secret.)
#[derive(Clone, PartialEq, Default)]
pub struct StoredSettings {
    /// Only the fields the organization set, in the settings document's shape.
    pub overrides: Value,
    /// Signs the organization's alert webhooks; made when a webhook URL is first set.
    pub webhook_secret: Option<String>,
    /// Grows by one with every write; 0 when nothing was ever written.
    pub version: u64,
}

#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The organization's stored settings; `None` when it never stored any.
    async fn get(&self, org: &OrgId) -> Result<Option<StoredSettings>, SettingsUnavailable>;

    /// Stores `settings` as version `settings.version` if the stored version is still
    /// `settings.version - 1` (none stored when that is 0); otherwise [`PutError::Conflict`].
    async fn put(&self, org: &OrgId, settings: &StoredSettings) -> Result<(), PutError>;

    /// Removes everything stored for the organization (tenant deletion).
    async fn delete(&self, org: &OrgId) -> Result<(), SettingsUnavailable>;
}

/// An organization's settings as functions use them. (Its `Debug` never shows the secret.)
#[derive(Clone, PartialEq)]
pub struct Effective {
    pub settings: OrganizationSettings,
    pub webhook_secret: Option<String>,
    /// Stored fields that did not validate, their sections left at the stage's values (empty
    /// normally).
    /// Whatever cannot be undone (retention's deletes) is not done while this names anything.
    pub invalid: Vec<String>,
}

/// Effective settings, as the request path and scheduled functions read them.
#[async_trait]
pub trait SettingsSource: Send + Sync {
    /// The organization's effective settings (at most the cache's age old).
    async fn effective(&self, org: &OrgId) -> Result<Effective, SettingsUnavailable>;

    /// What the last [`SettingsSource::effective`] of this container read for `org` (no
    /// call), or the stage's defaults.
    fn last_read(&self, org: &OrgId) -> OrganizationSettings;

    /// The stage's defaults.
    fn defaults(&self) -> &OrganizationSettings;
}

/// How a webhook secret appears in `Debug` output (logs, panics): whether there is one.
fn secret_shown(secret: &Option<String>) -> &'static str {
    if secret.is_some() { "Some(<redacted>)" } else { "None" }
}

impl std::fmt::Debug for StoredSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSettings")
            .field("overrides", &self.overrides)
            .field("webhook_secret", &secret_shown(&self.webhook_secret))
            .field("version", &self.version)
            .finish()
    }
}

impl std::fmt::Debug for Effective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Effective")
            .field("settings", &self.settings)
            .field("webhook_secret", &secret_shown(&self.webhook_secret))
            .field("invalid", &self.invalid)
            .finish()
    }
}
