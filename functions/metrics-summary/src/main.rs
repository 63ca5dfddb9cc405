shared::lambda_http_main!(metrics_summary::handle);
