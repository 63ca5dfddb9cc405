//! What a Claude Code hook event keeps of what a developer typed or ran.
//!
//! Privacy first: by default ([`HookContent::Metrics`]) an event keeps only what the metrics
//! need — identifiers, the tool's name, flags, durations, the agent type, the model — and a
//! content-free *shape* of the tool's input (the program a Bash command ran, the extension of an
//! edited file, the MCP server and tool). Prompts, tool inputs and tool responses are dropped.
//! An organization that opts into [`HookContent::Redacted`] keeps the whole input, sanitised
//! first (so markup or a NUL inside a secret cannot hide it from the redaction) and then
//! redacted and truncated.
//!
//! May use: `redact`, `sanitize`, `validation` (for [`Choice`]); nothing of HTTP or storage.

use std::str::FromStr;

use serde_json::{Map, Value, json};

use crate::domain::redact::redact_and_truncate;
use crate::domain::sanitize::sanitize_value;
use crate::domain::validation::Choice;

/// How much of a hook's content is kept (`HOOK_CONTENT`, per stage, overridable per
/// organization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HookContent {
    /// Only what the metrics need, and content-free shapes (the default).
    #[default]
    Metrics,
    /// The whole input, sanitised, redacted and truncated.
    Redacted,
}

impl Choice for HookContent {
    const ALL: &'static [(&'static str, Self)] = &[("metrics", Self::Metrics), ("redacted", Self::Redacted)];
}

crate::choice_serde!(HookContent);

impl FromStr for HookContent {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw).ok_or_else(Self::expected)
    }
}

/// Fields of a hook input that carry no content: identifiers, names, flags, durations.
const METADATA_FIELDS: &[&str] = &[
    "session_id",
    "hook_event_name",
    "tool_use_id",
    "tool_name",
    "agent_id",
    "agent_type",
    "model",
    "source",
    "reason",
    "trigger",
    "duration_ms",
    "is_interrupt",
    "permission_mode",
    "notification_type",
    "stop_hook_active",
];
/// Flags of a tool's response that say how it went, without what it said.
const OUTCOME_FLAGS: &[&str] = &["success", "is_error", "interrupted"];
/// Longest text kept from a metadata field.
const MAX_METADATA_CHARS: usize = 200;
/// Tools whose `file_path` (or `notebook_path`) names the file they work on.
const FILE_TOOLS: &[&str] = &["Read", "Write", "Edit", "MultiEdit", "NotebookEdit", "NotebookRead"];

/// The payload kept for a hook input `raw` under `mode`.
pub fn kept_payload(raw: &Map<String, Value>, mode: HookContent) -> Value {
    let mut kept = match mode {
        HookContent::Redacted => Value::Object(raw.clone()),
        HookContent::Metrics => metadata_only(raw),
    };
    // Sanitise first: removing markup after redacting could join the pieces of a secret again.
    sanitize_value(&mut kept);
    redact_and_truncate(&kept)
}

/// The metadata fields of `raw` (scalars only), the tool's shape, its outcome flags and the
/// length of a prompt.
fn metadata_only(raw: &Map<String, Value>) -> Value {
    let mut kept = Map::new();
    for name in METADATA_FIELDS {
        match raw.get(*name) {
            // Names and identifiers only: a value with spaces or punctuation may be content.
            Some(Value::String(text)) if is_identifier(text) => {
                kept.insert((*name).into(), json!(text));
            }
            Some(scalar @ (Value::Number(_) | Value::Bool(_))) => {
                kept.insert((*name).into(), scalar.clone());
            }
            _ => {}
        }
    }
    let tool = raw.get("tool_name").and_then(Value::as_str).unwrap_or_default();
    if !tool.is_empty() {
        kept.insert("tool_shape".into(), tool_shape(tool, raw.get("tool_input")));
    }
    if let Some(Value::Object(response)) = raw.get("tool_response") {
        let flags: Map<String, Value> = OUTCOME_FLAGS
            .iter()
            .filter_map(|flag| Some(((*flag).to_owned(), json!(response.get(*flag)?.as_bool()?))))
            .collect();
        kept.insert("tool_outcome".into(), Value::Object(flags));
    }
    if let Some(Value::String(prompt)) = raw.get("prompt") {
        kept.insert("prompt_chars".into(), json!(prompt.chars().count()));
    }
    Value::Object(kept)
}

/// A content-free description of a tool use: what kind of thing it touched, never what it
/// said. Bash: the program (`{"program": "cargo"}`); file tools: the extension
/// (`{"extension": "rs"}`); MCP tools (`mcp__server__tool`): the server and the tool; a
/// sub-agent (`Task`): its type. Anything else: `{}`.
pub fn tool_shape(tool: &str, input: Option<&Value>) -> Value {
    let field = |name: &str| input.and_then(|i| i.get(name)).and_then(Value::as_str);
    if let Some(rest) = tool.strip_prefix("mcp__") {
        let (server, name) = rest.split_once("__").unwrap_or((rest, ""));
        return json!({"mcp_server": word(server), "mcp_tool": word(name)});
    }
    match tool {
        "Bash" => field("command")
            .and_then(program)
            .map_or(json!({}), |p| json!({"program": p})),
        "Task" | "Agent" => field("subagent_type").map_or(json!({}), |t| json!({"subagent_type": word(t)})),
        _ if FILE_TOOLS.contains(&tool) => field("file_path")
            .or_else(|| field("notebook_path"))
            .and_then(extension)
            .map_or(json!({}), |e| json!({"extension": e})),
        _ => json!({}),
    }
}

/// The program a shell command line runs first, as the shell would split it (quotes
/// honoured): past `NAME=value` assignments and wrappers (`sudo`, `env`, `time`, …). A program
/// named by a path outside the system's program folders is a local script: its name may say
/// what the developer works on, so it is only `local-script`. `None` when the line cannot be
/// split (unbalanced quotes) or runs nothing.
pub fn program(command: &str) -> Option<String> {
    let words = shell_words::split(command).ok()?;
    let first = words
        .iter()
        .find(|word| !is_assignment(word) && !WRAPPERS.contains(&word.as_str()) && !word.starts_with('-'))?;
    let name = match first.rsplit_once('/') {
        Some((dir, name)) if SYSTEM_BIN_DIRS.contains(&dir) => name,
        Some(_) => return Some("local-script".into()),
        None => first.as_str(),
    };
    // Only a plain name is kept; anything else (spaces, quotes, markup) is not a program name.
    let kept = word(name);
    (!kept.is_empty() && kept.len() == name.len()).then_some(kept)
}

/// Commands that run the next word as the program.
const WRAPPERS: &[&str] = &[
    "sudo", "env", "time", "nohup", "exec", "command", "builtin", "nice", "doas",
];
/// Folders whose programs are the system's, not the developer's.
const SYSTEM_BIN_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/opt/homebrew/bin",
];

fn is_assignment(token: &str) -> bool {
    token
        .split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// The extension of a path's file name, lower case (`src/Main.RS` → `rs`); none for dot files
/// or extensions that are not a short word.
pub fn extension(path: &str) -> Option<String> {
    let file = path.rsplit(['/', '\\']).next()?;
    let (stem, ext) = file.rsplit_once('.')?;
    let ok = !stem.is_empty() && (1..=16).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| ext.to_ascii_lowercase())
}

/// Whether `text` is a name or an identifier (`claude-sonnet-4-5`, `toolu_01…`, a UUID,
/// `prompt_input_exit`): at most 200 characters of letters, digits and `._:@/+-`.
fn is_identifier(text: &str) -> bool {
    (1..=MAX_METADATA_CHARS).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@/+-".contains(&b))
}

/// At most 64 characters of `[A-Za-z0-9._+-]`: a name, never free text.
fn word(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn by_default_no_prompt_input_or_response_is_kept() {
        let raw = input(json!({
            "session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_use_id": "t",
            "cwd": "/home/alice/secret-project", "transcript_path": "/home/alice/.claude/t.jsonl",
            "tool_input": {"command": "PGPASSWORD=hunter2 psql -h db.internal -c 'select * from users'"},
            "tool_response": {"stdout": "alice,bob", "stderr": "", "interrupted": false, "is_error": false},
            "prompt": "the merger with ACME is secret",
        }));
        let kept = kept_payload(&raw, HookContent::Metrics);
        let text = kept.to_string();
        for content in [
            "hunter2",
            "db.internal",
            "select",
            "alice,bob",
            "ACME",
            "secret-project",
            "t.jsonl",
        ] {
            assert!(!text.contains(content), "{content} kept in {text}");
        }
        assert_eq!(kept["tool_shape"], json!({"program": "psql"}));
        assert_eq!(kept["tool_outcome"], json!({"interrupted": false, "is_error": false}));
        assert_eq!(kept["prompt_chars"], json!(30));
        assert_eq!(kept["tool_name"], "Bash");
        assert_eq!(kept["session_id"], "s");
    }

    #[test]
    fn metadata_that_is_not_a_name_is_not_kept() {
        let raw = input(
            json!({"session_id": "s", "hook_event_name": "Notification", "model": "claude-sonnet-4-5",
                               "reason": "the merger with ACME", "notification_type": "idle_prompt"}),
        );
        let kept = kept_payload(&raw, HookContent::Metrics);
        assert_eq!(kept["model"], "claude-sonnet-4-5");
        assert_eq!(kept["notification_type"], "idle_prompt");
        assert!(kept.get("reason").is_none(), "{kept}");
    }

    #[test]
    fn an_organization_that_opts_in_keeps_redacted_content() {
        let raw = input(
            json!({"session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash",
                               "tool_input": {"command": "PGPASSWORD=hunter2 psql -h db"}}),
        );
        let kept = kept_payload(&raw, HookContent::Redacted);
        assert_eq!(kept["tool_input"]["command"], "PGPASSWORD=[REDACTED] psql -h db");
    }

    #[test]
    fn markup_inside_a_secret_cannot_hide_it_from_redaction() {
        let raw = input(
            json!({"session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash",
                               "tool_input": {"command": "echo ghp_abcdefghij<b></b>klmnopqrstuvwxyz0123 AKIAABCD\u{0}EFGHIJKLMNOP"}}),
        );
        let text = kept_payload(&raw, HookContent::Redacted).to_string();
        assert!(!text.contains("klmnopqrstuvwxyz0123"), "{text}");
        assert!(!text.contains("EFGHIJKLMNOP"), "{text}");
    }

    #[test]
    fn shapes_name_what_was_touched_not_what_was_said() {
        let shape = |tool: &str, input: Value| tool_shape(tool, Some(&input));
        assert_eq!(
            shape("Bash", json!({"command": "FOO=1 /usr/bin/git push origin main"})),
            json!({"program": "git"})
        );
        assert_eq!(shape("Bash", json!({"command": "   "})), json!({}));
        assert_eq!(
            shape("Bash", json!({"command": "PGPASSWORD='correct horse' psql -h db"})),
            json!({"program": "psql"})
        );
        assert_eq!(
            shape("Bash", json!({"command": "MSG=\"Acquire ACME\" sudo -E ./x"})),
            json!({"program": "local-script"})
        );
        assert_eq!(
            shape("Bash", json!({"command": "./scripts/deploy_acme_merger.sh --now"})),
            json!({"program": "local-script"})
        );
        assert_eq!(shape("Bash", json!({"command": "echo 'unbalanced"})), json!({}));
        assert_eq!(shape("Bash", json!({"command": "'my program' --x"})), json!({}));
        assert_eq!(
            shape("Edit", json!({"file_path": "/repo/src/Main.RS"})),
            json!({"extension": "rs"})
        );
        assert_eq!(shape("Write", json!({"file_path": "/repo/.env"})), json!({}));
        assert_eq!(shape("Read", json!({"file_path": "/repo/Makefile"})), json!({}));
        assert_eq!(
            shape("mcp__github__create_issue", json!({"title": "secret"})),
            json!({"mcp_server": "github", "mcp_tool": "create_issue"})
        );
        assert_eq!(
            shape("Task", json!({"subagent_type": "code-reviewer", "prompt": "x"})),
            json!({"subagent_type": "code-reviewer"})
        );
        assert_eq!(shape("Grep", json!({"pattern": "password"})), json!({}));
    }

    #[test]
    fn the_mode_has_one_spelling() {
        assert_eq!("metrics".parse(), Ok(HookContent::Metrics));
        assert_eq!("redacted".parse(), Ok(HookContent::Redacted));
        assert!("everything".parse::<HookContent>().is_err());
        assert_eq!(HookContent::default(), HookContent::Metrics);
    }
}
