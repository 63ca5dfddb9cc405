shared::lambda_http_main!(api_key_revoke::State, api_key_revoke::handle);
