shared::lambda_http_main!(settings_get::State, settings_get::handle);
