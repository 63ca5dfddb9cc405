//! Organization settings at work: the per-container reader every function uses (the stage's
//! defaults with the organization's stored overrides, cached for `SETTINGS_CACHE_MS`), and the
//! settings routes' state and rules (any member reads, admins write; the webhook's secret is
//! made when its URL is first set).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use serde_json::{Value, json};

use crate::adapters::dynamodb::settings::DynamoSettings;
use crate::app::FromEnv;
use crate::config::{BatchConfig, ConfigError, DynamoDbConfig, Env, RateLimitConfig};
use crate::domain::hooks::HookContent;
use crate::domain::ids::{Caller, OrgId};
use crate::domain::settings::{OrganizationSettings, merge_patch};
use crate::domain::validation::{Choice, FieldError};
use crate::http::api::Api;
use crate::http::error::ApiError;
use crate::lock;
use crate::ports::settings::{Effective, PutError, SettingsSource, SettingsStore, SettingsUnavailable, StoredSettings};

/// How long a container keeps an organization's settings: the bound within which every function
/// sees a change.
pub const DEFAULT_CACHE_MS: u64 = 60_000;
/// Live connections an organization may hold unless configured (`LIVE_MAX_CONNECTIONS_PER_ORG`).
pub const DEFAULT_MAX_LIVE_CONNECTIONS: u64 = 100;
/// Read-merge-write attempts when another admin writes at the same moment.
const WRITE_ATTEMPTS: usize = 4;

/// Effective settings through a per-container cache.
pub struct Settings {
    store: Arc<dyn SettingsStore>,
    defaults: OrganizationSettings,
    bounds: StageBounds,
    ttl: Duration,
    cache: Mutex<HashMap<OrgId, (Instant, Effective)>>,
}

/// What an organization's admins may choose in this stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageBounds {
    /// The most capacity an admin may ask for (`ORGANIZATION_SETTINGS_CEILINGS` over the
    /// stage's defaults): admins may lower the stage's limits, only operators raise them.
    pub ceilings: OrganizationSettings,
    /// The shortest `processing_timeout_ms`: the database's own statement timeout
    /// (`DATABASE_TIMEOUT_MS`), so a statement is never abandoned while it may still commit.
    pub shortest_processing_ms: u64,
}

impl Settings {
    /// Settings whose admins may choose anything up to the stage's defaults.
    pub fn new(store: Arc<dyn SettingsStore>, defaults: OrganizationSettings, ttl: Duration) -> Self {
        let bounds = StageBounds {
            ceilings: defaults.clone(),
            shortest_processing_ms: 0,
        };
        Self::bounded(store, defaults, bounds, ttl)
    }

    pub fn bounded(
        store: Arc<dyn SettingsStore>,
        mut defaults: OrganizationSettings,
        bounds: StageBounds,
        ttl: Duration,
    ) -> Self {
        let timeout = &mut defaults.performance.processing_timeout_ms;
        *timeout = (*timeout).max(bounds.shortest_processing_ms);
        Self {
            store,
            defaults,
            bounds,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The DynamoDB item of each organization (in `RATE_LIMIT_TABLE_NAME`) over the stage's
    /// defaults ([`stage_defaults`]).
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let rate = RateLimitConfig::from_env(env)?;
        let store = DynamoSettings::new(
            aws,
            &DynamoDbConfig::from_env(env),
            &rate.table_name,
            rate.store_timeout,
        )?;
        let defaults = stage_defaults(env)?;
        let bounds = stage_bounds(env, &defaults)?;
        Ok(Self::bounded(Arc::new(store), defaults, bounds, cache_ttl(env)?))
    }

    pub fn store(&self) -> &Arc<dyn SettingsStore> {
        &self.store
    }

    /// Effective settings from what is stored. A stored field that no longer validates (written
    /// by hand, or before a range narrowed) is logged, named in `invalid`, and its section left
    /// at the stage's values; the other sections apply.
    pub fn resolve(&self, org: &OrgId, stored: Option<&StoredSettings>) -> Effective {
        let Some(stored) = stored else {
            return Effective {
                settings: self.defaults.clone(),
                webhook_secret: None,
                invalid: Vec::new(),
            };
        };
        let (mut settings, errors) = self.defaults.with_valid_overrides(&stored.overrides);
        if !errors.is_empty() {
            tracing::error!(org = %org, problems = ?errors, "ignoring invalid stored settings; their sections keep the stage's values");
        }
        let timeout = &mut settings.performance.processing_timeout_ms;
        *timeout = (*timeout).max(self.bounds.shortest_processing_ms);
        Effective {
            settings,
            webhook_secret: stored.webhook_secret.clone(),
            invalid: errors.into_iter().map(|e| e.field).collect(),
        }
    }

    /// What `wanted` asks beyond the stage's bounds that `current` did not already have (an
    /// operator may have set more for this organization by hand; an admin cannot add to it).
    fn beyond_bounds(&self, wanted: &OrganizationSettings, current: &OrganizationSettings) -> Vec<FieldError> {
        let already: Vec<String> = current
            .beyond(&self.bounds.ceilings)
            .into_iter()
            .map(|e| e.field)
            .collect();
        let mut errors: Vec<FieldError> = wanted
            .beyond(&self.bounds.ceilings)
            .into_iter()
            .filter(|e| !already.contains(&e.field))
            .collect();
        let shortest = self.bounds.shortest_processing_ms;
        let timeout = wanted.performance.processing_timeout_ms;
        if timeout < shortest && timeout != current.performance.processing_timeout_ms {
            errors.push(FieldError::new(
                "performance.processing_timeout_ms",
                format!("Must be at least {shortest} in this stage (its database statement timeout)"),
            ));
        }
        errors
    }

    fn remember(&self, org: &OrgId, effective: &Effective) {
        lock(&self.cache).insert(org.clone(), (Instant::now(), effective.clone()));
    }
}

#[async_trait]
impl SettingsSource for Settings {
    async fn effective(&self, org: &OrgId) -> Result<Effective, SettingsUnavailable> {
        let cached = lock(&self.cache).get(org).cloned();
        if let Some((read_at, effective)) = &cached
            && read_at.elapsed() < self.ttl
        {
            return Ok(effective.clone());
        }
        match self.store.get(org).await {
            Ok(stored) => {
                let effective = self.resolve(org, stored.as_ref());
                self.remember(org, &effective);
                Ok(effective)
            }
            // What this container last read is a better answer than none, except that content is
            // never kept more widely than the stage's default on the strength of an old read.
            Err(err) => match cached {
                Some((read_at, mut effective)) => {
                    tracing::warn!(org = %org, error = %err, "settings unavailable; using what was read last");
                    effective.settings.content = self.defaults.content;
                    lock(&self.cache).insert(org.clone(), (read_at, effective.clone()));
                    Ok(effective)
                }
                None => Err(err),
            },
        }
    }

    fn last_read(&self, org: &OrgId) -> OrganizationSettings {
        lock(&self.cache)
            .get(org)
            .map_or_else(|| self.defaults.clone(), |(_, effective)| effective.settings.clone())
    }

    fn defaults(&self) -> &OrganizationSettings {
        &self.defaults
    }
}

/// The stage's defaults: the specification's values, the stage's own variables where one
/// exists (`RATE_LIMIT_*`, `COLLECTION_BATCH_SIZE`, `HOOK_CONTENT`, `LIVE_MAX_CONNECTIONS_PER_ORG`),
/// then `ORGANIZATION_SETTINGS_DEFAULTS` (a partial settings document) over them.
pub fn stage_defaults(env: &Env) -> Result<OrganizationSettings, ConfigError> {
    let budgets = RateLimitConfig::from_env(env)?.defaults;
    let from_variables = json!({
        "rate_limiting": {
            "window_ms": budgets.organization.window_ms,
            "max_requests": budgets.organization.max_requests,
            "burst_allowance": budgets.organization.burst_allowance,
            "user_max_requests": budgets.user.max_requests,
            "user_burst_allowance": budgets.user.burst_allowance,
        },
        "performance": {"batch_size_limit": BatchConfig::from_env(env)?.batch_size},
        "content": {"hook_content": env.parse_or("HOOK_CONTENT", HookContent::default())?.as_str()},
        "live": {"max_connections": env.number_or("LIVE_MAX_CONNECTIONS_PER_ORG", DEFAULT_MAX_LIVE_CONNECTIONS, 1)?},
    });
    let defaults = OrganizationSettings::default()
        .with_overrides(&from_variables)
        .map_err(|errors| invalid_document("RATE_LIMIT_MAX_REQUESTS", &errors))?;
    over_document(env, "ORGANIZATION_SETTINGS_DEFAULTS", defaults)
}

/// `settings` with the partial settings document in `variable` (if set) over them; a document
/// that is not JSON, or whose fields do not validate, stops the start naming the variable.
fn over_document(
    env: &Env,
    variable: &str,
    settings: OrganizationSettings,
) -> Result<OrganizationSettings, ConfigError> {
    let Some(raw) = env.optional(variable) else {
        return Ok(settings);
    };
    let document: Value =
        serde_json::from_str(&raw).map_err(|e| ConfigError::new(variable, format!("not JSON: {e}")))?;
    settings
        .with_overrides(&document)
        .map_err(|errors| invalid_document(variable, &errors))
}

fn invalid_document(variable: &str, errors: &[FieldError]) -> ConfigError {
    let problems: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
    ConfigError::new(variable, problems.join("; "))
}

/// The stage's bounds on what admins choose: `ORGANIZATION_SETTINGS_CEILINGS` (a partial
/// settings document) over the stage's defaults, and `DATABASE_TIMEOUT_MS`.
pub fn stage_bounds(env: &Env, defaults: &OrganizationSettings) -> Result<StageBounds, ConfigError> {
    let ceilings = over_document(env, "ORGANIZATION_SETTINGS_CEILINGS", defaults.clone())?;
    Ok(StageBounds {
        ceilings,
        shortest_processing_ms: env.millis_or("DATABASE_TIMEOUT_MS", 5000)?.as_millis() as u64,
    })
}

/// `SETTINGS_CACHE_MS`, or the older `RATE_LIMIT_OVERRIDE_TTL_MS`, else 60 s.
pub fn cache_ttl(env: &Env) -> Result<Duration, ConfigError> {
    let legacy = env.number_or("RATE_LIMIT_OVERRIDE_TTL_MS", DEFAULT_CACHE_MS, 0)?;
    Ok(Duration::from_millis(env.number_or("SETTINGS_CACHE_MS", legacy, 0)?))
}

/// What the settings routes build once per container.
pub struct SettingsAdmin {
    pub api: Api,
    pub settings: Arc<Settings>,
    /// Where this stage's webhooks may point (`WEBHOOK_ALLOW_LOOPBACK`), checked when saved.
    pub webhooks: crate::domain::webhook::WebhookPolicy,
}

impl FromEnv for SettingsAdmin {
    const API_KEYS: crate::app::KeyAccess = crate::app::KeyAccess::Read;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let settings = Arc::new(Settings::from_env(env, aws)?);
        Ok(Self::new(
            Api::from_env(env, aws, settings.clone())?,
            settings,
            crate::adapters::webhook::WebhookConfig::from_env(env)?.policy,
        ))
    }
}

/// How a write combines with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// `PUT`: the body becomes the organization's overrides; what it leaves out is the default.
    Replace,
    /// `PATCH`: the body is merged into the overrides (RFC 7386; `null` restores a default).
    Merge,
}

impl SettingsAdmin {
    /// The settings routes' state: settings are changed only by a key that is not revoked now.
    pub fn new(api: Api, settings: Arc<Settings>, webhooks: crate::domain::webhook::WebhookPolicy) -> Self {
        Self {
            api: api.reading_keys_fresh(),
            settings,
            webhooks,
        }
    }

    /// The caller's organization's settings, read from the store (not the cache), so an admin
    /// sees a write at once.
    pub async fn read(&self, caller: &Caller) -> Result<Value, ApiError> {
        let stored = self.settings.store.get(&caller.org).await?;
        let effective = self.settings.resolve(&caller.org, stored.as_ref());
        Ok(shown(caller, &effective, stored.as_ref()))
    }

    /// An admin's `PUT` or `PATCH`: validated whole over the defaults (400 naming each field),
    /// then stored if nobody wrote in between (read again and retried if someone did).
    pub async fn write(&self, caller: &Caller, body: &Value, how: Write) -> Result<Value, ApiError> {
        if !caller.is_admin() {
            return Err(ApiError::Forbidden(
                "changing the organization's settings needs the admin role",
            ));
        }
        if !body.is_object() {
            return Err(ApiError::validation("body", "Must be a JSON object"));
        }
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.settings.store.get(&caller.org).await?.unwrap_or_default();
            let mut overrides = match how {
                Write::Replace => json!({}),
                Write::Merge => current.overrides.clone(),
            };
            merge_patch(&mut overrides, body);
            // Every problem at once: the sections that validate are also checked against the
            // stage's bounds, so a field past a ceiling is named beside a malformed one.
            let (settings, mut errors) = self.settings.defaults.with_valid_overrides(&overrides);
            let was = self.settings.resolve(&caller.org, Some(&current)).settings;
            errors.extend(self.settings.beyond_bounds(&settings, &was));
            if !errors.is_empty() {
                return Err(ApiError::Validation(errors));
            }
            check_webhook_policy(&settings, self.webhooks)?;
            // A new address gets a new secret: whoever knew the old one cannot sign for it.
            let webhook_secret = match &settings.alerts.webhook_url {
                None => None,
                Some(url) if current.webhook_secret.is_some() && was.alerts.webhook_url.as_ref() == Some(url) => {
                    current.webhook_secret.clone()
                }
                Some(_) => Some(new_webhook_secret()),
            };
            let next = StoredSettings {
                overrides,
                webhook_secret,
                version: current.version + 1,
            };
            match self.settings.store.put(&caller.org, &next).await {
                Ok(()) => {
                    let effective = self.settings.resolve(&caller.org, Some(&next));
                    self.settings.remember(&caller.org, &effective);
                    tracing::info!(org = %caller.org, by = %caller.user, version = next.version, "organization settings changed");
                    return Ok(shown(caller, &effective, Some(&next)));
                }
                Err(PutError::Conflict) => continue,
                Err(PutError::Unavailable(err)) => return Err(err.into()),
            }
        }
        // Other admins kept writing: nothing was stored; a retry after a moment succeeds.
        Err(ApiError::Unavailable {
            dependency: crate::http::error::Dependency::Settings,
            detail: format!("{WRITE_ATTEMPTS} conflicting writes in a row"),
        })
    }
}

/// The response's `data`: members see the effective settings (the webhook's origin only);
/// admins also see what was overridden and the webhook's signing secret.
fn shown(caller: &Caller, effective: &Effective, stored: Option<&StoredSettings>) -> Value {
    let version = stored.map_or(0, |s| s.version);
    if !caller.is_admin() {
        return json!({"settings": effective.settings.for_member().to_json(), "version": version});
    }
    json!({
        "settings": effective.settings.to_json(),
        "overrides": stored.map_or_else(|| json!({}), |s| s.overrides.clone()),
        "webhook_secret": effective.webhook_secret,
        "version": version,
    })
}

/// Where a webhook may point in this stage; checked again when an alert is sent.
fn check_webhook_policy(
    settings: &OrganizationSettings,
    policy: crate::domain::webhook::WebhookPolicy,
) -> Result<(), ApiError> {
    match &settings.alerts.webhook_url {
        Some(url) => crate::domain::webhook::WebhookUrl::parse(url, policy)
            .map(|_| ())
            .map_err(|problem| ApiError::validation("alerts.webhook_url", &problem)),
        None => Ok(()),
    }
}

/// `whsec_` and 32 random bytes in hex.
fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("whsec_{hex}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fakes::settings::InMemorySettings;

    fn acme() -> OrgId {
        OrgId::parse("acme").unwrap()
    }

    #[test]
    fn stage_defaults_come_from_the_variables_then_the_defaults_document() {
        let env = Env::from_pairs([
            ("RATE_LIMIT_TABLE_NAME", "t"),
            ("RATE_LIMIT_MAX_REQUESTS", "500"),
            ("HOOK_CONTENT", "redacted"),
            ("COLLECTION_BATCH_SIZE", "50"),
            (
                "ORGANIZATION_SETTINGS_DEFAULTS",
                r#"{"data_retention": {"hook_events_days": 30}}"#,
            ),
        ]);
        let defaults = stage_defaults(&env).unwrap();
        assert_eq!(defaults.rate_limiting.max_requests, 500);
        assert_eq!(defaults.content.hook_content, HookContent::Redacted);
        assert_eq!(defaults.performance.batch_size_limit, 50);
        assert_eq!(defaults.data_retention.hook_events_days, 30);
        assert_eq!(defaults.data_retention.otlp_days, 90);
    }

    #[test]
    fn an_invalid_defaults_document_stops_the_start_naming_the_field() {
        for (raw, named) in [
            ("{\"live\": {\"max_connections\": 0}}", "live.max_connections"),
            ("{", "not JSON"),
        ] {
            let env = Env::from_pairs([("RATE_LIMIT_TABLE_NAME", "t"), ("ORGANIZATION_SETTINGS_DEFAULTS", raw)]);
            let err = stage_defaults(&env).unwrap_err();
            assert_eq!(err.variable, "ORGANIZATION_SETTINGS_DEFAULTS");
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    #[tokio::test]
    async fn a_change_is_seen_once_the_cache_has_aged_and_invalid_overrides_fall_back_to_the_defaults() {
        let store = Arc::new(InMemorySettings::new());
        let settings = Settings::new(
            store.clone(),
            OrganizationSettings::default(),
            Duration::from_millis(50),
        );
        assert!(settings.effective(&acme()).await.unwrap().settings.otlp.enabled);
        store.set(&acme(), json!({"otlp": {"enabled": false}}));
        assert!(
            settings.effective(&acme()).await.unwrap().settings.otlp.enabled,
            "still cached"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            !settings.effective(&acme()).await.unwrap().settings.otlp.enabled,
            "read again"
        );
        assert!(!settings.last_read(&acme()).otlp.enabled);

        store.set(&acme(), json!({"otlp": {"enabled": "sometimes"}}));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            settings.effective(&acme()).await.unwrap().settings,
            OrganizationSettings::default()
        );
    }

    #[tokio::test]
    async fn an_unreachable_store_is_an_error_unless_this_container_read_the_settings_before() {
        let settings = Settings::new(
            Arc::new(InMemorySettings::unavailable()),
            OrganizationSettings::default(),
            Duration::ZERO,
        );
        assert!(settings.effective(&acme()).await.is_err());
        assert_eq!(settings.last_read(&acme()), OrganizationSettings::default());
    }

    #[tokio::test]
    async fn while_the_store_is_down_the_last_read_serves_but_content_falls_back_to_the_stages() {
        let store = Arc::new(InMemorySettings::new());
        let settings = Settings::new(store.clone(), OrganizationSettings::default(), Duration::ZERO);
        store.set(
            &acme(),
            json!({"content": {"hook_content": "redacted"}, "performance": {"batch_size_limit": 99}}),
        );
        assert_eq!(
            settings.effective(&acme()).await.unwrap().settings.content.hook_content,
            HookContent::Redacted
        );
        store.set_unavailable(true);
        let stale = settings.effective(&acme()).await.unwrap().settings;
        assert_eq!(stale.performance.batch_size_limit, 99);
        assert_eq!(stale.content.hook_content, HookContent::Metrics);
        assert_eq!(settings.last_read(&acme()).content.hook_content, HookContent::Metrics);
    }
}
