//! The key contract: what every `ApiKeyStore` must do, as one suite that runs against the
//! in-memory fake (`shared` unit tests) and against the DynamoDB table in moto
//! (`tests/tests/it/contract.rs`), so what is tested on the fake holds on the real table.
//!
//! Each case takes the store and an organization of its own, and panics naming what differs.

use chrono::{DateTime, Duration, Utc};

use crate::domain::api_keys::{KeyId, KeyInfo, NewKey, StoredKey, at_key_precision};
use crate::domain::ids::{OrgId, Role, UserId};
use crate::ports::api_keys::{ApiKeyStore, KeyStoreError};

/// Every case of the contract, each in an organization of its own (`org_prefix` + a suffix).
pub async fn every_case(store: &dyn ApiKeyStore, org_prefix: &str) {
    let org = |case: &str| format!("{org_prefix}{case}");
    a_key_is_read_back_whole_and_never_replaced(store, &org("read")).await;
    an_organization_lists_only_its_own_keys_newest_first(store, &org("list")).await;
    revoking_keeps_the_first_time_and_touches_no_other_organization(store, &org("revoke")).await;
}

/// A key of `org` for `user`, created at `created_at`.
fn key(org: &str, user: &str, created_at: DateTime<Utc>) -> (NewKey, StoredKey) {
    let new = crate::app::keys::generate();
    let stored = StoredKey {
        info: KeyInfo {
            id: new.id.clone(),
            org: OrgId::parse(org).expect("org"),
            user: UserId::parse(user).expect("user"),
            role: Role::Member,
            name: None,
            created_at: at_key_precision(created_at),
            created_by: UserId::parse("admin").expect("admin"),
            expires_at: None,
            revoked_at: None,
        },
        hash: new.hash.clone(),
    };
    (new, stored)
}

fn org_id(org: &str) -> OrgId {
    OrgId::parse(org).expect("org")
}

pub async fn a_key_is_read_back_whole_and_never_replaced(store: &dyn ApiKeyStore, org: &str) {
    let now = Utc::now();
    let (new, mut stored) = key(org, "alice@example.com", now);
    stored.info.role = Role::Admin;
    stored.info.name = Some("Alice's laptop — ünïcode".into());
    stored.info.expires_at = Some(at_key_precision(now + Duration::days(90)));
    store.create(&stored).await.expect("create");
    let read = store.get(&new.id).await.expect("get").expect("the key is found");
    assert_eq!(read.info, stored.info, "every field is read back");
    assert!(read.hash.matches(&new.hash), "the hash is read back");

    let (_, mut other) = key(org, "mallory", now);
    other.info.id = new.id.clone();
    assert!(
        matches!(store.create(&other).await, Err(KeyStoreError::IdTaken)),
        "an id in use is never replaced"
    );
    let read = store.get(&new.id).await.expect("get").expect("still there");
    assert_eq!(read.info.user.as_str(), "alice@example.com");

    let unknown = KeyId::parse(&"0".repeat(32)).expect("id");
    assert!(store.get(&unknown).await.expect("get").is_none());
}

pub async fn an_organization_lists_only_its_own_keys_newest_first(store: &dyn ApiKeyStore, org: &str) {
    let now = Utc::now();
    let mut created = Vec::new();
    for (user, age) in [("old", 300), ("newest", 0), ("middle", 60)] {
        let (_, stored) = key(org, user, now - Duration::seconds(age));
        store.create(&stored).await.expect("create");
        created.push(stored);
    }
    let other = format!("{org}-other");
    store
        .create(&key(&other, "eve", now).1)
        .await
        .expect("another organization's");
    let listed = store.list(&org_id(org)).await.expect("list");
    let users: Vec<&str> = listed.iter().map(|k| k.user.as_str()).collect();
    assert_eq!(
        users,
        ["newest", "middle", "old"],
        "newest first, this organization only"
    );
    assert_eq!(listed[2], created[0].info, "every field is listed");
    assert!(
        store
            .list(&org_id(&format!("{org}-none")))
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn revoking_keeps_the_first_time_and_touches_no_other_organization(store: &dyn ApiKeyStore, org: &str) {
    let now = Utc::now();
    let (new, stored) = key(org, "alice", now);
    store.create(&stored).await.expect("create");

    let other = org_id(&format!("{org}-other"));
    assert!(store.revoke(&other, &new.id, now).await.expect("revoke").is_none());
    let unknown = KeyId::parse(&"f".repeat(32)).expect("id");
    assert!(
        store
            .revoke(&org_id(org), &unknown, now)
            .await
            .expect("revoke")
            .is_none()
    );
    let read = store.get(&new.id).await.expect("get").expect("found");
    assert_eq!(read.info.revoked_at, None, "another organization revokes nothing");

    let revoked = store
        .revoke(&org_id(org), &new.id, now)
        .await
        .expect("revoke")
        .expect("the organization's key is revoked");
    assert_eq!(revoked.revoked_at, Some(at_key_precision(now)));
    let again = store
        .revoke(&org_id(org), &new.id, now + Duration::seconds(5))
        .await
        .expect("again")
        .expect("still its key");
    assert_eq!(
        again.revoked_at,
        Some(at_key_precision(now)),
        "the first revocation stands"
    );
    let read = store.get(&new.id).await.expect("get").expect("found");
    assert_eq!(read.info, again, "what revoke answers is what is stored");
}
