use lambda_runtime::{Error, service_fn};
use live_connection::LiveConnection;
use shared::app::FromEnv;
use shared::config::Env;

shared::fast_allocator!();

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let aws = shared::app::aws_config().await;
    let env = shared::adapters::secrets::resolve(Env::process(), &aws)
        .await
        .inspect_err(shared::telemetry::startup_failed)?;
    let state = LiveConnection::from_env(&env, &aws).inspect_err(shared::telemetry::startup_failed)?;
    lambda_runtime::run(service_fn(|event| live_connection::handle(&state, event))).await
}
