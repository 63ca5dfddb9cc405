//! The slots contract: what every `BatchSlots` must do, run against the in-memory fake (`shared`
//! unit tests) and the DynamoDB item in moto (`tests/tests/it/contract.rs`).

use std::time::Duration;

use uuid::Uuid;

use crate::domain::ids::OrgId;
use crate::ports::batch_slots::{BatchSlots, Slot};

const HOLD: Duration = Duration::from_secs(60);

/// Every case, each in an organization of its own (`org_prefix` + a suffix).
pub async fn every_case(slots: &dyn BatchSlots, org_prefix: &str) {
    let org = |case: &str| OrgId::parse(&format!("{org_prefix}-slots-{case}")).expect("org");
    at_most_n_are_held_and_a_release_frees_one(slots, &org("most")).await;
    expired_slots_free_themselves(slots, &org("expired")).await;
    organizations_do_not_share_slots(slots, &org("a"), &org("b")).await;
}

async fn take(slots: &dyn BatchSlots, org: &OrgId, batch: Uuid, now_ms: i64) -> Slot {
    slots.take(org, batch, 3, now_ms, HOLD).await.expect("take")
}

async fn at_most_n_are_held_and_a_release_frees_one(slots: &dyn BatchSlots, org: &OrgId) {
    let now = 1_000_000;
    let batches: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    for batch in &batches[..3] {
        assert_eq!(take(slots, org, *batch, now).await, Slot::Taken);
    }
    let full = take(slots, org, batches[3], now).await;
    assert!(
        matches!(full, Slot::Full { retry_after } if retry_after <= HOLD && retry_after > Duration::ZERO),
        "{full:?}"
    );
    slots.release(org, batches[0]).await.expect("release");
    slots
        .release(org, Uuid::new_v4())
        .await
        .expect("releasing what is not held is fine");
    assert_eq!(take(slots, org, batches[3], now).await, Slot::Taken);
}

async fn expired_slots_free_themselves(slots: &dyn BatchSlots, org: &OrgId) {
    let now = 2_000_000;
    for _ in 0..3 {
        assert_eq!(take(slots, org, Uuid::new_v4(), now).await, Slot::Taken);
    }
    assert!(matches!(take(slots, org, Uuid::new_v4(), now).await, Slot::Full { .. }));
    let later = now + HOLD.as_millis() as i64 + 1;
    assert_eq!(
        take(slots, org, Uuid::new_v4(), later).await,
        Slot::Taken,
        "the three held have expired"
    );
}

async fn organizations_do_not_share_slots(slots: &dyn BatchSlots, a: &OrgId, b: &OrgId) {
    let now = 3_000_000;
    for _ in 0..3 {
        assert_eq!(take(slots, a, Uuid::new_v4(), now).await, Slot::Taken);
    }
    assert_eq!(take(slots, b, Uuid::new_v4(), now).await, Slot::Taken);
}
