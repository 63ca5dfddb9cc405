//! The DynamoDB rate limiter on moto: never over-admitting under concurrency for both budgets
//! (each developer's and the organization's), also with leases in flight; a lease's tokens taken
//! in one update, so a steady rate costs a small fraction of a call per request; a quiet
//! organization served exactly; refusals decided from the item returned by a failed condition; a
//! flooding developer refused by its own budget without spending the organization's; overrides;
//! outage policy. Tests that count calls pass their own clock (`check_at`): a lease lives a
//! second, which a slow machine must not decide.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{
    TestApp, answer, command_execution_request, dynamo, fresh_database, fresh_table, spec_command_example,
};
use shared::adapters::dynamodb::DynamoRateLimiter;
use shared::config::{OnStoreError, RateLimitConfig};
use shared::domain::ids::{Caller, OrgId, UserId};
use shared::domain::ratelimit::{Budgets, Limits, Scope};
use shared::ports::rate_limit::RateLimiter;
use shared::ports::settings::SettingsSource;

/// A day-long window: no request is refilled while a test runs, so counts are exact however
/// slow the machine is.
const WINDOW_MS: u64 = 86_400_000;

/// A day-long window for both budgets.
fn per_day(max_requests: u64) -> Limits {
    Limits {
        max_requests,
        window_ms: WINDOW_MS,
        burst_allowance: 0,
    }
}

/// The organization may send `max_requests` a day; each developer practically without limit.
fn config(table: &str, max_requests: u64) -> RateLimitConfig {
    config_with_users(table, max_requests, 1_000_000)
}

fn config_with_users(table: &str, max_requests: u64, user_max_requests: u64) -> RateLimitConfig {
    RateLimitConfig {
        dynamodb: shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        defaults: Budgets {
            organization: per_day(max_requests),
            user: per_day(user_max_requests),
        },
        table_name: table.to_owned(),
        on_store_error: OnStoreError::Deny,
        store_timeout: Duration::from_secs(5),
    }
}

async fn limiter(table: &str, max_requests: u64) -> DynamoRateLimiter {
    DynamoRateLimiter::new(&shared::app::aws_config().await, &config(table, max_requests)).unwrap()
}

async fn limiter_with_users(table: &str, max_requests: u64, user_max_requests: u64) -> DynamoRateLimiter {
    let config = config_with_users(table, max_requests, user_max_requests);
    DynamoRateLimiter::new(&shared::app::aws_config().await, &config).unwrap()
}

fn org(id: &str) -> OrgId {
    OrgId::parse(id).unwrap()
}

/// The developer `user` of `org_id`.
fn caller(org_id: &str, user: &str) -> Caller {
    Caller::member(org(org_id), UserId::parse(user).unwrap())
}

/// Alice of acme, the caller of the tests about one budget.
fn alice() -> Caller {
    caller("acme", "alice")
}

/// One check of `who` at `now` (µs) against the limiter's own budgets.
async fn check_at(limiter: &DynamoRateLimiter, who: &Caller, now: i64) -> shared::domain::ratelimit::RateStatus {
    limiter.check_at(who, &limiter.default_budgets(), now).await.unwrap()
}

/// A moment for a test to start its clock at.
fn start() -> i64 {
    shared::domain::ratelimit::now_us()
}

const MS: i64 = 1000;

#[tokio::test]
async fn many_instances_racing_admit_exactly_the_limit() {
    let table = fresh_table().await;
    // Eight "containers", each with its own caches, sharing one table.
    let mut instances = vec![];
    for _ in 0..8 {
        instances.push(Arc::new(limiter(&table, 5).await));
    }
    let now = start();
    let checks: Vec<_> = (0..48)
        .map(|i| {
            let limiter = instances[i % instances.len()].clone();
            tokio::spawn(async move { check_at(&limiter, &alice(), now).await })
        })
        .collect();
    let mut admitted = 0;
    for check in checks {
        let status = check.await.unwrap();
        if status.admitted() {
            admitted += 1;
        } else {
            assert!(status.retry_after_us.unwrap() > 0);
            assert_eq!(status.remaining, 0);
        }
    }
    assert_eq!(admitted, 5);
}

#[tokio::test]
async fn many_instances_racing_never_admit_more_than_either_budget() {
    let table = fresh_table().await;
    // Eight "containers" and 64 clients at once: four developers of one organization, each
    // allowed 5 a day, under an organization ceiling of 12.
    let mut instances = vec![];
    for _ in 0..8 {
        instances.push(Arc::new(limiter_with_users(&table, 12, 5).await));
    }
    let users = ["ann", "bob", "cy", "dee"];
    let now = start();
    let checks: Vec<_> = (0..64)
        .map(|i| {
            let limiter = instances[i % instances.len()].clone();
            let who = caller("acme", users[i % users.len()]);
            tokio::spawn(async move { (who.user.to_string(), check_at(&limiter, &who, now).await) })
        })
        .collect();
    let mut admitted = std::collections::HashMap::<String, u32>::new();
    for check in checks {
        let (user, status) = check.await.unwrap();
        if status.admitted() {
            *admitted.entry(user).or_default() += 1;
        } else {
            assert!(status.retry_after_us.unwrap() > 0);
            assert_eq!(status.remaining, 0);
        }
    }
    assert!(admitted.values().all(|&n| n <= 5), "a developer's budget: {admitted:?}");
    let total: u32 = admitted.values().sum();
    assert!((1..=12).contains(&total), "the organization's ceiling: {admitted:?}");
}

#[tokio::test]
async fn a_flooding_developer_is_refused_by_its_own_budget_and_spends_none_of_the_organizations() {
    let table = fresh_table().await;
    // Each developer 10 a day; the organization 15.
    let limiter = limiter_with_users(&table, 15, 10).await;
    let now = start();
    let mut refusals = vec![];
    let mut admitted = 0;
    let mut calls_while_full = 0;
    for _ in 0..50 {
        let before = limiter.round_trips();
        let status = check_at(&limiter, &caller("acme", "runaway"), now).await;
        if status.admitted() {
            admitted += 1;
        } else {
            refusals.push(status.scope);
            calls_while_full += limiter.round_trips() - before;
        }
    }
    assert_eq!(admitted, 10);
    // Once this container saw the bucket full, refusals cost no DynamoDB call at all.
    assert_eq!(calls_while_full, 0);
    assert!(refusals.iter().all(|&scope| scope == Scope::User), "{refusals:?}");
    // The organization spent only what was admitted: 5 more for a colleague.
    let mut colleague = vec![];
    for _ in 0..8 {
        let status = check_at(&limiter, &caller("acme", "bob"), now).await;
        colleague.push((status.admitted(), status.scope));
    }
    let admitted_for_bob = colleague.iter().filter(|(admitted, _)| *admitted).count();
    assert_eq!(admitted_for_bob, 5, "{colleague:?}");
    assert!(
        colleague
            .iter()
            .filter(|(admitted, _)| !admitted)
            .all(|(_, scope)| *scope == Scope::Organization)
    );
    // Another organization's developers are untouched.
    assert!(check_at(&limiter, &caller("globex", "runaway"), now).await.admitted());
}

#[tokio::test]
async fn a_lease_takes_several_tokens_in_one_update_and_says_what_is_left() {
    let table = fresh_table().await;
    let limiter = limiter(&table, 1000).await;
    let now = start();
    for expected_remaining in (980..1000).rev() {
        let status = check_at(&limiter, &alice(), now).await;
        assert!(status.admitted());
        assert_eq!(status.remaining, expected_remaining);
    }
    // Per budget, leases of 1, 2, 4, 8 and 16 tokens (each twice the last while the container
    // spends them at once) cover the 20 requests: five updates, not twenty. The settings are
    // read elsewhere, and cached.
    assert_eq!(limiter.round_trips(), 2 * 5);
}

#[tokio::test]
async fn a_steady_rate_from_one_container_costs_at_most_a_tenth_of_a_call_per_request() {
    let table = fresh_table().await;
    // The stage's budgets as a minute's: 12,000 for the organization, 6,000 for the developer.
    let config = RateLimitConfig {
        defaults: Budgets {
            organization: Limits {
                window_ms: 60_000,
                ..per_day(12_000)
            },
            user: Limits {
                window_ms: 60_000,
                ..per_day(6_000)
            },
        },
        ..config(&table, 0)
    };
    let limiter = DynamoRateLimiter::new(&shared::app::aws_config().await, &config).unwrap();
    // 50 requests a second for ten seconds of the test's clock.
    let begin = start();
    let requests = 500;
    for i in 0..requests {
        assert!(check_at(&limiter, &alice(), begin + i * 20 * MS).await.admitted());
    }
    let per_request = limiter.round_trips() as f64 / requests as f64;
    assert!(per_request <= 0.1, "{per_request} calls per admitted request");
    eprintln!("{per_request} calls per admitted request at 50 a second");
}

#[tokio::test]
async fn leases_in_flight_on_many_instances_never_admit_more_than_either_budget() {
    let table = fresh_table().await;
    // Four containers; the organization 1,000 a day, each developer 400.
    let mut instances = vec![];
    for _ in 0..4 {
        instances.push(Arc::new(limiter_with_users(&table, 1000, 400).await));
    }
    let developer = |i: usize| caller("acme", &format!("dev-{}", i % 8));
    // Each container serves a developer at 50 a second for 0.8 s: leases grow, and some of
    // their tokens are still unspent...
    let begin = start();
    let mut admitted = std::collections::HashMap::<String, u32>::new();
    for (i, limiter) in instances.iter().enumerate() {
        for step in 0..40 {
            let status = check_at(limiter, &developer(i), begin + step * 20 * MS).await;
            assert!(status.admitted());
            *admitted.entry(developer(i).user.to_string()).or_default() += 1;
        }
    }
    let calls: u64 = instances.iter().map(|limiter| limiter.round_trips()).sum();
    assert!(calls < 4 * 40 / 2, "leases were taken: {calls} calls for 160 requests");
    // ...when 64 clients of eight developers race 30 requests each, within the leases' second.
    let now = begin + 900 * MS;
    let clients: Vec<_> = (0..64)
        .map(|client| {
            let limiter = instances[client % instances.len()].clone();
            let who = developer(client);
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..30 {
                    admitted += u32::from(check_at(&limiter, &who, now).await.admitted());
                }
                (who.user.to_string(), admitted)
            })
        })
        .collect();
    for client in clients {
        let (user, n) = client.await.unwrap();
        *admitted.entry(user).or_default() += n;
    }
    assert!(
        admitted.values().all(|&n| n <= 400),
        "a developer's budget: {admitted:?}"
    );
    let total: u32 = admitted.values().sum();
    assert!(total <= 1000, "the organization's ceiling: {total} admitted");
    // Under-admission is bounded (docs/security.md): at most one lease per container left
    // unspent, each at most an eighth of what the bucket had left.
    assert!(total >= 1000 - 4 * 1000 / 8, "{total} admitted: {admitted:?}");
    eprintln!("admitted {total} of 1000 with leases in flight");
}

#[tokio::test]
async fn a_quiet_organization_gets_its_whole_limit_from_many_containers() {
    let table = fresh_table().await;
    let mut instances = vec![];
    for _ in 0..4 {
        instances.push(limiter(&table, 200).await);
    }
    // 400 requests, round robin over four containers, each container's every 0.5 s.
    let begin = start();
    let mut admitted = 0;
    for step in 0..400 {
        let limiter = &instances[step % instances.len()];
        admitted += usize::from(
            check_at(limiter, &alice(), begin + step as i64 * 125 * MS)
                .await
                .admitted(),
        );
    }
    assert_eq!(admitted, 200, "every token of the day's 200 admitted");
}

#[tokio::test]
async fn a_refusal_is_decided_from_the_item_the_failed_condition_returns() {
    let table = fresh_table().await;
    let now = start();
    let first = limiter(&table, 2).await;
    assert!(check_at(&first, &alice(), now).await.admitted());
    assert!(check_at(&first, &alice(), now).await.admitted());
    // Another container, which has not seen the full organization bucket, for a colleague.
    let second = limiter(&table, 2).await;
    let refused = check_at(&second, &caller("acme", "bob"), now).await;
    assert!(!refused.admitted());
    // Bob's own update, and one organization update whose failure returned the old `tat`
    // (ReturnValuesOnConditionCheckFailure = ALL_OLD): no read, no second update.
    assert_eq!(second.round_trips(), 2);
    assert_eq!(refused.scope, Scope::Organization);
    // The first container saw the bucket full: it refuses without a call (alice's own budget
    // admits from its lease, and gets the token back).
    let before = first.round_trips();
    assert!(!check_at(&first, &alice(), now).await.admitted());
    assert_eq!(first.round_trips() - before, 0);
    assert!(
        refused.retry_after_us.unwrap() > 29_000_000,
        "about half a window: {:?}",
        refused.retry_after_us
    );
}

#[tokio::test]
async fn a_new_instance_joins_an_active_bucket() {
    let table = fresh_table().await;
    let now = start();
    let first = limiter(&table, 3).await;
    let second = limiter(&table, 3).await;
    assert_eq!(check_at(&first, &alice(), now).await.remaining, 2);
    // `second` guesses "idle", the condition fails with the stored tat, and it advances instead.
    assert_eq!(check_at(&second, &alice(), now).await.remaining, 1);
    assert_eq!(
        second.round_trips(),
        4,
        "for each budget a failed restart and an advance"
    );
    assert_eq!(check_at(&first, &alice(), now).await.remaining, 0);
    assert!(!check_at(&second, &alice(), now).await.admitted());
}

#[tokio::test]
async fn overrides_are_read_from_the_same_table() {
    let table = fresh_table().await;
    dynamo()
        .await
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(DynamoRateLimiter::override_key(&org("vip"))))
        .item("max_requests", AttributeValue::N("2".into()))
        .item("burst_allowance", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let limiter = limiter(&table, 5).await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let env = shared::config::Env::from_pairs([
        ("RATE_LIMIT_TABLE_NAME", table.as_str()),
        ("RATE_LIMIT_MAX_REQUESTS", "5"),
        ("RATE_LIMIT_WINDOW_MS", "86400000"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ]);
    let settings = shared::app::settings::Settings::from_env(&env, &shared::app::aws_config().await).unwrap();
    let admitted = |id: &'static str| {
        let (limiter, settings) = (&limiter, &settings);
        async move {
            let mut n = 0;
            let budgets = settings.effective(&org(id)).await.unwrap().settings.budgets();
            for _ in 0..10 {
                let status = limiter.check_within(&caller(id, "alice"), &budgets).await.unwrap();
                if status.admitted() {
                    n += 1;
                }
                assert_eq!(status.limit, if id == "vip" { 3 } else { 5 });
            }
            n
        }
    };
    assert_eq!(admitted("vip").await, 3);
    assert_eq!(admitted("normal").await, 5);
}

#[tokio::test]
async fn the_handler_admits_exactly_the_limit_and_refuses_the_rest_with_retry_after() {
    let given = TestApp::spawn_with(&[("RATE_LIMIT_MAX_REQUESTS", "3"), ("RATE_LIMIT_WINDOW_MS", "86400000")]).await;
    let sends: Vec<_> = (0..12)
        .map(|_| {
            let app = given.app.clone();
            tokio::spawn(async move {
                answer(
                    command_execution::handle(&app, command_execution_request("acme", &spec_command_example()))
                        .await
                        .unwrap(),
                )
                .await
            })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for send in sends {
        let a = send.await.unwrap();
        match a.status {
            201 => created += 1,
            429 => {
                refused += 1;
                let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry >= 1);
                assert_eq!(a.body["rate_limit"]["retry_after"], retry);
                assert_eq!(a.body["rate_limit"]["remaining"], 0);
                assert_eq!(a.headers["x-ratelimit-remaining"], "0");
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert_eq!((created, refused), (3, 9));
    assert_eq!(given.count("acme", "command_executions").await, 3);
}

#[tokio::test]
async fn unreachable_dynamodb_follows_the_configured_policy() {
    let dead = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{}", integration_tests::free_port()))
        .load()
        .await;
    let database_url = fresh_database().await;
    for (policy, expected) in [("allow", 201), ("deny", 503)] {
        let given = TestApp::spawn_with_aws(
            &database_url,
            &[("RATE_LIMIT_ON_STORE_ERROR", policy), ("RATE_LIMIT_TIMEOUT_MS", "500")],
            &dead,
        )
        .await;
        let a = answer(
            command_execution::handle(&given.app, command_execution_request("acme", &spec_command_example()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, expected, "{policy}: {}", a.body);
        if expected == 503 {
            assert_eq!(a.body["message"], "Rate limiter temporarily unavailable");
            assert_eq!(a.headers["retry-after"], "30");
        }
    }
}
