shared::lambda_http_main!(productivity::handle);
