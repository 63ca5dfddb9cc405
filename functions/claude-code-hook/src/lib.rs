//! `POST /api/v1/hooks/claude-code`: Claude Code posts a hook's own JSON input here (hooks of
//! `type: "http"`). Success is a `204` with an empty body, because Claude Code would inject any
//! text it received into the model's context. What an event means is in `shared::domain::hooks`.

use std::sync::Arc;

use aws_config::SdkConfig;
use lambda_http::{Body, Error, Request, Response};
use shared::App;
use shared::app::FromEnv;
use shared::app::hooks::record;
use shared::app::live::Broadcaster;
use shared::config::{ConfigError, Env, RequestConfig};
use shared::domain::hooks::HookEvent;

/// What this function builds once per container.
pub type State = HookApp;

pub const ROUTE: &str = "POST /api/v1/hooks/claude-code";

/// The single-metric state plus the hook's own body limit (`HOOK_MAX_BODY_BYTES`) and how
/// much content it keeps by default (`HOOK_CONTENT`: `metrics`, the default, or `redacted`;
/// an organization's `hook_content` override wins).
pub struct HookApp {
    pub app: Arc<App>,
    pub max_body_bytes: usize,
}

impl HookApp {
    /// The hook's settings around an `app` built already (the local front shares one).
    pub fn around(app: Arc<App>, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            app,
            max_body_bytes: RequestConfig::from_env(env)?.max_hook_body_bytes,
        })
    }
}

impl FromEnv for HookApp {
    const PUBLISHES_LIVE: bool = true;
    const API_KEYS: shared::app::KeyAccess = shared::app::KeyAccess::Read;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Self::around(Arc::new(App::from_env(env, aws)?), env)
    }

    fn live(&self) -> Option<Arc<Broadcaster>> {
        self.app.live.clone()
    }
}

pub async fn handle(state: &HookApp, req: Request) -> Result<Response<Body>, Error> {
    let app = &state.app;
    Ok(app
        .api
        .handle_json_quietly(&req, ROUTE, state.max_body_bytes, async |caller, body| {
            let content = app.api.settings_of(&caller.org).content.hook_content;
            let event = HookEvent::from_json(&body, &caller.user, content)?;
            Ok(record(app.store.as_ref(), &caller, &event).await?)
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use shared::domain::hooks::HookContent;
    use shared::domain::ids::OrgId;
    use shared::domain::metrics::CommandStatus;
    use shared::domain::sessions::SessionStatus;
    use shared::fakes::{a_working_service, error_fields, fixture, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/claude-code-hook.json");

    /// A hook endpoint whose organizations opted into (redacted) content.
    fn hook_app() -> (HookApp, Arc<shared::fakes::store::InMemoryStore>) {
        hook_app_keeping(a_working_service(), HookContent::Redacted)
    }

    fn hook_app_keeping(
        given: shared::fakes::Given,
        content: HookContent,
    ) -> (HookApp, Arc<shared::fakes::store::InMemoryStore>) {
        // The stage's default, as the organization's own setting.
        given.settings.set(
            &demo(),
            json!({"content": {"hook_content": shared::domain::validation::Choice::as_str(content)}}),
        );
        let state = HookApp {
            app: Arc::new(given.app),
            max_body_bytes: 1 << 20,
        };
        (state, given.store)
    }

    /// Every known event of a session (and one unknown), as `user` of `demo`.
    async fn send_whole_session(state: &HookApp, user: &str) {
        let (ending, rest) = shared::domain::hooks::KNOWN_EVENTS.split_last().unwrap();
        for name in rest.iter().chain(&["TeammateIdle", ending]) {
            let response = handle(state, request(EVENT, "demo", user, &fixture_of(name)))
                .await
                .unwrap();
            assert_eq!(response.status(), 204, "{name}");
        }
    }

    /// Everything the store holds for `demo`, as text.
    fn stored_text(store: &shared::fakes::store::InMemoryStore) -> String {
        let org = demo();
        format!(
            "{:?} {:?} {:?} {:?}",
            store.hook_events(&org),
            store.command_executions(&org),
            store.agent_interactions(&org),
            store.sessions(&org)
        )
    }

    #[tokio::test]
    async fn by_default_nothing_a_developer_typed_or_ran_is_stored() {
        // GIVEN the stage's default (metrics only)
        let (state, store) = hook_app_keeping(a_working_service(), HookContent::default());
        // WHEN a whole session arrives
        send_whole_session(&state, "dev-user").await;
        // THEN no prompt, command line, tool output, path or error text is stored anywhere
        let text = stored_text(&store);
        for content in [
            "login form",
            "GITHUB_TOKEN",
            "npm test",
            "s3cr3t",
            "PASS src",
            "/home/dev",
            "exit code 1",
            "Run the unit tests",
        ] {
            assert!(!text.contains(content), "{content:?} was stored");
        }
        // AND the metrics are all there, with content-free shapes
        let commands = store.command_executions(&demo());
        assert_eq!(commands.len(), 2);
        let bash = commands.iter().find(|c| c.status == CommandStatus::Success).unwrap();
        assert_eq!(bash.command_args, json!({"program": "export"}));
        let failed = commands.iter().find(|c| c.status == CommandStatus::Error).unwrap();
        assert!(failed.error_message.as_deref().unwrap().contains("content not kept"));
        assert_eq!(store.agent_interactions(&demo()).len(), 1);
        assert_eq!(store.sessions(&demo())[0].commands_executed, 2);
        assert_eq!(store.hook_events(&demo()).len(), 12);
    }

    #[tokio::test]
    async fn an_organization_that_opts_in_keeps_redacted_content_whatever_the_stage_default() {
        // GIVEN a stage keeping metrics only, and an organization that opted into content
        let given = a_working_service();
        let (state, store) = hook_app_keeping(given, HookContent::Redacted);
        // WHEN it sends a tool use
        send(&state, &fixture_of("PostToolUse")).await;
        // THEN its input is kept, redacted
        let commands = store.command_executions(&demo());
        let command = commands[0].command_args["command"].as_str().unwrap();
        assert!(command.contains("npm test") && !command.contains("ghp_"), "{command}");
    }

    #[tokio::test]
    async fn two_users_whose_claude_sessions_share_an_id_never_touch_each_other() {
        let (state, store) = hook_app();
        // GIVEN alice's whole session, and bob starting one with the same Claude session_id
        send_whole_session(&state, "alice").await;
        for name in ["SessionStart", "PreToolUse", "PostToolUse"] {
            let response = handle(&state, request(EVENT, "demo", "bob", &fixture_of(name)))
                .await
                .unwrap();
            assert_eq!(response.status(), 204);
        }
        // THEN each has a session of their own, with their own counts and status
        let sessions = store.sessions(&demo());
        assert_eq!(sessions.len(), 2);
        let mut counts: Vec<_> = sessions.iter().map(|s| (s.commands_executed, s.status)).collect();
        counts.sort_by_key(|(n, _)| *n);
        assert_eq!(counts, [(1, SessionStatus::Active), (2, SessionStatus::Completed)]);
        // AND bob's tool use is his own record, not taken as a repeat of alice's
        assert_eq!(store.command_executions(&demo()).len(), 3);
        assert_eq!(store.hook_events(&demo()).len(), 15);
    }

    fn fixture_of(name: &str) -> Value {
        let path = format!("{}/../../events/claude-code/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    async fn send(state: &HookApp, body: &Value) -> (u16, Vec<u8>) {
        let response = handle(state, request(EVENT, "demo", "dev-user", body)).await.unwrap();
        (response.status().as_u16(), response.body().to_vec())
    }

    fn demo() -> OrgId {
        OrgId::parse("demo").unwrap()
    }

    #[tokio::test]
    async fn the_fixture_is_answered_with_an_empty_204() {
        let (state, store) = hook_app();
        let response = handle(&state, fixture(EVENT)).await.unwrap();
        assert_eq!(response.status(), 204);
        assert!(response.body().is_empty(), "any text would reach Claude's context");
        assert!(response.headers().contains_key("x-ratelimit-remaining"));
        assert_eq!(store.command_executions(&demo()).len(), 1);
    }

    #[tokio::test]
    async fn a_whole_session_becomes_a_session_commands_and_an_agent_interaction() {
        let (state, store) = hook_app();
        // Every known event, and one this version does not know before the session ends.
        let (ending, rest) = shared::domain::hooks::KNOWN_EVENTS.split_last().unwrap();
        for name in rest.iter().chain(&["TeammateIdle", ending]) {
            let (status, body) = send(&state, &fixture_of(name)).await;
            assert_eq!((status, body.len()), (204, 0), "{name}");
        }
        let commands = store.command_executions(&demo());
        assert_eq!(commands.len(), 2);
        let bash = commands.iter().find(|c| c.status == CommandStatus::Success).unwrap();
        assert_eq!(bash.command_name, "Bash");
        assert!(!bash.command_args.to_string().contains("ghp_"), "{}", bash.command_args);
        let failed = commands.iter().find(|c| c.status == CommandStatus::Error).unwrap();
        assert!(failed.error_message.as_deref().unwrap().contains("exit code 1"));
        let agents = store.agent_interactions(&demo());
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].agent_name, "code-reviewer");
        let sessions = store.sessions(&demo());
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].status, SessionStatus::Completed);
        assert_eq!(sessions[0].commands_executed, 2);
        assert_eq!(sessions[0].agents_used, ["code-reviewer"]);
        let kept = store.hook_events(&demo());
        assert_eq!(kept.len(), 12, "every event kept, the unknown one too");
        assert!(
            kept.iter()
                .any(|k| k.event_name == "TeammateIdle" && k.payload["teammate"]["name"] == "reviewer")
        );
    }

    /// What Claude Code 2.1.328 posted in print mode (no `SessionStart`), in order.
    fn recorded(name: &str) -> Value {
        let path = format!(
            "{}/../../events/claude-code/2.1.328/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_real_clis_print_mode_session_is_recorded_with_the_tools_own_duration() {
        let (state, store) = hook_app_keeping(a_working_service(), HookContent::Metrics);
        // GIVEN the real CLI's events of a print-mode run: no SessionStart
        for name in ["UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "SessionEnd"] {
            assert_eq!(send(&state, &recorded(name)).await.0, 204, "{name}");
        }
        // THEN its first event started the session, and SessionEnd completed it
        let sessions = store.sessions(&demo());
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].status, SessionStatus::Completed);
        assert_eq!(sessions[0].commands_executed, 1);
        // AND the Bash command is timed by the tool's own duration_ms, not the arrival gap
        let commands = store.command_executions(&demo());
        assert_eq!(commands.len(), 1);
        assert_eq!(
            (commands[0].command_name.as_str(), commands[0].execution_time_ms),
            ("Bash", 32.0)
        );
        assert_eq!(commands[0].command_args, json!({"program": "echo"}));
    }

    #[tokio::test]
    async fn an_event_sent_twice_is_stored_once() {
        let (state, store) = hook_app();
        for _ in 0..2 {
            for name in ["SessionStart", "PreToolUse", "PostToolUse", "UserPromptSubmit"] {
                assert_eq!(send(&state, &fixture_of(name)).await.0, 204);
            }
        }
        assert_eq!(store.hook_events(&demo()).len(), 4);
        assert_eq!(store.command_executions(&demo()).len(), 1);
        assert_eq!(store.sessions(&demo())[0].commands_executed, 1);
    }

    #[tokio::test]
    async fn only_what_cannot_be_keyed_is_refused_by_name() {
        let (state, _) = hook_app();
        let (status, body) = send(&state, &json!({"hook_event_name": "Stop", "anything": 1})).await;
        assert_eq!(status, 400);
        assert_eq!(error_fields(&serde_json::from_slice(&body).unwrap()), ["session_id"]);
        let (status, body) = send(&state, &json!({"session_id": "s", "hook_event_name": 7})).await;
        assert_eq!(status, 400);
        assert_eq!(
            error_fields(&serde_json::from_slice(&body).unwrap()),
            ["hook_event_name"]
        );
        let (status, _) = send(&state, &json!(["not", "an", "object"])).await;
        assert_eq!(status, 400);
    }
}
