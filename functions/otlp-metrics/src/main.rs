shared::lambda_http_main!(otlp_metrics::State, otlp_metrics::handle);
