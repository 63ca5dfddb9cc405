shared::lambda_http_main!(shared::health::Health, health::handle);
