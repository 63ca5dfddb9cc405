shared::lambda_http_main!(metrics_summary::State, metrics_summary::handle);
