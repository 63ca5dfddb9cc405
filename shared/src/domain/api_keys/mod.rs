//! API keys: per-developer credentials an admin creates, lists and revokes, sent as
//! `Authorization: Bearer <key>` by hooks, OTLP exporters and importers instead of a JWT.
//!
//! A key reads `mcsk_<key id: 32 lowercase hex>_<secret: 64 lowercase hex>` ([`KEY_PATTERN`]):
//! the prefix lets secret scanners find a leaked key, the id finds its record, and only the
//! SHA-256 of the secret is ever stored ([`SecretHash`]). A presented secret is compared with the
//! stored hash in constant time ([`check`]), and a key resolves to the same [`Caller`]
//! (organization, user, role) a JWT does. What the key's record holds is [`KeyInfo`]; the
//! request that creates one is [`request::NewKeyRequest`].
//!
//! Pure: the random bytes of a new key come from the caller ([`NewKey::from_random`]).

pub mod request;

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::ids::{Caller, OrgId, Role, UserId};
use crate::domain::validation::Choice;

/// What every key starts with.
pub const KEY_PREFIX: &str = "mcsk_";
/// The whole shape of a key, for secret scanners and the service's own redaction.
pub const KEY_PATTERN: &str = "mcsk_[0-9a-f]{32}_[0-9a-f]{64}";
/// Random bytes of a key id (32 hex characters) and of a secret (64).
pub const KEY_ID_BYTES: usize = 16;
pub const SECRET_BYTES: usize = 32;
/// Longest name an admin may give a key.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// A key's id: 32 lowercase hex characters, the public half of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if is_lower_hex(raw, KEY_ID_BYTES * 2) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("must be {} lowercase hexadecimal characters", KEY_ID_BYTES * 2))
        }
    }

    pub fn from_bytes(bytes: &[u8; KEY_ID_BYTES]) -> Self {
        Self(hex(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a key's secret, as 64 lowercase hex characters: all the store keeps. It has no
/// `PartialEq`: the only comparison is [`SecretHash::matches`], in constant time.
#[derive(Clone)]
pub struct SecretHash(String);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(hex(&Sha256::digest(secret.as_bytes())))
    }

    /// A hash as stored; `None` when it is not 64 lowercase hex characters.
    pub fn parse(stored: &str) -> Option<Self> {
        is_lower_hex(stored, 64).then(|| Self(stored.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the two hashes are equal, in time independent of where they differ.
    pub fn matches(&self, other: &SecretHash) -> bool {
        #[cfg(test)]
        tests::CONSTANT_TIME_COMPARISONS.with(|n| n.set(n.get() + 1));
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A key as a client presented it. Its `Debug` never shows the secret.
pub struct PresentedKey {
    id: KeyId,
    hash: SecretHash,
}

impl PresentedKey {
    /// The key in `token`, when it has exactly the shape of [`KEY_PATTERN`].
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix(KEY_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if !is_lower_hex(secret, SECRET_BYTES * 2) {
            return None;
        }
        Some(Self {
            id: KeyId::parse(id).ok()?,
            hash: SecretHash::of(secret),
        })
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedKey({}, <secret>)", self.id)
    }
}

/// A freshly made key: its text, shown once to whoever created it, and what is stored of it.
pub struct NewKey {
    pub id: KeyId,
    pub hash: SecretHash,
    text: String,
}

impl NewKey {
    /// The key made of these random bytes (from the operating system's generator).
    pub fn from_random(id: &[u8; KEY_ID_BYTES], secret: &[u8; SECRET_BYTES]) -> Self {
        let (id, secret) = (KeyId::from_bytes(id), hex(secret));
        Self {
            text: format!("{KEY_PREFIX}{id}_{secret}"),
            hash: SecretHash::of(&secret),
            id,
        }
    }

    /// The whole key, `mcsk_<id>_<secret>`: answer it once, never log or store it.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewKey({}, <secret>)", self.id)
    }
}

/// What a key's record says, except its hash: whose it is, what it may do, its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: KeyId,
    pub org: OrgId,
    pub user: UserId,
    pub role: Role,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The admin who created it.
    pub created_by: UserId,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key's record as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub info: KeyInfo,
    pub hash: SecretHash,
}

/// Where a key is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl Choice for KeyStatus {
    const ALL: &'static [(&'static str, Self)] = &[
        ("active", KeyStatus::Active),
        ("revoked", KeyStatus::Revoked),
        ("expired", KeyStatus::Expired),
    ];
}

impl KeyInfo {
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Who calls with this key: exactly what a JWT with these claims would name.
    pub fn caller(&self) -> Caller {
        Caller {
            org: self.org.clone(),
            user: self.user.clone(),
            role: self.role,
        }
    }

    /// The key as the API describes it: never its secret or hash.
    pub fn describe(&self, now: DateTime<Utc>) -> Value {
        json!({
            "id": self.id.as_str(),
            "user_id": self.user.as_str(),
            "role": self.role.as_str(),
            "name": self.name,
            "created_at": timestamp(self.created_at),
            "created_by": self.created_by.as_str(),
            "expires_at": self.expires_at.map(timestamp),
            "revoked_at": self.revoked_at.map(timestamp),
            "status": self.status(now).as_str(),
        })
    }
}

/// Why a presented key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Not the shape of a key: refused without looking anything up.
    Malformed,
    /// No such key, or the wrong secret: the two are one answer, so nobody learns which ids exist.
    Invalid,
    /// The right secret of a revoked key.
    Revoked,
    /// The right secret of a key past its expiry.
    Expired,
}

/// Checks `presented` against the record of its id (`None`: no such key) at `now`. The secret is
/// compared in constant time, also against a stand-in when the id is unknown, and only the
/// holder of the right secret learns that a key was revoked or has expired.
pub fn check<'a>(
    presented: &PresentedKey,
    stored: Option<&'a StoredKey>,
    now: DateTime<Utc>,
) -> Result<&'a KeyInfo, KeyRefusal> {
    let Some(stored) = stored else {
        let stand_in = SecretHash("0".repeat(64));
        let _ = presented.hash.matches(&stand_in);
        return Err(KeyRefusal::Invalid);
    };
    if stored.info.id != presented.id || !presented.hash.matches(&stored.hash) {
        return Err(KeyRefusal::Invalid);
    }
    match stored.info.status(now) {
        KeyStatus::Active => Ok(&stored.info),
        KeyStatus::Revoked => Err(KeyRefusal::Revoked),
        KeyStatus::Expired => Err(KeyRefusal::Expired),
    }
}

/// How the API and the store write a key's times: RFC 3339 UTC with milliseconds (fixed width,
/// so the text sorts as the time does).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `at` cut to the milliseconds a key's times are kept with.
pub fn at_key_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    at.trunc_subsecs(3)
}

fn is_lower_hex(raw: &str, len: usize) -> bool {
    raw.len() == len && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Calls of [`SecretHash::matches`] on this thread.
        pub static CONSTANT_TIME_COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    fn new_key() -> NewKey {
        NewKey::from_random(&[0xab; KEY_ID_BYTES], &[0xcd; SECRET_BYTES])
    }

    fn stored(key: &NewKey) -> StoredKey {
        let now = Utc::now();
        StoredKey {
            info: KeyInfo {
                id: key.id.clone(),
                org: OrgId::parse("acme").unwrap(),
                user: UserId::parse("alice").unwrap(),
                role: Role::Member,
                name: None,
                created_at: now,
                created_by: UserId::parse("root").unwrap(),
                expires_at: None,
                revoked_at: None,
            },
            hash: key.hash.clone(),
        }
    }

    #[test]
    fn a_new_key_has_the_documented_shape_and_parses_back() {
        let key = new_key();
        let pattern = regex::Regex::new(&format!("^{KEY_PATTERN}$")).unwrap();
        assert!(pattern.is_match(key.text()), "{}", key.text());
        let presented = PresentedKey::parse(key.text()).unwrap();
        assert_eq!(presented.id(), &key.id);
        assert!(presented.hash.matches(&key.hash));
        assert!(!format!("{key:?} {presented:?}").contains(&"cd".repeat(SECRET_BYTES)));
    }

    #[test]
    fn anything_but_the_exact_shape_is_not_a_key() {
        let good = new_key().text().to_owned();
        let (id, secret) = (&good[5..37], &good[38..]);
        for bad in [
            String::new(),
            "mcsk_".to_owned(),
            format!("mcsk_{id}"),
            format!("mcsk_{id}_"),
            format!("mcsk_{}_{secret}", id.to_uppercase()),
            format!("mcsk_{id}_{}", secret.to_uppercase()),
            format!("mcsk_{id}x_{secret}"),
            format!("mcsk_{id}_{secret}0"),
            format!("mcsk_{id}__{secret}"),
            format!("MCSK_{id}_{secret}"),
            format!("mcsk_{}_{secret}", &id[1..]),
            format!("mcsk_{id}_{}g", &secret[1..]),
        ] {
            assert!(PresentedKey::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn only_the_right_secret_of_an_active_key_is_accepted() {
        let key = new_key();
        let record = stored(&key);
        let now = Utc::now();
        let presented = PresentedKey::parse(key.text()).unwrap();
        assert_eq!(
            check(&presented, Some(&record), now).unwrap().caller(),
            record.info.caller()
        );

        let wrong = format!("{}{}", &key.text()[..key.text().len() - 1], "f");
        let wrong = PresentedKey::parse(&wrong).unwrap();
        assert_eq!(check(&wrong, Some(&record), now), Err(KeyRefusal::Invalid));
        assert_eq!(check(&presented, None, now), Err(KeyRefusal::Invalid));

        let mut revoked = record.clone();
        revoked.info.revoked_at = Some(now);
        assert_eq!(check(&presented, Some(&revoked), now), Err(KeyRefusal::Revoked));
        assert_eq!(
            check(&wrong, Some(&revoked), now),
            Err(KeyRefusal::Invalid),
            "says nothing"
        );

        let mut expiring = record.clone();
        expiring.info.expires_at = Some(now + chrono::Duration::seconds(1));
        assert!(check(&presented, Some(&expiring), now).is_ok());
        let later = now + chrono::Duration::seconds(1);
        assert_eq!(check(&presented, Some(&expiring), later), Err(KeyRefusal::Expired));
    }

    #[test]
    fn the_secret_is_compared_through_the_constant_time_function() {
        let key = new_key();
        let record = stored(&key);
        let presented = PresentedKey::parse(key.text()).unwrap();
        let before = CONSTANT_TIME_COMPARISONS.with(Cell::get);
        assert!(check(&presented, Some(&record), Utc::now()).is_ok());
        assert_eq!(CONSTANT_TIME_COMPARISONS.with(Cell::get), before + 1);
        // An unknown id costs the same comparison, against a stand-in.
        assert!(check(&presented, None, Utc::now()).is_err());
        assert_eq!(CONSTANT_TIME_COMPARISONS.with(Cell::get), before + 2);
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_secret() {
        // echo -n abc | sha256sum
        assert_eq!(
            SecretHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(SecretHash::parse(SecretHash::of("abc").as_str()).is_some());
        assert!(SecretHash::parse("BA7816BF").is_none());
    }

    #[test]
    fn a_description_never_carries_the_secret_or_its_hash() {
        let key = new_key();
        let record = stored(&key);
        let described = record.info.describe(Utc::now()).to_string();
        assert!(!described.contains(&key.text()[38..]) && !described.contains(key.hash.as_str()));
        assert!(described.contains(r#""status":"active""#), "{described}");
    }
}
