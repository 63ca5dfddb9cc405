//! Claude Code hook events (`POST /api/v1/hooks/claude-code`), turned into our metrics.
//!
//! Claude Code posts each hook's own JSON input. Every event is kept in the tenant's
//! `hook_events`, known or not, once per deterministic id — by default only its metadata and a
//! content-free shape of the tool's input, or its whole input redacted when the organization
//! opted into content (see [`content`]); then:
//! - any event starts its session if it is new (id derived from the caller and Claude's
//!   `session_id`) and marks activity; `SessionEnd` completes it;
//! - `PostToolUse` / `PostToolUseFailure` store a command execution: the tool's name, its shape
//!   (or, with content, its redacted input) as `command_args`, the time since the `PreToolUse` of
//!   the same `tool_use_id` as `execution_time_ms` (0 when that was not received), and its status
//!   from the outcome; the session's `commands_executed` is its count of tool uses;
//! - `SubagentStart` lists the agent on the session; `SubagentStop` stores an agent interaction
//!   (`delegation`, timed from its `SubagentStart`; hooks carry no token counts, so they are 0).
//!
//! Ids are UUID v5 of the caller and the hook data, so an event that fires (or is sent) twice
//! stores once, and two users whose Claude sessions share an id never touch each other's
//! records.

pub mod content;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub use content::HookContent;

use crate::domain::identified::{Identified, Identify};
use crate::domain::ids::UserId;
use crate::domain::metrics::{AgentInteraction, CommandExecution};
use crate::domain::sessions::{SessionActivity, SessionStart};
use crate::domain::validation::FieldError;

/// The events this version interprets, in the order Claude Code sends them in a session; any
/// other event is kept as it is.
pub const KNOWN_EVENTS: [&str; 11] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "SubagentStart",
    "SubagentStop",
    "Notification",
    "PreCompact",
    "Stop",
    "SessionEnd",
];

/// The namespace of every id derived from hook data.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d0f5a3c_6a53_4e57_9a55_3c1f0d2b7e10);
/// Longest accepted `session_id`, `hook_event_name`, `tool_use_id` or `agent_id`.
pub const MAX_ID_CHARS: usize = 200;
const MAX_COMMAND_NAME_CHARS: usize = 100;
const MAX_EXECUTION_MS: i64 = 300_000;
const MAX_AGENT_MS: i64 = 86_400_000;

/// A Claude Code hook event to keep: its deterministic id, where it belongs, and its payload
/// (already redacted and truncated). `partner` is the id of the event that opened it (the
/// `PreToolUse` of a `PostToolUse`, the `SubagentStart` of a `SubagentStop`).
#[derive(Debug, Clone)]
pub struct KeptHookEvent<'a> {
    pub id: Uuid,
    pub session_id: &'a str,
    pub event_name: &'a str,
    pub correlation_id: Option<&'a str>,
    pub payload: &'a Value,
    pub partner: Option<Uuid>,
}

/// What the store knows once a hook event is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HookReceipt {
    /// When the event was first received (a repeat keeps the first time).
    pub received_at: DateTime<Utc>,
    /// When its partner was received, if it was.
    pub partner_received_at: Option<DateTime<Utc>>,
}

/// Hook events whose arrival counts as one tool use of the session.
pub const TOOL_USE_EVENTS: [&str; 2] = ["PostToolUse", "PostToolUseFailure"];

/// One hook event, checked and made safe to store.
#[derive(Debug, Clone)]
pub struct HookEvent {
    pub id: Uuid,
    pub event_name: String,
    pub session_id: String,
    /// `tool_use_id` of tool events, `agent_id` of sub-agent events.
    pub correlation_id: Option<String>,
    /// What is kept of the input under the organization's [`HookContent`] mode.
    pub payload: Value,
    /// How much content the payload holds.
    pub content: HookContent,
    /// The user who sent it: part of every id derived from it.
    owner: String,
}

/// Fields of an error kept when content is not: says that it failed, not what it said.
const CONTENT_FREE_ERROR: &str = "tool use failed (content not kept)";

impl HookEvent {
    /// Refuses only what cannot be keyed: a non-object body, a missing or malformed
    /// `session_id` or `hook_event_name`, a malformed `tool_use_id` or `agent_id`.
    pub fn from_json(raw: &Value, user: &UserId, content: HookContent) -> Result<Self, Vec<FieldError>> {
        let Value::Object(map) = raw else {
            return Err(vec![FieldError::new("body", "Must be a JSON object")]);
        };
        let mut errors = vec![];
        let session_id = id_field(map, "session_id", true, &mut errors);
        let event_name = id_field(map, "hook_event_name", true, &mut errors);
        let tool_use_id = id_field(map, "tool_use_id", false, &mut errors);
        let agent_id = id_field(map, "agent_id", false, &mut errors);
        let (Some(session_id), Some(event_name)) = (session_id, event_name) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let correlation_id = match event_name.as_str() {
            "PreToolUse" | "PostToolUse" | "PostToolUseFailure" => tool_use_id,
            "SubagentStart" | "SubagentStop" => agent_id,
            _ => None,
        };
        // Events without a correlation id are told apart by their whole content (hashed, not kept).
        let discriminator = correlation_id.clone().unwrap_or_else(|| raw.to_string());
        let owner = user.as_str().to_owned();
        Ok(Self {
            id: derive(&[&owner, &session_id, &event_name, &discriminator]),
            payload: content::kept_payload(map, content),
            content,
            event_name,
            session_id,
            correlation_id,
            owner,
        })
    }

    /// Our id of Claude's session, for this user.
    pub fn session_key(&self) -> Uuid {
        session_key_of(&self.owner, &self.session_id)
    }

    /// The id of the event that opened this one, for events that close a pair.
    pub fn partner(&self) -> Option<Uuid> {
        let opener = match self.event_name.as_str() {
            "PostToolUse" | "PostToolUseFailure" => "PreToolUse",
            "SubagentStop" => "SubagentStart",
            _ => return None,
        };
        Some(derive(&[
            &self.owner,
            &self.session_id,
            opener,
            self.correlation_id.as_deref()?,
        ]))
    }

    /// The id of a metric this event produces (`what` is `command` or `agent`).
    fn metric_id(&self, what: &str) -> Uuid {
        let correlation = self.correlation_id.clone().unwrap_or(self.id.to_string());
        derive(&[&self.owner, &self.session_id, what, &correlation])
    }

    pub fn kept(&self) -> KeptHookEvent<'_> {
        KeptHookEvent {
            id: self.id,
            session_id: &self.session_id,
            event_name: &self.event_name,
            correlation_id: self.correlation_id.as_deref(),
            payload: &self.payload,
            partner: self.partner(),
        }
    }

    fn field(&self, name: &str) -> Option<&Value> {
        self.payload.get(name).filter(|v| !v.is_null())
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Value::as_str)
    }

    fn is_tool_use(&self) -> bool {
        TOOL_USE_EVENTS.contains(&self.event_name.as_str())
    }

    /// The session as started by its first event.
    pub fn session_start(&self, received_at: DateTime<Utc>) -> Identified<SessionStart> {
        let mut context = Map::new();
        context.insert("client".into(), json!("claude-code"));
        context.insert("claude_session_id".into(), json!(self.session_id));
        for (from, to) in [
            ("cwd", "cwd"),
            ("transcript_path", "transcript_path"),
            ("model", "model"),
            ("source", "start_source"),
        ] {
            // Paths on the developer's machine are content (kept only in the redacted payload).
            if let Some(value) = self.field(from) {
                context.insert(to.into(), value.clone());
            }
        }
        SessionStart {
            id: Some(self.session_key()),
            session_start: Some(received_at),
            context: Value::Object(context),
        }
        .identified()
    }

    /// What this event adds to its session.
    pub fn activity(&self) -> SessionActivity {
        let agent = self
            .agent_type()
            .filter(|_| self.event_name.starts_with("Subagent"))
            .map(|a| vec![a]);
        let mut context = json!({"last_event": self.event_name});
        if self.event_name == "SessionEnd"
            && let Some(reason) = self.field("reason")
        {
            context["end_reason"] = reason.clone();
        }
        SessionActivity {
            commands_executed: None,
            tool_uses_of: Some(self.session_id.clone()),
            agents_used: agent,
            context: Some(context),
        }
    }

    pub fn ends_session(&self) -> bool {
        self.event_name == "SessionEnd"
    }

    /// The command execution of a finished tool use.
    pub fn command_execution(&self, receipt: &HookReceipt) -> Option<Identified<CommandExecution>> {
        if !self.is_tool_use() {
            return None;
        }
        let (status, error) = self.outcome();
        let args = match (self.field("tool_input"), self.field("tool_shape")) {
            (Some(Value::Object(input)), _) => Value::Object(input.clone()),
            (Some(other), _) => json!({ "input": other }),
            (None, Some(shape)) => shape.clone(),
            (None, None) => json!({}),
        };
        let body = json!({
            "id": self.metric_id("command"),
            "command_name": command_name(self.text("tool_name").unwrap_or("")),
            "execution_time_ms": self.duration_ms(receipt, MAX_EXECUTION_MS),
            "status": status,
            "command_args": args,
            "error_message": error,
            "context": self.metric_context(),
            "timestamp": receipt.received_at.to_rfc3339(),
        });
        checked(CommandExecution::from_json(&body, ""), &self.event_name).map(Identify::identified)
    }

    /// The agent interaction of a finished sub-agent.
    pub fn agent_interaction(&self, receipt: &HookReceipt) -> Option<Identified<AgentInteraction>> {
        if self.event_name != "SubagentStop" {
            return None;
        }
        let name = self.agent_type().unwrap_or_else(|| "subagent".into());
        let body = json!({
            "id": self.metric_id("agent"),
            "agent_name": name,
            "interaction_type": "delegation",
            "input_tokens": 0,
            "output_tokens": 0,
            "processing_time_ms": self.duration_ms(receipt, MAX_AGENT_MS),
            "success": true,
            "metadata": self.metric_context(),
            "timestamp": receipt.received_at.to_rfc3339(),
        });
        checked(AgentInteraction::from_json(&body, ""), &self.event_name).map(Identify::identified)
    }

    /// The sub-agent's type, when the event names one: an agent name that the metric's own
    /// rules accept, so the derived metric is never refused.
    fn agent_type(&self) -> Option<String> {
        self.text("agent_type")
            .and_then(|name| text_a_metric_accepts(name, crate::domain::metrics::MAX_AGENT_NAME_CHARS))
    }

    /// `success`, `error` or `cancelled`, and the error text, from the event and the tool's
    /// response (its flags only, when content is not kept).
    fn outcome(&self) -> (&'static str, Option<String>) {
        let with_content = self.content == HookContent::Redacted;
        // Within the metric's own rules, so the derived metric is never refused: an empty or
        // blank error (`"error": ""`) is an error whose text was not sent.
        let error_text = |text: Option<String>| {
            text.filter(|_| with_content)
                .and_then(|text| text_a_metric_accepts(&text, crate::domain::validation::MAX_TEXT_CHARS))
                .unwrap_or_else(|| CONTENT_FREE_ERROR.into())
        };
        if self.event_name == "PostToolUseFailure" {
            let error = self.field("error").map(|error| match error {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            });
            let interrupted = self.field("is_interrupt").and_then(Value::as_bool) == Some(true);
            return (if interrupted { "cancelled" } else { "error" }, Some(error_text(error)));
        }
        let response = self.field("tool_response").or_else(|| self.field("tool_outcome"));
        let flag = |name: &str| response.and_then(|r| r.get(name)).and_then(Value::as_bool);
        if flag("interrupted") == Some(true) {
            ("cancelled", None)
        } else if flag("is_error") == Some(true) || flag("success") == Some(false) {
            let error = response
                .and_then(|r| r.get("error").or_else(|| r.get("stderr")))
                .and_then(Value::as_str)
                .map(str::to_owned);
            ("error", Some(error_text(error)))
        } else {
            ("success", None)
        }
    }

    /// Milliseconds since the opening event (or the event's own `duration_ms`), within `max`.
    fn duration_ms(&self, receipt: &HookReceipt, max: i64) -> i64 {
        let reported = self.field("duration_ms").and_then(Value::as_f64).map(|ms| ms as i64);
        let timed = receipt
            .partner_received_at
            .map(|opened| (receipt.received_at - opened).num_milliseconds());
        reported.or(timed).unwrap_or(0).clamp(0, max)
    }

    fn metric_context(&self) -> Value {
        let mut context = Map::new();
        context.insert("client".into(), json!("claude-code"));
        context.insert("claude_session_id".into(), json!(self.session_id));
        context.insert("hook_event_name".into(), json!(self.event_name));
        for name in [
            "tool_use_id",
            "agent_id",
            "cwd",
            "permission_mode",
            "agent_transcript_path",
        ] {
            if let Some(value) = self.field(name) {
                context.insert(name.into(), value.clone());
            }
        }
        Value::Object(context)
    }
}

/// Our id of Claude's session `claude_session_id` for `user`: hook events and OTLP exports
/// derive it alike, so both land on the same session.
pub fn session_key(user: &UserId, claude_session_id: &str) -> Uuid {
    session_key_of(user.as_str(), claude_session_id)
}

fn session_key_of(owner: &str, claude_session_id: &str) -> Uuid {
    derive(&[owner, "session", claude_session_id])
}

/// A deterministic id from `parts` (the first is always the user).
pub(crate) fn derive(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\n").as_bytes())
}

/// What a Claude Code id (`session_id`, `tool_use_id`, ...) must be, wherever it arrives.
pub const CLAUDE_ID_RULE: &str = "Must be 1 to 200 characters without control or invisible formatting characters";

/// Whether `id` follows [`CLAUDE_ID_RULE`].
pub fn is_claude_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS && !id.chars().any(crate::domain::ids::is_invisible)
}

fn id_field(map: &Map<String, Value>, name: &str, required: bool, errors: &mut Vec<FieldError>) -> Option<String> {
    match map.get(name) {
        None | Some(Value::Null) if !required => None,
        None | Some(Value::Null) => {
            errors.push(FieldError::new(name, "Required"));
            None
        }
        Some(Value::String(s)) if is_claude_id(s) => Some(s.clone()),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(name, CLAUDE_ID_RULE));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(name, "Must be a string"));
            None
        }
    }
}

/// A tool name as a command name: `^[a-zA-Z0-9_-]+$`, at most 100 characters.
fn command_name(tool: &str) -> String {
    let name: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_COMMAND_NAME_CHARS)
        .collect();
    if name.is_empty() { "unknown_tool".into() } else { name }
}

/// `text` cut to `max_chars`, unless nothing would be left of it once sanitised (as free text
/// is by the metrics' rules, which would refuse it).
fn text_a_metric_accepts(text: &str, max_chars: usize) -> Option<String> {
    let cut: String = text.chars().take(max_chars).collect();
    let kept = !crate::domain::sanitize::sanitize_text(&cut).trim().is_empty();
    kept.then_some(cut)
}

/// A derived metric that fails our own validation is a bug: logged, not stored.
fn checked<T>(metric: Result<T, Vec<FieldError>>, event: &str) -> Option<T> {
    metric
        .inspect_err(|errors| tracing::error!(event, ?errors, "a metric derived from a hook failed validation"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("alice").unwrap()
    }

    fn receipt() -> HookReceipt {
        HookReceipt {
            received_at: Utc::now(),
            partner_received_at: None,
        }
    }

    fn command(extra: Value) -> CommandExecution {
        let mut body = json!({"session_id": "s", "hook_event_name": "PostToolUse", "tool_use_id": "t",
                              "tool_name": "Bash", "tool_input": {"command": "ls"}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        HookEvent::from_json(&body, &user(), HookContent::Redacted)
            .unwrap()
            .command_execution(&receipt())
            .unwrap()
            .record
    }

    #[test]
    fn a_tool_use_gets_its_status_from_the_outcome() {
        use crate::domain::metrics::CommandStatus;
        assert_eq!(
            command(json!({"tool_response": {"stdout": "ok"}})).status,
            CommandStatus::Success
        );
        let failed = command(json!({"tool_response": {"is_error": true, "error": "no such file"}}));
        assert_eq!(failed.status, CommandStatus::Error);
        assert_eq!(failed.error_message.as_deref(), Some("no such file"));
        assert_eq!(
            command(json!({"tool_response": {"success": false}})).status,
            CommandStatus::Error
        );
        assert_eq!(
            command(json!({"tool_response": {"interrupted": true}})).status,
            CommandStatus::Cancelled
        );
        let failure = command(json!({"hook_event_name": "PostToolUseFailure", "error": "exit 2"}));
        assert_eq!(
            (failure.status, failure.error_message.as_deref()),
            (CommandStatus::Error, Some("exit 2"))
        );
        let interrupted = command(json!({"hook_event_name": "PostToolUseFailure", "is_interrupt": true}));
        assert_eq!(interrupted.status, CommandStatus::Cancelled);
    }

    #[test]
    fn blank_errors_and_agent_types_still_give_their_metric() {
        use crate::domain::metrics::CommandStatus;
        // GIVEN content kept, and errors with no text left once sanitised
        for blank in [
            json!({"hook_event_name": "PostToolUseFailure", "error": ""}),
            json!({"hook_event_name": "PostToolUseFailure", "error": "  \n "}),
            json!({"hook_event_name": "PostToolUseFailure", "error": "<script>x</script>"}),
            json!({"tool_response": {"is_error": true, "stderr": ""}}),
        ] {
            // WHEN the tool use is derived THEN it is a failed command whose text was not sent
            let failed = command(blank.clone());
            assert_eq!(failed.status, CommandStatus::Error, "{blank}");
            assert_eq!(failed.error_message.as_deref(), Some(CONTENT_FREE_ERROR), "{blank}");
        }
        // AND a sub-agent without a usable type is a `subagent`, not a dropped interaction
        for agent_type in ["", "   ", "<b></b>"] {
            let body = json!({"session_id": "s", "hook_event_name": "SubagentStop", "agent_id": "a1",
                              "agent_type": agent_type});
            let event = HookEvent::from_json(&body, &user(), HookContent::Redacted).unwrap();
            let interaction = event.agent_interaction(&receipt()).expect("derived").record;
            assert_eq!(interaction.agent_name, "subagent", "{agent_type:?}");
            assert_eq!(event.activity().agents_used, None, "{agent_type:?}");
        }
    }

    #[test]
    fn tool_names_become_valid_command_names() {
        assert_eq!(
            command(json!({"tool_name": "mcp__github__create_issue"})).command_name,
            "mcp__github__create_issue"
        );
        assert_eq!(
            command(json!({"tool_name": "Web Fetch/v2"})).command_name,
            "Web_Fetch_v2"
        );
        assert_eq!(command(json!({"tool_name": ""})).command_name, "unknown_tool");
    }

    #[test]
    fn a_reported_duration_wins_and_every_duration_is_bounded() {
        assert_eq!(command(json!({"duration_ms": 1234})).execution_time_ms, 1234.0);
        assert_eq!(command(json!({"duration_ms": 9e9})).execution_time_ms, 300_000.0);
        let event = HookEvent::from_json(
            &json!({"session_id": "s", "hook_event_name": "PostToolUse", "tool_use_id": "t", "tool_name": "Read"}),
            &user(),
            HookContent::Redacted,
        )
        .unwrap();
        let now = Utc::now();
        let timed = HookReceipt {
            received_at: now,
            partner_received_at: Some(now - chrono::Duration::milliseconds(250)),
        };
        assert_eq!(event.command_execution(&timed).unwrap().execution_time_ms, 250.0);
    }

    #[test]
    fn the_same_event_has_the_same_id_and_pairs_share_a_correlation() {
        let pre = json!({"session_id": "s", "hook_event_name": "PreToolUse", "tool_use_id": "t"});
        let post = json!({"session_id": "s", "hook_event_name": "PostToolUse", "tool_use_id": "t"});
        let (pre, post) = (
            HookEvent::from_json(&pre, &user(), HookContent::Redacted).unwrap(),
            HookEvent::from_json(&post, &user(), HookContent::Redacted).unwrap(),
        );
        assert_eq!(post.partner(), Some(pre.id));
        assert_eq!(pre.session_key(), post.session_key());
        let prompt = json!({"session_id": "s", "hook_event_name": "UserPromptSubmit", "prompt": "hi"});
        assert_eq!(
            HookEvent::from_json(&prompt, &user(), HookContent::Redacted)
                .unwrap()
                .id,
            HookEvent::from_json(&prompt, &user(), HookContent::Redacted)
                .unwrap()
                .id
        );
        let other = json!({"session_id": "s", "hook_event_name": "UserPromptSubmit", "prompt": "bye"});
        assert_ne!(
            HookEvent::from_json(&prompt, &user(), HookContent::Redacted)
                .unwrap()
                .id,
            HookEvent::from_json(&other, &user(), HookContent::Redacted).unwrap().id
        );
    }
}
