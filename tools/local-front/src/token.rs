//! Development tokens, signed with the stack's `JWT_SECRET` (HS256).

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use shared::ids::{OrgId, UserId};

pub fn mint(secret: &str, org: &str, user: &str, ttl_hours: u64) -> Result<String, String> {
    let org = OrgId::parse(org).map_err(|e| format!("--org {org:?}: {e}"))?;
    let user = UserId::parse(user).map_err(|e| format!("--user {user:?}: {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": user.as_str(),
        "org_id": org.as_str(),
        "iat": now,
        "exp": now + (ttl_hours as i64) * 3600,
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}
