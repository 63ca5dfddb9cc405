shared::lambda_http_main!(settings_put::State, settings_put::handle);
