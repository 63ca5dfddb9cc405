//! Bearer tokens this container has verified recently, so that a token is verified once, not
//! on every request: a hook sends the same token many times a minute, and each verification
//! decodes the header and claims and checks the signature (for RS256 and ES256 a public-key
//! operation). An entry is the whole token, byte for byte, so only a token that was verified
//! can hit; it is used only while the token is still valid (`exp` plus the configured leeway,
//! as the verification itself allows; a validation that also refused tokens about to expire
//! would need the same rule here) and for at most [`MAX_AGE_SECONDS`] after it was verified.
//! `nbf` needs no check: a token is stored only once it is valid, and an entry is not used at a
//! time before its verification (a clock stepped back), so it is never used before its `nbf`.
//! Failures are never stored: every refused token is checked again in full.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::ids::Caller;

/// How long a verification is trusted. With a JWKS, a key the issuer withdraws stops a cached
/// token within this time once the container's keys are fetched again; with static keys a
/// rotation is a deployment, which starts new containers.
pub const MAX_AGE_SECONDS: u64 = 60;

/// Tokens held at most; a full cache is emptied and fills again from the next verifications,
/// so memory stays bounded whatever the number of distinct callers: tokens are at most 8 KiB
/// (`MAX_TOKEN_BYTES`, so 8 MiB at worst) and typically under 1 KiB (about 1 MiB).
pub const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<Box<str>, Verified>>,
}

struct Verified {
    caller: Caller,
    exp: u64,
    /// When it was verified (Unix seconds).
    verified_at: u64,
}

impl VerifiedTokens {
    /// The caller and `exp` of `token` if it was verified recently and is still valid at `now`
    /// (Unix seconds) with `leeway` seconds, as the verification would decide.
    pub fn get(&self, token: &str, now: u64, leeway: u64) -> Option<(Caller, u64)> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let hit = entries.get(token)?;
        // `exp + leeway >= now` is the verification's own rule (an expired token is refused).
        let usable = (hit.verified_at..=hit.verified_at.saturating_add(MAX_AGE_SECONDS)).contains(&now)
            && hit.exp.saturating_add(leeway) >= now;
        if !usable {
            // Verified again in full, and remembered again if it passes.
            entries.remove(token);
            return None;
        }
        Some((hit.caller.clone(), hit.exp))
    }

    /// Remembers that `token` was verified at `now` and names `caller`, valid until `exp`.
    pub fn insert(&self, token: &str, caller: &Caller, exp: u64, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(token) {
            entries.clear();
        }
        entries.insert(
            token.into(),
            Verified {
                caller: caller.clone(),
                exp,
                verified_at: now,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{OrgId, UserId};

    fn alice() -> Caller {
        Caller::member(OrgId::parse("acme").unwrap(), UserId::parse("alice").unwrap())
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_verified_token_is_answered_until_it_expires_with_the_leeway() {
        // GIVEN a token verified now that expires in 10 s, with a leeway of 5 s
        let cache = VerifiedTokens::default();
        cache.insert("token-a", &alice(), NOW + 10, NOW);
        // THEN it is answered while exp + leeway has not passed, and not after
        assert_eq!(cache.get("token-a", NOW, 5), Some((alice(), NOW + 10)));
        assert_eq!(cache.get("token-a", NOW + 15, 5).map(|(c, _)| c), Some(alice()));
        assert_eq!(cache.get("token-a", NOW + 16, 5), None);
        assert_eq!(cache.get("token-a", NOW + 11, 0), None);
    }

    #[test]
    fn a_verification_is_trusted_for_at_most_a_minute() {
        let cache = VerifiedTokens::default();
        cache.insert("token-a", &alice(), NOW + 3600, NOW);
        assert!(cache.get("token-a", NOW + MAX_AGE_SECONDS, 0).is_some());
        assert!(cache.get("token-a", NOW + MAX_AGE_SECONDS + 1, 0).is_none());
    }

    #[test]
    fn an_entry_is_not_used_at_a_time_before_its_verification_and_is_dropped_once_unusable() {
        // GIVEN a token verified at NOW
        let cache = VerifiedTokens::default();
        cache.insert("token-a", &alice(), NOW + 3600, NOW);
        // WHEN the clock is stepped back THEN it is verified again in full (perhaps before its
        // nbf), and the entry is gone
        assert_eq!(cache.get("token-a", NOW - 1, 0), None);
        assert!(cache.is_empty());
        // AND an expired entry is dropped, not kept until the cache fills
        cache.insert("token-b", &alice(), NOW + 5, NOW);
        assert_eq!(cache.get("token-b", NOW + 6, 0), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache = VerifiedTokens::default();
        cache.insert("header.claims.signature", &alice(), NOW + 60, NOW);
        for other in [
            "header.claims.signaturf",
            "header.claims.signature ",
            "header.claims.",
            "",
        ] {
            assert_eq!(cache.get(other, NOW, 0), None, "{other:?}");
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = VerifiedTokens::default();
        for n in 0..CAPACITY * 3 + 7 {
            cache.insert(&format!("token-{n}"), &alice(), NOW + 60, NOW);
            assert!(cache.len() <= CAPACITY);
        }
        // The newest is always kept.
        assert!(cache.get(&format!("token-{}", CAPACITY * 3 + 6), NOW, 0).is_some());
    }
}
