//! The metric kinds of the specification and the rules that admit them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::validation::{Choice, FieldError, Fields, MAX_TEXT_CHARS, Text};

/// Longest command name (the specification's `maxLength`).
pub const MAX_COMMAND_NAME_CHARS: usize = 100;
/// Longest accepted execution time: five minutes.
pub const MAX_EXECUTION_TIME_MS: f64 = 300_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    Success,
    Error,
    Timeout,
    Cancelled,
}

crate::choice_serde!(CommandStatus);

impl Choice for CommandStatus {
    const ALL: &'static [(&'static str, Self)] = &[
        ("success", Self::Success),
        ("error", Self::Error),
        ("timeout", Self::Timeout),
        ("cancelled", Self::Cancelled),
    ];
}

/// One command execution, validated and sanitised, as it will be stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandExecution {
    /// The client's id, or one the server assigned (see `domain::identified`).
    pub id: Option<Uuid>,
    pub command_name: String,
    pub command_args: Value,
    pub execution_time_ms: f64,
    pub status: CommandStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub context: Value,
    /// When the command ran; the server's receive time when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
}

impl CommandExecution {
    pub const FIELDS: &'static [&'static str] = &[
        "id",
        "command_name",
        "command_args",
        "execution_time_ms",
        "status",
        "error_message",
        "context",
        "timestamp",
    ];

    /// Validates `value` found at `at` in the request (empty for a whole body).
    pub fn from_json(value: &Value, at: &str) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, at, Self::FIELDS)?;
        let metric = Self {
            id: f.uuid("id"),
            command_name: f.required_text("command_name", Text::name(MAX_COMMAND_NAME_CHARS)),
            command_args: f.object("command_args"),
            execution_time_ms: f.required_number("execution_time_ms", 0.0, MAX_EXECUTION_TIME_MS),
            status: f.required_choice("status"),
            error_message: f.text("error_message", Text::free(MAX_TEXT_CHARS)),
            context: f.object("context"),
            timestamp: f.timestamp("timestamp"),
        };
        f.finish()?;
        Ok(metric)
    }
}

/// Longest agent name.
pub const MAX_AGENT_NAME_CHARS: usize = 100;
/// Longest accepted agent processing time: one day.
pub const MAX_PROCESSING_TIME_MS: f64 = 86_400_000.0;
/// Most tokens one interaction may report in either direction.
pub const MAX_TOKENS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InteractionType {
    ToolCall,
    Delegation,
    Response,
}

crate::choice_serde!(InteractionType);

impl Choice for InteractionType {
    const ALL: &'static [(&'static str, Self)] = &[
        ("tool_call", Self::ToolCall),
        ("delegation", Self::Delegation),
        ("response", Self::Response),
    ];
}

/// One agent interaction, with its token counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentInteraction {
    pub id: Option<Uuid>,
    pub agent_name: String,
    pub interaction_type: InteractionType,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub processing_time_ms: f64,
    pub success: bool,
    pub metadata: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
}

impl AgentInteraction {
    pub const FIELDS: &'static [&'static str] = &[
        "id",
        "agent_name",
        "interaction_type",
        "input_tokens",
        "output_tokens",
        "processing_time_ms",
        "success",
        "metadata",
        "timestamp",
    ];

    pub fn from_json(value: &Value, at: &str) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, at, Self::FIELDS)?;
        let metric = Self {
            id: f.uuid("id"),
            agent_name: f.required_text("agent_name", Text::free(MAX_AGENT_NAME_CHARS)),
            interaction_type: f.required_choice("interaction_type"),
            input_tokens: f.required_integer("input_tokens", 0, MAX_TOKENS),
            output_tokens: f.required_integer("output_tokens", 0, MAX_TOKENS),
            processing_time_ms: f.required_number("processing_time_ms", 0.0, MAX_PROCESSING_TIME_MS),
            success: f.required_boolean("success"),
            metadata: f.object("metadata"),
            timestamp: f.timestamp("timestamp"),
        };
        f.finish()?;
        Ok(metric)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductivityMetricType {
    CompletionRate,
    ErrorRate,
    EfficiencyScore,
}

crate::choice_serde!(ProductivityMetricType);

impl Choice for ProductivityMetricType {
    const ALL: &'static [(&'static str, Self)] = &[
        ("completion_rate", Self::CompletionRate),
        ("error_rate", Self::ErrorRate),
        ("efficiency_score", Self::EfficiencyScore),
    ];
}

impl ProductivityMetricType {
    /// The values a metric of this type may take: rates of completion are open-ended, error
    /// rates are percentages, efficiency is a 0-100 index.
    pub fn range(self) -> (f64, f64) {
        match self {
            Self::CompletionRate => (0.0, 1.0e9),
            Self::ErrorRate | Self::EfficiencyScore => (0.0, 100.0),
        }
    }
}

/// Longest unit name (e.g. `tasks_per_hour`).
pub const MAX_UNIT_CHARS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductivityMetric {
    pub id: Option<Uuid>,
    pub metric_type: ProductivityMetricType,
    pub value: f64,
    pub unit: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub dimensions: Value,
}

impl ProductivityMetric {
    pub const FIELDS: &'static [&'static str] = &[
        "id",
        "metric_type",
        "value",
        "unit",
        "period_start",
        "period_end",
        "dimensions",
    ];

    pub fn from_json(value: &Value, at: &str) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, at, Self::FIELDS)?;
        let metric_type = f.choice::<ProductivityMetricType>("metric_type");
        if metric_type.is_none() && f.is_absent("metric_type") {
            f.error("metric_type", "Required");
        }
        let (min, max) = metric_type.map_or((0.0, 1.0e9), ProductivityMetricType::range);
        let metric = Self {
            id: f.uuid("id"),
            metric_type: metric_type.unwrap_or(ProductivityMetricType::CompletionRate),
            value: f.required_number("value", min, max),
            unit: f.required_text("unit", Text::free(MAX_UNIT_CHARS)),
            period_start: f.required_timestamp("period_start"),
            period_end: f.required_timestamp("period_end"),
            dimensions: f.object("dimensions"),
        };
        if metric.period_end <= metric.period_start && f.is_valid("period_start") && f.is_valid("period_end") {
            f.error("period_end", "Must be after period_start");
        }
        f.finish()?;
        Ok(metric)
    }
}

/// What the API returns for a stored record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// Written by this call (false when the id was stored already).
    #[serde(skip)]
    pub new: bool,
}

impl Stored {
    /// The response's `data`: `{id, created_at}`.
    pub fn data(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "created_at": self.created_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identified::Identify;
    use serde_json::json;

    fn spec_example() -> Value {
        json!({
            "command_name": "claude_code_generate",
            "command_args": {"language": "typescript", "framework": "express"},
            "execution_time_ms": 1250,
            "status": "success",
            "context": {"project_type": "web_service", "complexity": "medium"}
        })
    }

    fn errors_for(body: Value) -> Vec<FieldError> {
        CommandExecution::from_json(&body, "").unwrap_err()
    }

    fn fields_of(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn the_specification_example_is_accepted() {
        let m = CommandExecution::from_json(&spec_example(), "").unwrap();
        assert_eq!(m.command_name, "claude_code_generate");
        assert_eq!(m.execution_time_ms, 1250.0);
        assert_eq!(m.status, CommandStatus::Success);
        assert_eq!(m.command_args["framework"], "express");
        assert_eq!(m.id, None);
    }

    #[test]
    fn the_minimal_body_is_accepted_with_empty_objects() {
        let m = CommandExecution::from_json(
            &json!({"command_name": "x", "execution_time_ms": 0, "status": "cancelled"}),
            "",
        )
        .unwrap();
        assert_eq!(m.command_args, json!({}));
        assert_eq!(m.context, json!({}));
    }

    #[test]
    fn every_missing_required_field_is_reported_at_once() {
        let errors = errors_for(json!({}));
        assert_eq!(fields_of(&errors), ["command_name", "execution_time_ms", "status"]);
        assert!(errors.iter().all(|e| e.message == "Required"));
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let errors = errors_for(json!({
            "id": "nope",
            "command_name": "rm -rf /",
            "command_args": "not an object",
            "execution_time_ms": 300001,
            "status": "exploded",
            "error_message": 12,
            "context": [],
            "timestamp": "soon",
            "organization_id": "someone-else",
        }));
        assert_eq!(
            fields_of(&errors),
            [
                "organization_id",
                "id",
                "command_name",
                "command_args",
                "execution_time_ms",
                "status",
                "error_message",
                "context",
                "timestamp"
            ]
        );
    }

    #[test]
    fn command_name_boundaries() {
        let mut body = spec_example();
        body["command_name"] = json!("a".repeat(MAX_COMMAND_NAME_CHARS));
        assert!(CommandExecution::from_json(&body, "").is_ok());
        body["command_name"] = json!("a".repeat(MAX_COMMAND_NAME_CHARS + 1));
        assert_eq!(fields_of(&errors_for(body.clone())), ["command_name"]);
        body["command_name"] = json!("");
        assert_eq!(fields_of(&errors_for(body)), ["command_name"]);
    }

    #[test]
    fn execution_time_boundaries() {
        for (value, ok) in [
            (json!(0), true),
            (json!(300000), true),
            (json!(12.75), true),
            (json!(-0.001), false),
            (json!(300000.01), false),
            (json!("1250"), false),
        ] {
            let mut body = spec_example();
            body["execution_time_ms"] = value.clone();
            assert_eq!(CommandExecution::from_json(&body, "").is_ok(), ok, "{value}");
        }
    }

    #[test]
    fn every_status_of_the_enum_is_accepted() {
        for status in ["success", "error", "timeout", "cancelled"] {
            let mut body = spec_example();
            body["status"] = json!(status);
            assert_eq!(CommandExecution::from_json(&body, "").unwrap().status.as_str(), status);
        }
    }

    #[test]
    fn identity_fields_in_the_body_are_refused() {
        let mut body = spec_example();
        body["organization_id"] = json!("other");
        body["user_id"] = json!("mallory");
        assert_eq!(fields_of(&errors_for(body)), ["organization_id", "user_id"]);
    }

    #[test]
    fn a_client_id_is_kept_and_a_missing_one_assigned() {
        let mut body = spec_example();
        let id = Uuid::new_v4();
        body["id"] = json!(id.to_string());
        assert_eq!(CommandExecution::from_json(&body, "").unwrap().with_id().id, Some(id));
        let assigned = CommandExecution::from_json(&spec_example(), "").unwrap().with_id().id;
        assert!(assigned.is_some());
    }

    #[test]
    fn free_text_and_objects_are_sanitised() {
        let mut body = spec_example();
        body["status"] = json!("error");
        body["error_message"] = json!("failed <script>steal()</script>in Vec<String>");
        body["context"] = json!({"note": "<img src=x onerror=alert(1)>hi"});
        let m = CommandExecution::from_json(&body, "").unwrap();
        assert_eq!(m.error_message.as_deref(), Some("failed in Vec<String>"));
        assert_eq!(m.context["note"], "hi");
    }

    #[test]
    fn errors_carry_the_location_inside_a_batch() {
        let errors = CommandExecution::from_json(&json!({"status": "bad"}), "command_executions[3]").unwrap_err();
        assert!(fields_of(&errors).contains(&"command_executions[3].status"));
    }
}
