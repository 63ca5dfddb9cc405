//! Claude Code's own OpenTelemetry export (`POST /otlp/v1/metrics`, `POST /otlp/v1/logs`),
//! read into usage the store keeps (see [`crate::domain::usage`]).
//!
//! The messages are the maintained OTLP types of `opentelemetry-proto` (prost for protobuf,
//! serde for OTLP JSON). What is read, exactly as Claude Code 2.1.328 sends it (recorded under
//! `events/otlp/`):
//! - metrics ([`metrics`]): the `claude_code.*` sums, delta or cumulative; each point adds to a
//!   usage figure (tokens by `type`, cost, lines by `type`, commits, pull requests, active time)
//!   or is kept only (`session.count`, `code_edit_tool.decision`). Other metrics are counted and
//!   dropped, never refused.
//! - events ([`logs`]): `api_request` and `api_error` (counted as requests and errors),
//!   `tool_result`, `tool_decision`, `user_prompt` (its length; its text only when the
//!   organization keeps content, redacted). Other events are counted and dropped.
//!
//! Identity is the caller's, never an attribute: `user.id`, `user.email` and
//! `user.account_uuid` are labels. `session.id` is Claude's session id, turned into our session
//! id exactly as the hooks turn it ([`crate::domain::hooks::session_key`]).
//!
//! May import: `crate::domain`, `opentelemetry_proto` (pure message types), serde_json, uuid.

pub mod attributes;
pub mod logs;
pub mod metrics;

use uuid::Uuid;

use crate::domain::hooks::{CLAUDE_ID_RULE, derive, is_claude_id, session_key};
use crate::domain::ids::UserId;
use crate::domain::usage::SessionRef;
use attributes::Attributes;

/// Largest value a counter point may carry: no minute of one developer's work comes near it,
/// and sums of such values stay far from overflowing the aggregates.
pub const MAX_POINT_VALUE: f64 = 1e12;
/// Most distinct sessions one export may name (Claude Code exports one process: one session).
pub const MAX_SESSIONS_PER_EXPORT: usize = 100;
/// Most data points (or log records) one export may carry; the rest are refused.
pub const MAX_ITEMS_PER_EXPORT: usize = 10_000;
/// Longest model name kept.
pub const MAX_MODEL_CHARS: usize = 100;
/// Earliest time accepted (2020-01-01): a zero or tiny timestamp is a broken exporter.
const EARLIEST_NS: u64 = 1_577_836_800_000_000_000;
/// How far in the future a timestamp may be (clock skew).
const MAX_FUTURE_NS: u64 = 3_600_000_000_000;
/// How many refusal reasons are told back (the rest are counted).
const MAX_REASONS: usize = 5;

/// What could not be kept of an export: how many items, and the first few reasons.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refusals {
    pub count: u64,
    pub reasons: Vec<String>,
}

impl Refusals {
    fn refuse(&mut self, reason: impl Into<String>) {
        self.count += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason.into());
        }
    }

    /// The OTLP `partial_success.error_message`: empty when nothing was refused.
    pub fn message(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        format!("{} refused: {}", self.count, self.reasons.join("; "))
    }
}

/// What one export has kept so far: the ids (an item sent twice in one export is kept once, as
/// a retry would be) and the sessions (at most [`MAX_SESSIONS_PER_EXPORT`]).
#[derive(Default)]
struct Kept {
    ids: std::collections::HashSet<Uuid>,
    sessions: std::collections::HashSet<Uuid>,
}

impl Kept {
    /// `Ok(true)` to keep the item, `Ok(false)` for a repeat, `Err` when it would name one
    /// session too many.
    fn admit(&mut self, id: Uuid, session: Option<&SessionRef>) -> Result<bool, String> {
        if let Some(session) = session
            && !self.sessions.contains(&session.key)
        {
            if self.sessions.len() >= MAX_SESSIONS_PER_EXPORT {
                return Err(format!("more than {MAX_SESSIONS_PER_EXPORT} sessions in one export"));
            }
            self.sessions.insert(session.key);
        }
        Ok(self.ids.insert(id))
    }
}

/// Whether a timestamp is one a working exporter could have sent at `now_ns`.
fn plausible_time(time_ns: u64, now_ns: u64) -> bool {
    time_ns >= EARLIEST_NS && time_ns <= now_ns.saturating_add(MAX_FUTURE_NS)
}

/// The session an item belongs to, from its `session.id` (a too long id is refused).
fn session_of(attrs: Attributes<'_>, user: &UserId) -> Result<Option<SessionRef>, String> {
    let Some(id) = attrs.text("session.id").filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    if !is_claude_id(&id) {
        return Err(format!("session.id: {CLAUDE_ID_RULE}"));
    }
    Ok(Some(SessionRef {
        key: session_key(user, &id),
        claude_session_id: id,
    }))
}

fn model_of(attrs: Attributes<'_>) -> String {
    attrs
        .text("model")
        .map(|m| attributes::cut(&m, MAX_MODEL_CHARS))
        .unwrap_or_default()
}

/// A deterministic id of the caller's data (`parts` after the user).
fn id_of(user: &UserId, parts: &[&str]) -> Uuid {
    let mut all = vec![user.as_str()];
    all.extend_from_slice(parts);
    derive(&all)
}

/// Labels every kept point and event carries when present (never used for identity).
const COMMON_LABELS: &[&str] = &[
    "user.id",
    "user.email",
    "user.account_uuid",
    "organization.id",
    "terminal.type",
    "app.version",
    "anthropic.provider",
];
