//! Identities taken from a verified token. They are checked once, here, before any other code
//! (SQL, DynamoDB keys, logs) sees them.

use std::fmt;

/// Longest organization id: keeps `org_<id>` inside PostgreSQL's 63-byte identifier limit.
pub const MAX_ORG_ID_LEN: usize = 48;
pub const MAX_USER_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// Accepts `^[A-Za-z0-9_-]{1,48}$`, nothing else.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_ORG_ID_LEN {
            return Err(format!("must be 1 to {MAX_ORG_ID_LEN} characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err("must match ^[A-Za-z0-9_-]+$".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant schema's name, unquoted. Safe to quote: it holds only `[A-Za-z0-9_-]`.
    pub fn schema_name(&self) -> String {
        format!("org_{}", self.0)
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Any printable text up to 128 characters (emails, UUIDs, `auth0|123`), no control
    /// characters: what may be stored and looked up (erasure, `user=`), so the data of an id
    /// accepted before [`UserId::parse_identity`] existed stays reachable.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.chars().count() > MAX_USER_ID_LEN {
            return Err(format!("must be 1 to {MAX_USER_ID_LEN} characters"));
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// An id entering as an identity (a token's `sub`, a new key's `user_id`): also no
    /// invisible formatting characters and no space at either end, which would let it be shown
    /// as another (`al\u{202e}ecila` displays as `alice` reversed, `alice ` as `alice`).
    /// Look-alike letters of other scripts are not caught.
    pub fn parse_identity(raw: &str) -> Result<Self, String> {
        let id = Self::parse(raw)?;
        if raw.chars().any(is_invisible) {
            return Err("must not contain invisible formatting characters".into());
        }
        if raw.trim() != raw {
            return Err("must not begin or end with a space".into());
        }
        Ok(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Control characters and Unicode's format characters (category Cf: bidirectional overrides
/// and isolates, zero-width spaces and joiners, the byte order mark, tags), which change how
/// text around them is shown without being seen.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{890}'..='\u{891}'
            | '\u{8e2}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a caller may do in its organization. Members write their own metrics and read the
/// organization's totals and their own rows; admins also read every user's rows and manage the
/// organization (API keys, later its settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    Admin,
    #[default]
    Member,
}

impl crate::domain::validation::Choice for Role {
    const ALL: &'static [(&'static str, Self)] = &[("admin", Role::Admin), ("member", Role::Member)];
}
crate::choice_serde!(Role);

/// Who is calling: every part comes only from a verified credential (a JWT or an API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub org: OrgId,
    pub user: UserId,
    pub role: Role,
}

impl Caller {
    /// A member of `org`: what a credential without a role names.
    pub fn member(org: OrgId, user: UserId) -> Self {
        Self {
            org,
            user,
            role: Role::Member,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_org_ids_are_accepted() {
        for ok in ["acme", "Acme_Corp-2", "a", &"x".repeat(MAX_ORG_ID_LEN)] {
            assert!(OrgId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn hostile_org_ids_are_refused() {
        for bad in [
            "",
            "acme\"; DROP SCHEMA public; --",
            "acme corp",
            "../etc",
            "org\0",
            "ünïcode",
            "a.b",
            "a\"b",
            &"x".repeat(MAX_ORG_ID_LEN + 1),
        ] {
            assert!(OrgId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn schema_name_stays_within_postgres_identifier_limit() {
        let org = OrgId::parse(&"x".repeat(MAX_ORG_ID_LEN)).unwrap();
        assert!(org.schema_name().len() <= 63);
    }

    #[test]
    fn user_ids_allow_common_shapes_but_not_control_characters() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("auth0|123").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("bob\nadmin").is_err());
        // Ids that would pass for another where they are shown: no new identity, but stored
        // data of such an id stays reachable.
        for lookalike in [
            "al\u{202e}ecila",
            "alice\u{200b}",
            "\u{feff}alice",
            "alice ",
            " ",
            "\u{2066}bob",
        ] {
            assert!(UserId::parse_identity(lookalike).is_err(), "{lookalike:?}");
            assert!(UserId::parse(lookalike).is_ok(), "{lookalike:?}");
        }
        assert!(
            UserId::parse_identity("Zoë Müller").is_ok(),
            "spaces inside and accents are fine"
        );
        assert!(UserId::parse(&"u".repeat(MAX_USER_ID_LEN + 1)).is_err());
    }
}
