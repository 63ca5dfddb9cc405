//! The DynamoDB rate limiter on moto: exact under concurrency, one round trip in the common case,
//! refusals decided from the item returned by a failed condition, overrides, outage policy.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{
    TestApp, answer, command_execution_request, dynamo, fresh_database, fresh_table, spec_command_example,
};
use shared::adapters::dynamodb::DynamoRateLimiter;
use shared::config::{OnStoreError, RateLimitConfig};
use shared::domain::ids::OrgId;
use shared::domain::ratelimit::Limits;
use shared::ports::rate_limit::RateLimiter;

/// A day-long window: no request is refilled while a test runs, so counts are exact however
/// slow the machine is.
const WINDOW_MS: u64 = 86_400_000;

fn config(table: &str, max_requests: u64) -> RateLimitConfig {
    RateLimitConfig {
        dynamodb: shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        defaults: Limits {
            max_requests,
            window_ms: WINDOW_MS,
            burst_allowance: 0,
        },
        table_name: table.to_owned(),
        on_store_error: OnStoreError::Deny,
        override_ttl: Duration::from_secs(60),
        store_timeout: Duration::from_secs(5),
    }
}

async fn limiter(table: &str, max_requests: u64) -> DynamoRateLimiter {
    DynamoRateLimiter::new(&shared::app::aws_config().await, &config(table, max_requests)).unwrap()
}

fn org(id: &str) -> OrgId {
    OrgId::parse(id).unwrap()
}

#[tokio::test]
async fn many_instances_racing_admit_exactly_the_limit() {
    let table = fresh_table().await;
    // Eight "containers", each with its own caches, sharing one table.
    let mut instances = vec![];
    for _ in 0..8 {
        instances.push(Arc::new(limiter(&table, 5).await));
    }
    let checks: Vec<_> = (0..48)
        .map(|i| {
            let limiter = instances[i % instances.len()].clone();
            tokio::spawn(async move { limiter.check(&org("acme")).await.unwrap() })
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
async fn the_common_case_is_one_round_trip() {
    let table = fresh_table().await;
    let limiter = limiter(&table, 1000).await;
    for expected_remaining in (980..1000).rev() {
        let status = limiter.check(&org("acme")).await.unwrap();
        assert!(status.admitted());
        assert!(
            status.remaining.abs_diff(expected_remaining) <= 1,
            "{} vs {expected_remaining}",
            status.remaining
        );
    }
    // 20 conditional updates plus one read of the (absent) override.
    assert_eq!(limiter.round_trips(), 21);
}

#[tokio::test]
async fn a_refusal_is_decided_from_the_item_the_failed_condition_returns() {
    let table = fresh_table().await;
    let limiter = limiter(&table, 2).await;
    assert!(limiter.check(&org("acme")).await.unwrap().admitted());
    assert!(limiter.check(&org("acme")).await.unwrap().admitted());
    let before = limiter.round_trips();
    let refused = limiter.check(&org("acme")).await.unwrap();
    assert!(!refused.admitted());
    // One conditional update whose failure returned the old `tat`
    // (ReturnValuesOnConditionCheckFailure = ALL_OLD): no read, no second update.
    assert_eq!(limiter.round_trips() - before, 1);
    assert!(
        refused.retry_after_us.unwrap() > 29_000_000,
        "about half a window: {:?}",
        refused.retry_after_us
    );
}

#[tokio::test]
async fn a_new_instance_joins_an_active_bucket() {
    let table = fresh_table().await;
    let first = limiter(&table, 3).await;
    let second = limiter(&table, 3).await;
    assert_eq!(first.check(&org("acme")).await.unwrap().remaining, 2);
    // `second` guesses "idle", the condition fails with the stored tat, and it advances instead.
    assert_eq!(second.check(&org("acme")).await.unwrap().remaining, 1);
    assert_eq!(second.round_trips(), 3, "override read, failed restart, advance");
    assert_eq!(first.check(&org("acme")).await.unwrap().remaining, 0);
    assert!(!second.check(&org("acme")).await.unwrap().admitted());
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
    let admitted = |id: &'static str| {
        let limiter = &limiter;
        async move {
            let mut n = 0;
            for _ in 0..10 {
                let status = limiter.check(&org(id)).await.unwrap();
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
