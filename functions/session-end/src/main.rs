shared::lambda_http_main!(session_end::handle);
