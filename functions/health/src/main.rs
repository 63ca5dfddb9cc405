shared::lambda_http_main!(health::State, health::handle);
