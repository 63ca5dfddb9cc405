shared::lambda_http_main!(command_execution::State, command_execution::handle);
