//! Tokens signed with a stack's `JWT_SECRET` (HS256): development tokens for the local stack,
//! and hook tokens for an HS256 stage (with its `JWT_ISSUER` / `JWT_AUDIENCE` when it checks them).

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use shared::domain::ids::{OrgId, Role, UserId};
use shared::domain::validation::Choice;

/// A member's token.
pub fn mint(secret: &str, org: &str, user: &str, ttl_hours: u64) -> Result<String, String> {
    mint_for(secret, org, user, ttl_hours, None, None, Role::Member)
}

/// A token with the `role` claim `admin`.
pub fn mint_admin(secret: &str, org: &str, user: &str, ttl_hours: u64) -> Result<String, String> {
    mint_for(secret, org, user, ttl_hours, None, None, Role::Admin)
}

/// Like [`mint`], with the `iss` and `aud` claims a stage may require and the caller's role
/// (the claim is left out for members: a token without it names a member).
pub fn mint_for(
    secret: &str,
    org: &str,
    user: &str,
    ttl_hours: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
    role: Role,
) -> Result<String, String> {
    let org = OrgId::parse(org).map_err(|e| format!("--org {org:?}: {e}"))?;
    let user = UserId::parse(user).map_err(|e| format!("--user {user:?}: {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": user.as_str(),
        "org_id": org.as_str(),
        "iat": now,
        "exp": now + (ttl_hours as i64) * 3600,
    });
    if role == Role::Admin {
        claims["role"] = json!(role.as_str());
    }
    if let Some(issuer) = issuer {
        claims["iss"] = json!(issuer);
    }
    if let Some(audience) = audience {
        claims["aud"] = json!(audience);
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}
