shared::lambda_http_main!(shared::app::health::Health, health::handle);
