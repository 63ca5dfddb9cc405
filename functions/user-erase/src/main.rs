shared::lambda_http_main!(user_erase::State, user_erase::handle);
