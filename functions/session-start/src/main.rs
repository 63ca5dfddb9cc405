shared::lambda_http_main!(session_start::handle);
