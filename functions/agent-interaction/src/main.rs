shared::lambda_http_main!(agent_interaction::State, agent_interaction::handle);
