shared::lambda_http_main!(session_start::State, session_start::handle);
