use batch_worker::Worker;
use lambda_runtime::{Error, service_fn};
use shared::config::Env;

shared::fast_allocator!();

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let aws = shared::app::aws_config().await;
    let env = shared::adapters::secrets::resolve(Env::process(), &aws)
        .await
        .inspect_err(shared::telemetry::startup_failed)?;
    let worker = Worker::from_env(&env, &aws).inspect_err(shared::telemetry::startup_failed)?;
    lambda_runtime::run(service_fn(|event| worker.handle(event))).await
}
