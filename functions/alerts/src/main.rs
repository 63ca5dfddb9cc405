use alerts::State;
use lambda_runtime::{Error, service_fn};
use shared::app::FromEnv;
use shared::config::Env;

shared::fast_allocator!();

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let env = shared::adapters::secrets::resolve_loading_aws(Env::process())
        .await
        .inspect_err(shared::telemetry::startup_failed)?;
    let aws = shared::app::aws_config().await;
    let state = State::from_env(&env, &aws).inspect_err(shared::telemetry::startup_failed)?;
    lambda_runtime::run(service_fn(|event| alerts::handle(&state, event))).await
}
