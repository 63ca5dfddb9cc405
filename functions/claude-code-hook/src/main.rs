shared::lambda_http_main!(claude_code_hook::HookApp, claude_code_hook::handle);
