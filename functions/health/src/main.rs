use lambda_http::{Error, service_fn};
use shared::config::Env;
use shared::health::Health;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let aws = shared::app::aws_config().await;
    let health =
        Health::from_env(&Env::process(), &aws).inspect_err(shared::telemetry::startup_failed)?;
    lambda_http::run(service_fn(|req| health::handle(&health, req))).await
}
