shared::lambda_http_main!(batch::BatchApp, batch::handle);
