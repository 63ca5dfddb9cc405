use lambda_http::{Error, service_fn};
use shared::App;
use shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let aws = shared::app::aws_config().await;
    let app =
        App::from_env(&Env::process(), &aws).inspect_err(shared::telemetry::startup_failed)?;
    lambda_http::run(service_fn(|req| command_execution::handle(&app, req))).await
}
