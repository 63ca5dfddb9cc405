//! The store contract (`shared::fakes::contract`) on the real PostgreSQL store, and the key,
//! settings, slots and rate-limit contracts (`shared::fakes::*_contract`) on their DynamoDB
//! items in moto: the same cases the in-memory fakes pass in the `shared` unit tests.

use integration_tests::TestApp;

#[tokio::test]
async fn the_postgresql_store_keeps_the_store_contract() {
    let given = TestApp::spawn().await;
    shared::fakes::contract::every_case(given.app.store.as_ref(), "contract").await;
}

#[tokio::test]
async fn the_dynamodb_key_table_keeps_the_key_contract() {
    let given = TestApp::spawn().await;
    shared::fakes::key_contract::every_case(given.stack.keys.keys.as_ref(), "contract").await;
}

#[tokio::test]
async fn the_dynamodb_settings_item_keeps_the_settings_contract() {
    let given = TestApp::spawn().await;
    shared::fakes::settings_contract::every_case(given.stack.settings.settings.store().as_ref(), "contract").await;
}

#[tokio::test]
async fn the_dynamodb_slots_item_keeps_the_slots_contract() {
    let given = TestApp::spawn().await;
    let slots = shared::adapters::dynamodb::batch_slots::DynamoBatchSlots::new(
        &shared::app::aws_config().await,
        &shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        &given.table,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    shared::fakes::slots_contract::every_case(&slots, "contract").await;
}

#[tokio::test]
async fn the_dynamodb_rate_limiter_with_its_leases_keeps_the_rate_limit_contract() {
    let given = TestApp::spawn().await;
    let per_minute = shared::domain::ratelimit::Limits {
        max_requests: 1000,
        window_ms: 60_000,
        burst_allowance: 0,
    };
    let config = shared::config::RateLimitConfig {
        dynamodb: shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        // Every case passes its own budgets.
        defaults: shared::domain::ratelimit::Budgets {
            organization: per_minute,
            user: per_minute,
        },
        table_name: given.table.clone(),
        on_store_error: shared::config::OnStoreError::Deny,
        store_timeout: std::time::Duration::from_secs(5),
    };
    let limiter =
        shared::adapters::dynamodb::DynamoRateLimiter::new(&shared::app::aws_config().await, &config).unwrap();
    shared::fakes::rate_limit_contract::every_case(&limiter, "contract").await;
}
