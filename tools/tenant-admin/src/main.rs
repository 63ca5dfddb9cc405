//! `tenant-admin delete --org ORG --confirm ORG` — deletes the organization ORG everywhere
//! (see the library). Reads `DATABASE_URL` (or its parts), `RATE_LIMIT_TABLE_NAME`,
//! `API_KEYS_TABLE_NAME`, `CONNECTIONS_TABLE_NAME` (optional) and the AWS SDK's own variables.
//! Exit status: 0 deleted, 1 usage or configuration, 2 a store failed (run it again: every step
//! is idempotent).

use shared::config::Env;
use tenant_admin::{Stores, delete_tenant, parse};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let org = match parse(&args) {
        Ok(org) => org,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(1);
        }
    };
    let stores = match Stores::from_env(&Env::process()) {
        Ok(stores) => stores,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    };
    let dynamo = aws_sdk_dynamodb::Client::new(&shared::app::aws_config().await);
    match delete_tenant(&stores, &dynamo, &org).await {
        Ok(report) => println!("{report}"),
        Err(message) => {
            eprintln!("tenant-admin: {message} (nothing is half-deleted in PostgreSQL; run it again)");
            std::process::exit(2);
        }
    }
}
