shared::lambda_http_main!(api_key_create::State, api_key_create::handle);
