use lambda_runtime::{Error, service_fn};
use migrate::Migrator;
use shared::config::Env;

shared::fast_allocator!();

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let migrator = Migrator::from_env(&Env::process()).inspect_err(shared::telemetry::startup_failed)?;
    lambda_runtime::run(service_fn(|event| migrator.handle(event))).await
}
