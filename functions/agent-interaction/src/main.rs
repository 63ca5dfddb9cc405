shared::lambda_http_main!(agent_interaction::handle);
