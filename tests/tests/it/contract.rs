//! The store contract (`shared::fakes::contract`) on the real PostgreSQL store: the same cases
//! the in-memory fake passes in the `shared` unit tests.

use integration_tests::TestApp;

#[tokio::test]
async fn the_postgresql_store_keeps_the_store_contract() {
    let given = TestApp::spawn().await;
    shared::fakes::contract::every_case(given.app.store.as_ref(), "contract").await;
}
