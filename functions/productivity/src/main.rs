shared::lambda_http_main!(productivity::State, productivity::handle);
