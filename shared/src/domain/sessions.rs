//! The session lifecycle: start, update while active, end once; silent sessions are marked
//! abandoned by the reaper. A session belongs to its organization (its schema) and its user.
//!
//! Updates merge: `commands_executed` is the running total and never goes down, `agents_used`
//! gains the agents it did not list yet (in first-seen order, at most [`MAX_AGENTS`]), `context`
//! is merged key by key. An empty update is a heartbeat that only marks activity.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::validation::{Choice, FieldError, Fields, Text};

/// Most agents a session lists (per update and in total).
pub const MAX_AGENTS: usize = 100;
/// Largest plausible command count of one session.
pub const MAX_COMMANDS: i64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Completed,
    Abandoned,
}

crate::choice_serde!(SessionStatus);

impl Choice for SessionStatus {
    const ALL: &'static [(&'static str, Self)] = &[
        ("active", Self::Active),
        ("completed", Self::Completed),
        ("abandoned", Self::Abandoned),
    ];
}

/// `POST /metrics/session/start`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStart {
    pub id: Option<Uuid>,
    /// When the session began; the server's time when absent.
    pub session_start: Option<DateTime<Utc>>,
    pub context: Value,
}

impl SessionStart {
    pub const FIELDS: &'static [&'static str] = &["id", "session_start", "context"];

    pub fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, "", Self::FIELDS)?;
        let start = Self {
            id: f.uuid("id"),
            session_start: f.timestamp("session_start"),
            context: session_context(&mut f).unwrap_or_else(|| Value::Object(Default::default())),
        };
        f.finish()?;
        Ok(start)
    }
}

/// What an update or an end may change; every part is optional.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionActivity {
    pub commands_executed: Option<i64>,
    pub agents_used: Option<Vec<String>>,
    pub context: Option<Value>,
    /// A Claude Code session (its hook events' `session_id`) whose kept tool-use events of the
    /// same user `commands_executed` is raised to, counted as the session is written. A count
    /// taken as each event is kept cannot see the events kept beside it at the same moment
    /// (Claude Code runs tools in parallel); one taken later, by the write that starts last,
    /// sees them all. Never read from a request.
    pub tool_uses_of: Option<String>,
}

impl SessionActivity {
    const FIELDS: &'static [&'static str] = &["commands_executed", "agents_used", "context"];

    fn read(f: &mut Fields<'_>) -> Self {
        Self {
            commands_executed: f.integer("commands_executed", 0, MAX_COMMANDS),
            agents_used: f.text_list(
                "agents_used",
                MAX_AGENTS,
                Text::free(crate::domain::metrics::MAX_AGENT_NAME_CHARS),
            ),
            context: session_context(f),
            tool_uses_of: None,
        }
    }

    /// `PUT /metrics/session/{id}`.
    pub fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, "", Self::FIELDS)?;
        let activity = Self::read(&mut f);
        f.finish()?;
        Ok(activity)
    }
}

/// `POST /metrics/session/end`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEnd {
    pub session_id: Uuid,
    pub productivity_score: Option<f64>,
    pub activity: SessionActivity,
}

impl SessionEnd {
    pub const FIELDS: &'static [&'static str] = &[
        "session_id",
        "productivity_score",
        "commands_executed",
        "agents_used",
        "context",
    ];

    pub fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, "", Self::FIELDS)?;
        if f.is_absent("session_id") {
            f.error("session_id", "Required");
        }
        let end = Self {
            session_id: f.uuid("session_id").unwrap_or_default(),
            productivity_score: f.number("productivity_score", 0.0, 100.0),
            activity: SessionActivity::read(&mut f),
        };
        f.finish()?;
        Ok(end)
    }
}

/// A whole session carried by a batch (historical imports): written as given, with
/// `total_duration_ms` computed from its start and end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionImport {
    pub id: Option<Uuid>,
    pub session_start: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_end: Option<DateTime<Utc>>,
    pub commands_executed: i64,
    pub agents_used: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub productivity_score: Option<f64>,
    pub context: Value,
    pub status: SessionStatus,
}

impl SessionImport {
    pub const FIELDS: &'static [&'static str] = &[
        "id",
        "session_start",
        "session_end",
        "commands_executed",
        "agents_used",
        "productivity_score",
        "context",
        "status",
    ];

    /// Without `status`, a session with an end is `completed` and one without is `active`; a
    /// given status must agree with the end (only active sessions have none).
    pub fn from_json(value: &Value, at: &str) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, at, Self::FIELDS)?;
        let id = f.uuid("id");
        let session_start = f.required_timestamp("session_start");
        let session_end = f.timestamp("session_end");
        let status = match f.text("status", Text::name(20)) {
            None => session_end.map_or(SessionStatus::Active, |_| SessionStatus::Completed),
            Some(raw) => match serde_json::from_value::<SessionStatus>(Value::String(raw)) {
                Ok(status) => status,
                Err(_) => {
                    f.error("status", "Must be one of: active, completed, abandoned");
                    SessionStatus::Active
                }
            },
        };
        if f.is_valid("status") && (status == SessionStatus::Active) != session_end.is_none() {
            f.error(
                "session_end",
                "Required exactly when the status is completed or abandoned",
            );
        }
        if let Some(end) = session_end
            && f.is_valid("session_start")
            && end < session_start
        {
            f.error("session_end", "Must not be before session_start");
        }
        let session = Self {
            id,
            session_start,
            session_end,
            commands_executed: f.integer("commands_executed", 0, MAX_COMMANDS).unwrap_or(0),
            agents_used: f
                .text_list(
                    "agents_used",
                    MAX_AGENTS,
                    Text::free(crate::domain::metrics::MAX_AGENT_NAME_CHARS),
                )
                .unwrap_or_default(),
            productivity_score: f.number("productivity_score", 0.0, 100.0),
            context: session_context(&mut f).unwrap_or_else(|| Value::Object(Default::default())),
            status,
        };
        f.finish()?;
        Ok(session)
    }
}

/// A session as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: Uuid,
    pub status: SessionStatus,
    pub session_start: DateTime<Utc>,
    pub session_end: Option<DateTime<Utc>>,
    pub total_duration_ms: Option<i64>,
    pub commands_executed: i64,
    pub agents_used: Vec<String>,
    pub productivity_score: Option<f64>,
    pub context: Value,
    pub updated_at: DateTime<Utc>,
}

/// The outcome of asking to change a session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionChange {
    Changed(SessionRecord),
    /// No such session in the caller's organization.
    NotFound,
    /// The session belongs to another user of the organization.
    OtherUser,
    /// The session's status does not allow the change.
    Refused(SessionStatus),
    /// The merged context would pass [`MAX_CONTEXT_KEYS`] keys or [`MAX_CONTEXT_BYTES`] bytes:
    /// nothing changed.
    ContextFull,
}

/// Most top-level keys a session's context may reach by merging updates.
pub const MAX_CONTEXT_KEYS: usize = crate::domain::validation::MAX_OBJECT_PROPERTIES;
/// Largest a session's context may grow, as JSON text.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;

/// The `context` of a start, update or end, within what a session may hold.
fn session_context(f: &mut Fields<'_>) -> Option<Value> {
    let context = f.optional_object("context")?;
    if !context_fits(&context) {
        f.error(
            "context",
            format!("Must have at most {MAX_CONTEXT_KEYS} keys and {MAX_CONTEXT_BYTES} bytes"),
        );
        return None;
    }
    Some(context)
}

/// Whether a context of `keys` keys and `bytes` bytes of JSON fits a session.
pub fn context_fits(context: &Value) -> bool {
    let keys = context.as_object().map_or(0, |map| map.len());
    keys <= MAX_CONTEXT_KEYS && context.to_string().len() <= MAX_CONTEXT_BYTES
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    Update,
    End,
}

impl SessionAction {
    /// Whether a session in `status` may take this action. Ending an abandoned session is
    /// allowed: a late `end` from the client is better information than the reaper's guess.
    pub fn allowed_from(self, status: SessionStatus) -> bool {
        match self {
            SessionAction::Update => status == SessionStatus::Active,
            SessionAction::End => status != SessionStatus::Completed,
        }
    }
}

/// The session id of `PUT /metrics/session/{id}`.
pub fn session_id(raw: Option<&str>) -> Result<Uuid, Vec<FieldError>> {
    raw.and_then(crate::domain::validation::parse_uuid)
        .ok_or_else(|| vec![FieldError::new("id", "Must be a UUID")])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identified::Identify;
    use serde_json::json;

    #[test]
    fn imported_sessions_derive_their_status_from_their_end() {
        let open = SessionImport::from_json(&json!({"session_start": "2025-09-08T09:00:00Z"}), "").unwrap();
        assert_eq!(open.status, SessionStatus::Active);
        let closed = SessionImport::from_json(
            &json!({"session_start": "2025-09-08T09:00:00Z", "session_end": "2025-09-08T10:00:00Z", "agents_used": ["a"]}),
            "",
        )
        .unwrap();
        assert_eq!(closed.status, SessionStatus::Completed);
        let errors = SessionImport::from_json(
            &json!({"session_start": "2025-09-08T09:00:00Z", "session_end": "2025-09-08T08:00:00Z"}),
            "user_sessions[2]",
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "user_sessions[2].session_end");
        let errors = SessionImport::from_json(
            &json!({"session_start": "2025-09-08T09:00:00Z", "status": "completed"}),
            "",
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "session_end");
        let errors = SessionImport::from_json(
            &json!({"session_start": "2025-09-08T09:00:00Z", "status": "paused"}),
            "",
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "status");
    }

    #[test]
    fn start_accepts_an_empty_body() {
        let start = SessionStart::from_json(&json!({})).unwrap();
        assert_eq!(start.context, json!({}));
        assert!(start.with_id().id.is_some());
    }

    #[test]
    fn start_refuses_unknown_fields_and_bad_times() {
        let errors = SessionStart::from_json(&json!({"user_id": "x", "session_start": "later"})).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["user_id", "session_start"]);
    }

    #[test]
    fn activity_parts_are_optional_and_checked() {
        assert_eq!(
            SessionActivity::from_json(&json!({})).unwrap(),
            SessionActivity::default()
        );
        let a = SessionActivity::from_json(
            &json!({"commands_executed": 4, "agents_used": ["a", "b"], "context": {"k": 1}}),
        )
        .unwrap();
        assert_eq!(a.commands_executed, Some(4));
        assert_eq!(a.agents_used.unwrap(), ["a", "b"]);
        let errors = SessionActivity::from_json(&json!({"commands_executed": -1, "agents_used": "a", "context": 3}))
            .unwrap_err();
        assert_eq!(errors.len(), 3);
    }

    #[test]
    fn end_needs_a_session_id_and_a_score_in_range() {
        let errors = SessionEnd::from_json(&json!({"productivity_score": 101})).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["session_id", "productivity_score"]);
        let id = Uuid::new_v4();
        let end = SessionEnd::from_json(&json!({"session_id": id.to_string(), "productivity_score": 87.5})).unwrap();
        assert_eq!((end.session_id, end.productivity_score), (id, Some(87.5)));
    }

    #[test]
    fn which_status_allows_what() {
        assert!(SessionAction::Update.allowed_from(SessionStatus::Active));
        assert!(!SessionAction::Update.allowed_from(SessionStatus::Abandoned));
        assert!(SessionAction::End.allowed_from(SessionStatus::Abandoned));
        assert!(!SessionAction::End.allowed_from(SessionStatus::Completed));
    }

    #[test]
    fn path_ids_must_be_uuids() {
        assert!(session_id(Some("nope")).is_err());
        assert!(session_id(None).is_err());
        assert!(session_id(Some("0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e")).is_ok());
    }
}
