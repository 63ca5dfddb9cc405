shared::lambda_http_main!(batch::State, batch::handle);
