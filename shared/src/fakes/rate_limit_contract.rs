//! The rate-limit contract: what every `RateLimiter` must do, run against the in-memory fake
//! (`shared` unit tests) and the DynamoDB limiter with its leases in moto
//! (`tests/tests/it/contract.rs`). Time is passed in (`check_at`), so leases are tested without
//! waiting for them.

use crate::domain::ids::{Caller, OrgId, UserId};
use crate::domain::ratelimit::{Budgets, Limits, RateStatus, Scope, now_us};
use crate::ports::rate_limit::RateLimiter;

const DAY_MS: u64 = 86_400_000;
const MS: i64 = 1000;

/// Every case, each in an organization of its own (`org_prefix` + a suffix).
pub async fn every_case(limiter: &dyn RateLimiter, org_prefix: &str) {
    let org = |case: &str| OrgId::parse(&format!("{org_prefix}-rate-{case}")).expect("org");
    a_budget_admits_exactly_its_capacity_and_says_when_to_retry(limiter, &org("exact")).await;
    a_developers_refusal_spends_none_of_the_organizations(limiter, &org("dev")).await;
    a_steady_rate_within_both_budgets_is_all_admitted(limiter, &org("steady")).await;
    a_lowered_limit_applies_at_once_whatever_was_taken_before(limiter, &org("lowered")).await;
    organizations_do_not_share_budgets(limiter, &org("a"), &org("b")).await;
}

fn limits(max_requests: u64, window_ms: u64) -> Limits {
    Limits {
        max_requests,
        window_ms,
        burst_allowance: 0,
    }
}

fn budgets(organization: Limits, user: Limits) -> Budgets {
    Budgets { organization, user }
}

fn member(org: &OrgId, user: &str) -> Caller {
    Caller::member(org.clone(), UserId::parse(user).expect("user"))
}

async fn check(limiter: &dyn RateLimiter, who: &Caller, budgets: &Budgets, now: i64) -> RateStatus {
    limiter.check_at(who, budgets, now).await.expect("check")
}

/// How many of `n` checks at `now` are admitted.
async fn admitted_of(limiter: &dyn RateLimiter, who: &Caller, budgets: &Budgets, now: i64, n: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        admitted += usize::from(check(limiter, who, budgets, now).await.admitted());
    }
    admitted
}

async fn a_budget_admits_exactly_its_capacity_and_says_when_to_retry(limiter: &dyn RateLimiter, org: &OrgId) {
    let given = budgets(limits(10, DAY_MS), limits(1_000_000, DAY_MS));
    let (alice, now) = (member(org, "alice"), now_us());
    let mut remaining = vec![];
    for _ in 0..10 {
        let status = check(limiter, &alice, &given, now).await;
        assert!(status.admitted(), "{status:?}");
        remaining.push(status.remaining);
    }
    assert_eq!(remaining, (0..10).rev().collect::<Vec<_>>());
    let refused = check(limiter, &alice, &given, now).await;
    assert_eq!(
        (refused.admitted(), refused.scope, refused.remaining),
        (false, Scope::Organization, 0)
    );
    let wait = refused.retry_after_us.expect("a refusal says when to retry");
    assert_eq!(wait, given.organization.interval_us(), "one request's worth of refill");
    assert!(!check(limiter, &alice, &given, now + wait - 1).await.admitted());
    assert!(check(limiter, &alice, &given, now + wait).await.admitted());
}

async fn a_developers_refusal_spends_none_of_the_organizations(limiter: &dyn RateLimiter, org: &OrgId) {
    let given = budgets(limits(5, DAY_MS), limits(3, DAY_MS));
    let now = now_us();
    let runaway = member(org, "runaway");
    let mut scopes = vec![];
    for _ in 0..6 {
        let status = check(limiter, &runaway, &given, now).await;
        scopes.push((status.admitted(), status.scope));
    }
    assert_eq!(scopes[..3], [(true, Scope::User); 3], "{scopes:?}");
    assert_eq!(scopes[3..], [(false, Scope::User); 3], "{scopes:?}");
    let bob = member(org, "bob");
    assert_eq!(admitted_of(limiter, &bob, &given, now, 2).await, 2);
    let refused = check(limiter, &bob, &given, now).await;
    assert_eq!((refused.admitted(), refused.scope), (false, Scope::Organization));
}

async fn a_steady_rate_within_both_budgets_is_all_admitted(limiter: &dyn RateLimiter, org: &OrgId) {
    // 50 a second for four seconds; the budgets allow 100 and 200 a second.
    let given = budgets(limits(12_000, 60_000), limits(6_000, 60_000));
    let (alice, start) = (member(org, "alice"), now_us());
    for i in 0..200 {
        let status = check(limiter, &alice, &given, start + i * 20 * MS).await;
        assert!(status.admitted(), "request {i}: {status:?}");
    }
}

async fn a_lowered_limit_applies_at_once_whatever_was_taken_before(limiter: &dyn RateLimiter, org: &OrgId) {
    let (alice, start) = (member(org, "alice"), now_us());
    // A busy organization at 1,000 a day, 50 requests a second (leases grow)...
    let before = budgets(limits(1000, DAY_MS), limits(1_000_000, DAY_MS));
    for i in 0..40 {
        assert!(check(limiter, &alice, &before, start + i * 20 * MS).await.admitted());
    }
    // ...lowered to 3 a day: what was counted under the old limit leaves at most 3, and
    // nothing taken under it is spent under the new one.
    let lowered = budgets(limits(3, DAY_MS), before.user);
    let admitted = admitted_of(limiter, &alice, &lowered, start + 800 * MS, 20).await;
    assert!(admitted <= 3, "{admitted} admitted under a limit of 3");
}

async fn organizations_do_not_share_budgets(limiter: &dyn RateLimiter, a: &OrgId, b: &OrgId) {
    let given = budgets(limits(2, DAY_MS), limits(1_000_000, DAY_MS));
    let now = now_us();
    assert_eq!(admitted_of(limiter, &member(a, "alice"), &given, now, 4).await, 2);
    assert_eq!(admitted_of(limiter, &member(b, "alice"), &given, now, 4).await, 2);
}
