shared::lambda_http_main!(session_end::State, session_end::handle);
