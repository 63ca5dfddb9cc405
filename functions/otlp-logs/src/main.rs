shared::lambda_http_main!(otlp_logs::State, otlp_logs::handle);
