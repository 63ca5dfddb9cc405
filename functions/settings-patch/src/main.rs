shared::lambda_http_main!(settings_patch::State, settings_patch::handle);
