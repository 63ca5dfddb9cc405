use lambda_runtime::{Error, service_fn};
use session_reaper::Reaper;
use shared::config::Env;

shared::fast_allocator!();

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let reaper = Reaper::from_env(&Env::process()).inspect_err(shared::telemetry::startup_failed)?;
    lambda_runtime::run(service_fn(|event| reaper.handle(event))).await
}
