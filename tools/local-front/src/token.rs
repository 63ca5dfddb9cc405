//! Tokens signed with a stack's `JWT_SECRET` (HS256): development tokens for the local stack,
//! and hook tokens for an HS256 stage (with its `JWT_ISSUER` / `JWT_AUDIENCE` when it checks them).

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use shared::domain::ids::{OrgId, Role, UserId};
use shared::domain::validation::Choice;

/// The claims a token may carry beyond `sub`, `org_id`, `iat` and `exp`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Claims<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    /// `admin` or `member`; none names a member.
    pub role: Option<&'a str>,
}

pub fn mint(secret: &str, org: &str, user: &str, ttl_hours: u64) -> Result<String, String> {
    mint_with(secret, org, user, ttl_hours, &Claims::default())
}

/// Like [`mint`], with the `iss` and `aud` claims a stage may require.
pub fn mint_for(
    secret: &str,
    org: &str,
    user: &str,
    ttl_hours: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, String> {
    let claims = Claims {
        issuer,
        audience,
        role: None,
    };
    mint_with(secret, org, user, ttl_hours, &claims)
}

/// Like [`mint`], with any of the optional claims.
pub fn mint_with(secret: &str, org: &str, user: &str, ttl_hours: u64, extra: &Claims) -> Result<String, String> {
    let org = OrgId::parse(org).map_err(|e| format!("--org {org:?}: {e}"))?;
    let user = UserId::parse(user).map_err(|e| format!("--user {user:?}: {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": user.as_str(),
        "org_id": org.as_str(),
        "iat": now,
        "exp": now + (ttl_hours as i64) * 3600,
    });
    if let Some(issuer) = extra.issuer {
        claims["iss"] = json!(issuer);
    }
    if let Some(audience) = extra.audience {
        claims["aud"] = json!(audience);
    }
    if let Some(role) = extra.role {
        let role = Role::parse(role).ok_or_else(|| format!("--role {role:?}: {}", Role::expected()))?;
        claims["role"] = json!(role.as_str());
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}
