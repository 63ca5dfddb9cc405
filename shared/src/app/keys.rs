//! Managing API keys: the state of the key routes (the request pipeline and the key store), how
//! a key is made (random bytes from the operating system) and issued, listed and revoked, and
//! the rule that only admins manage keys. The local front's `key` command uses the same code.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::adapters::dynamodb::api_keys::ApiKeyConfig;
use crate::adapters::dynamodb::api_keys::DynamoApiKeys;
use crate::app::{FromEnv, KeyAccess};
use crate::config::{ConfigError, Env};
use crate::domain::api_keys::request::NewKeyRequest;
use crate::domain::api_keys::{KEY_ID_BYTES, KeyId, KeyInfo, NewKey, SECRET_BYTES};
use crate::domain::ids::Caller;
use crate::http::api::Api;
use crate::http::error::ApiError;
use crate::ports::api_keys::ApiKeyStore;

/// What the key routes build once per container.
pub struct KeyAdmin {
    pub api: Api,
    pub keys: Arc<dyn ApiKeyStore>,
}

impl FromEnv for KeyAdmin {
    const API_KEYS: KeyAccess = KeyAccess::Manage;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(
            crate::app::api_from_env(env, aws)?,
            Arc::new(DynamoApiKeys::new(aws, &ApiKeyConfig::from_env(env)?)?),
        ))
    }
}

impl KeyAdmin {
    /// The key routes' state: keys are managed only by a key that is not revoked now.
    pub fn new(api: Api, keys: Arc<dyn ApiKeyStore>) -> Self {
        Self {
            api: api.reading_keys_fresh(),
            keys,
        }
    }
}

/// A new key of random bytes from the operating system's generator.
pub fn generate() -> NewKey {
    try_generate().expect("the operating system's random number generator")
}

fn try_generate() -> Result<NewKey, getrandom::Error> {
    let (mut id, mut secret) = ([0u8; KEY_ID_BYTES], [0u8; SECRET_BYTES]);
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    Ok(NewKey::from_random(&id, &secret))
}

/// Refuses members: only admins manage keys.
pub fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("managing API keys needs the admin role"))
    }
}

/// Makes a key as `request` says, for `admin`'s organization, and keeps its record; the key's
/// text is in the answer only.
pub async fn issue(
    store: &dyn ApiKeyStore,
    admin: &Caller,
    request: &NewKeyRequest,
    now: DateTime<Utc>,
) -> Result<(NewKey, KeyInfo), ApiError> {
    let key = try_generate().map_err(|e| ApiError::Internal(format!("no random bytes: {e}")))?;
    let record = request.record(&key, admin, now);
    store.create(&record).await?;
    let info = record.info;
    tracing::info!(org = %info.org, key_id = %info.id, user = %info.user, role = ?info.role, created_by = %admin.user, "API key created");
    Ok((key, info))
}

/// The data of `POST /api/v1/keys`: the key's description and, this once, the key itself.
pub fn created(key: &NewKey, info: &KeyInfo, now: DateTime<Utc>) -> Value {
    let mut data = info.describe(now);
    data["key"] = json!(key.text());
    data
}

/// The data of `GET /api/v1/keys`: the organization's keys, newest first, without secrets.
pub async fn list(store: &dyn ApiKeyStore, admin: &Caller, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let keys = store.list(&admin.org).await?;
    Ok(json!({"keys": keys.iter().map(|key| key.describe(now)).collect::<Vec<_>>()}))
}

/// Revokes the organization's key `raw_id`: 400 when it is not an id, 404 when the organization
/// has no such key (whether it is unknown or another organization's: one answer).
pub async fn revoke(
    store: &dyn ApiKeyStore,
    admin: &Caller,
    raw_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let id = KeyId::parse(raw_id.unwrap_or_default())
        .map_err(|problem| ApiError::validation("id", &format!("Must be a key id: {problem}")))?;
    let info = store
        .revoke(&admin.org, &id, now)
        .await?
        .ok_or(ApiError::NotFound("no such API key in this organization"))?;
    tracing::info!(org = %info.org, key_id = %info.id, revoked_by = %admin.user, "API key revoked");
    Ok(info.describe(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{OrgId, Role, UserId};
    use crate::fakes::api_keys::InMemoryApiKeys;

    fn admin(org: &str) -> Caller {
        Caller {
            org: OrgId::parse(org).unwrap(),
            user: UserId::parse("root").unwrap(),
            role: Role::Admin,
        }
    }

    #[test]
    fn keys_are_random() {
        let (a, b) = (generate(), generate());
        assert_ne!(a.id, b.id);
        assert_ne!(a.text(), b.text());
    }

    #[tokio::test]
    async fn an_issued_key_is_listed_without_its_secret_and_revoked_only_in_its_organization() {
        let store = InMemoryApiKeys::new();
        let now = Utc::now();
        let request = NewKeyRequest::from_json(&json!({"user_id": "alice", "name": "laptop"}), now).unwrap();
        let (key, info) = issue(&store, &admin("acme"), &request, now).await.unwrap();
        let data = created(&key, &info, now);
        assert_eq!(data["key"], key.text());
        assert_eq!(
            (data["user_id"].as_str(), data["created_by"].as_str()),
            (Some("alice"), Some("root"))
        );

        let listed = list(&store, &admin("acme"), now).await.unwrap().to_string();
        assert!(listed.contains(key.id.as_str()) && !listed.contains(&key.text()[38..]));

        let id = Some(key.id.as_str());
        let other = revoke(&store, &admin("other"), id, now).await.unwrap_err();
        assert_eq!(other.status(), 404);
        let unknown = revoke(&store, &admin("acme"), Some(&"a".repeat(32)), now)
            .await
            .unwrap_err();
        assert_eq!(unknown.public_message(), other.public_message(), "one answer");
        assert_eq!(
            revoke(&store, &admin("acme"), Some("nope"), now)
                .await
                .unwrap_err()
                .status(),
            400
        );
        let revoked = revoke(&store, &admin("acme"), id, now).await.unwrap();
        assert_eq!(revoked["status"], "revoked");
    }

    #[test]
    fn members_are_refused() {
        let mut member = admin("acme");
        member.role = Role::Member;
        let refused = admin_only(&member).unwrap_err();
        assert_eq!(refused.status(), 403);
        assert!(refused.public_message().starts_with("Forbidden: "));
        assert!(admin_only(&admin("acme")).is_ok());
    }
}
