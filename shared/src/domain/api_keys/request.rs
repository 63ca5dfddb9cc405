//! The body of `POST /api/v1/keys`: whose key, with which role, name and expiry; and the record
//! it makes.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{KeyInfo, MAX_KEY_NAME_CHARS, NewKey, StoredKey, at_key_precision};
use crate::domain::ids::{Caller, Role, UserId};
use crate::domain::validation::{FieldError, Fields, Text, parse_timestamp};

const FIELDS: &[&str] = &["user_id", "role", "name", "expires_at"];

/// A valid request for a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyRequest {
    pub user: UserId,
    pub role: Role,
    pub name: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewKeyRequest {
    /// `user_id` (required, a user id as a token's `sub` may be), `role` (`admin` or `member`,
    /// default member), `name` (at most 100 characters) and `expires_at` (RFC 3339, after `now`);
    /// nothing else. Every failing field is reported.
    pub fn from_json(body: &Value, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::new(body, "", FIELDS)?;
        let user = user_id(&mut fields, body.get("user_id"));
        let role = fields.choice::<Role>("role").unwrap_or_default();
        let name = fields.text("name", Text::free(MAX_KEY_NAME_CHARS));
        let expires_at = expiry(&mut fields, now);
        fields.finish()?;
        Ok(Self {
            user: user.ok_or_else(|| vec![FieldError::new("user_id", "Required")])?,
            role,
            name,
            expires_at,
        })
    }

    /// The record of `key` made for this request by `admin`, at `now`.
    pub fn record(&self, key: &NewKey, admin: &Caller, now: DateTime<Utc>) -> StoredKey {
        StoredKey {
            info: KeyInfo {
                id: key.id.clone(),
                org: admin.org.clone(),
                user: self.user.clone(),
                role: self.role,
                name: self.name.clone(),
                created_at: at_key_precision(now),
                created_by: admin.user.clone(),
                expires_at: self.expires_at,
                revoked_at: None,
            },
            hash: key.hash.clone(),
        }
    }
}

/// The user id as given (not sanitised: it must equal what that user's tokens name).
fn user_id(fields: &mut Fields, value: Option<&Value>) -> Option<UserId> {
    match value {
        None | Some(Value::Null) => {
            fields.error("user_id", "Required");
            None
        }
        Some(Value::String(raw)) => UserId::parse_identity(raw)
            .map_err(|problem| fields.error("user_id", format!("Must be a user id: {problem}")))
            .ok(),
        Some(_) => {
            fields.error("user_id", "Must be a string");
            None
        }
    }
}

/// `expires_at`, when given: a time after `now`, kept to the millisecond.
fn expiry(fields: &mut Fields, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let raw = fields.text("expires_at", Text::free(64))?;
    match parse_timestamp(&raw).map(at_key_precision) {
        Some(at) if at > now => Some(at),
        Some(_) => {
            fields.error("expires_at", "Must be in the future");
            None
        }
        None => {
            fields.error("expires_at", "Must be an RFC 3339 date-time, e.g. 2027-01-31T00:00:00Z");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields_of(body: Value) -> Vec<String> {
        NewKeyRequest::from_json(&body, Utc::now())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_user_alone_makes_a_member_key_without_expiry() {
        let request = NewKeyRequest::from_json(&json!({"user_id": "alice@example.com"}), Utc::now()).unwrap();
        assert_eq!(request.user.as_str(), "alice@example.com");
        assert_eq!(
            (request.role, request.name, request.expires_at),
            (Role::Member, None, None)
        );
    }

    #[test]
    fn every_field_is_read() {
        let body = json!({"user_id": "ci", "role": "admin", "name": "CI importer",
                          "expires_at": "2999-01-31T10:00:00.123456Z"});
        let request = NewKeyRequest::from_json(&body, Utc::now()).unwrap();
        assert_eq!(request.role, Role::Admin);
        assert_eq!(request.name.as_deref(), Some("CI importer"));
        let expires = request.expires_at.unwrap();
        assert_eq!(super::super::timestamp(expires), "2999-01-31T10:00:00.123Z");
    }

    #[test]
    fn bad_fields_are_each_named() {
        assert_eq!(fields_of(json!({})), ["user_id"]);
        assert_eq!(fields_of(json!({"user_id": 7})), ["user_id"]);
        assert_eq!(fields_of(json!({"user_id": ""})), ["user_id"]);
        assert_eq!(fields_of(json!({"user_id": "bob\nadmin"})), ["user_id"]);
        assert_eq!(
            fields_of(json!({"user_id": "a", "role": "owner", "name": "x".repeat(101),
                             "expires_at": "2001-01-01T00:00:00Z", "org_id": "other"})),
            ["org_id", "role", "name", "expires_at"]
        );
        assert_eq!(
            fields_of(json!({"user_id": "a", "expires_at": "tomorrow"})),
            ["expires_at"]
        );
        assert_eq!(fields_of(json!([])), ["body"]);
    }
}
