shared::lambda_http_main!(api_key_list::State, api_key_list::handle);
