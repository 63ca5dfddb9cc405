shared::lambda_http_main!(command_execution::handle);
