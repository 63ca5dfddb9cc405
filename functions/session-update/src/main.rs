shared::lambda_http_main!(session_update::handle);
