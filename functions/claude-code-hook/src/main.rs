shared::lambda_http_main!(claude_code_hook::State, claude_code_hook::handle);
