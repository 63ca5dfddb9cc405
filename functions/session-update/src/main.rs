shared::lambda_http_main!(session_update::State, session_update::handle);
