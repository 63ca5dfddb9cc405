//! The settings contract: what every `SettingsStore` must do, as one suite that runs against
//! the in-memory fake (`shared` unit tests) and against the DynamoDB table in moto
//! (`tests/tests/it/contract.rs`).

use serde_json::json;

use crate::domain::ids::OrgId;
use crate::ports::settings::{PutError, SettingsStore, StoredSettings};

/// Every case, each in an organization of its own (`org_prefix` + a suffix).
pub async fn every_case(store: &dyn SettingsStore, org_prefix: &str) {
    let org = |case: &str| OrgId::parse(&format!("{org_prefix}-settings-{case}")).expect("org");
    settings_are_read_back_as_written(store, &org("read")).await;
    a_write_from_a_stale_read_is_refused(store, &org("stale")).await;
    deleting_leaves_nothing_and_touches_no_other_organization(store, &org("gone"), &org("kept")).await;
}

fn stored(version: u64, retention_days: u64, secret: Option<&str>) -> StoredSettings {
    StoredSettings {
        overrides: json!({"data_retention": {"hook_events_days": retention_days}}),
        webhook_secret: secret.map(str::to_owned),
        version,
    }
}

async fn settings_are_read_back_as_written(store: &dyn SettingsStore, org: &OrgId) {
    assert_eq!(store.get(org).await.expect("get"), None, "nothing stored yet");
    let first = stored(1, 7, Some("whsec_a"));
    store.put(org, &first).await.expect("first write");
    assert_eq!(store.get(org).await.expect("get"), Some(first));
    let second = stored(2, 8, None);
    store.put(org, &second).await.expect("second write");
    assert_eq!(
        store.get(org).await.expect("get"),
        Some(second),
        "the secret is removed with None"
    );
}

async fn a_write_from_a_stale_read_is_refused(store: &dyn SettingsStore, org: &OrgId) {
    store.put(org, &stored(1, 7, None)).await.expect("first write");
    let again = store.put(org, &stored(1, 9, None)).await;
    assert!(
        matches!(again, Err(PutError::Conflict)),
        "a second version 1: {again:?}"
    );
    let skipped = store.put(org, &stored(3, 9, None)).await;
    assert!(
        matches!(skipped, Err(PutError::Conflict)),
        "version 3 after 1: {skipped:?}"
    );
    assert_eq!(store.get(org).await.expect("get"), Some(stored(1, 7, None)));
}

async fn deleting_leaves_nothing_and_touches_no_other_organization(
    store: &dyn SettingsStore,
    gone: &OrgId,
    kept: &OrgId,
) {
    store.put(gone, &stored(1, 7, None)).await.expect("write");
    store.put(kept, &stored(1, 8, None)).await.expect("write");
    store.delete(gone).await.expect("delete");
    assert_eq!(store.get(gone).await.expect("get"), None);
    assert_eq!(store.get(kept).await.expect("get"), Some(stored(1, 8, None)));
    store
        .put(gone, &stored(1, 9, None))
        .await
        .expect("a deleted organization starts again at 1");
}
