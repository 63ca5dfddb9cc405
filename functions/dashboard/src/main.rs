shared::lambda_http_main!(dashboard::State, dashboard::handle);
