//! `ExportLogsServiceRequest` → usage events. Each Claude Code event is a log record whose body
//! is the event's name (`claude_code.api_request`) and whose attributes carry `event.name`,
//! `event.sequence`, `session.id`, `prompt.id` and the event's own figures, typed loosely.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

use super::attributes::{Attributes, Label, cut};
use super::{COMMON_LABELS, Kept, MAX_ITEMS_PER_EXPORT, Refusals, id_of, model_of, plausible_time, session_of};
use crate::domain::hooks::{HookContent, MAX_ID_CHARS};
use crate::domain::ids::UserId;
use crate::domain::redact::redact_and_truncate;
use crate::domain::sanitize::sanitize_value;
use crate::domain::usage::{UsageEvent, UsageExport, UsageField};

/// The events kept, as Claude Code names them.
pub const KEPT_EVENTS: [&str; 5] = [
    "claude_code.api_request",
    "claude_code.api_error",
    "claude_code.tool_result",
    "claude_code.tool_decision",
    "claude_code.user_prompt",
];

/// The figures and labels an event keeps (besides [`COMMON_LABELS`]), each read as its type;
/// none is content.
const EVENT_LABELS: &[(&str, Label)] = &[
    ("input_tokens", Label::Number),
    ("output_tokens", Label::Number),
    ("cache_read_tokens", Label::Number),
    ("cache_creation_tokens", Label::Number),
    ("cost_usd", Label::Number),
    ("duration_ms", Label::Number),
    ("ttft_ms", Label::Number),
    ("status_code", Label::Text),
    ("attempt", Label::Number),
    ("request_id", Label::Text),
    ("speed", Label::Text),
    ("query_source", Label::Text),
    ("effort", Label::Text),
    ("tool_name", Label::Text),
    ("tool_use_id", Label::Text),
    ("tool_source", Label::Text),
    ("success", Label::Flag),
    ("decision", Label::Text),
    ("source", Label::Text),
    ("permission_mode", Label::Text),
    ("tool_input_size_bytes", Label::Number),
    ("tool_result_size_bytes", Label::Number),
    ("prompt_length", Label::Number),
];
/// Attributes that carry what a developer typed or a tool said: kept only when the organization
/// keeps content, and then sanitised, redacted and truncated as hook content is.
const CONTENT: &[&str] = &["prompt", "error", "tool_parameters", "tool_input"];
/// What Claude Code sends instead of content the user did not opt into sending.
const NOT_SENT: &str = "<REDACTED>";

/// What an export holds for the store, what was refused, and how many events this version does
/// not keep were dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsRead {
    pub export: UsageExport,
    pub refused: Refusals,
    pub unknown: u64,
}

/// Reads an export sent by `user` at `now_ns`, keeping content as `content` says.
pub fn read(request: &ExportLogsServiceRequest, user: &UserId, content: HookContent, now_ns: u64) -> LogsRead {
    let mut read = LogsRead::default();
    let mut kept = Kept::default();
    let records = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records);
    for record in records {
        let Some(name) = event_name(record).filter(|n| KEPT_EVENTS.contains(&n.as_str())) else {
            read.unknown += 1;
            continue;
        };
        if read.export.events.len() >= MAX_ITEMS_PER_EXPORT {
            read.refused
                .refuse(format!("more than {MAX_ITEMS_PER_EXPORT} log records in one export"));
            continue;
        }
        let admitted = usage_event(name, record, user, content, now_ns)
            .and_then(|e| kept.admit(e.id, e.session.as_ref()).map(|new| new.then_some(e)));
        match admitted {
            Ok(Some(event)) => read.export.events.push(event),
            Ok(None) => {}
            Err(reason) => read.refused.refuse(reason),
        }
    }
    read
}

/// `claude_code.<name>`, from the record's `event.name` attribute, its `eventName` or its body.
fn event_name(record: &LogRecord) -> Option<String> {
    let attrs = Attributes(&record.attributes);
    let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Any::StringValue(s)) => Some(s.clone()),
        _ => None,
    };
    let name = attrs
        .text("event.name")
        .or_else(|| Some(record.event_name.clone()).filter(|n| !n.is_empty()))
        .or(body)?;
    Some(if name.starts_with("claude_code.") {
        name
    } else {
        format!("claude_code.{name}")
    })
}

fn usage_event(
    name: String,
    record: &LogRecord,
    user: &UserId,
    content: HookContent,
    now_ns: u64,
) -> Result<UsageEvent, String> {
    let time_ns = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    if !plausible_time(time_ns, now_ns) {
        return Err(format!("{name}: timeUnixNano {time_ns} is not a plausible time"));
    }
    let attrs = Attributes(&record.attributes);
    let session = session_of(attrs, user).map_err(|reason| format!("{name}: {reason}"))?;
    let prompt_id = attrs.text("prompt.id").map(|p| cut(&p, MAX_ID_CHARS));
    let sequence = attrs.number("event.sequence").map(|n| n as i64);
    let mut kept = attrs.labels(COMMON_LABELS);
    kept.extend(attrs.typed_labels(EVENT_LABELS.iter().copied()));
    if content == HookContent::Redacted {
        for key in CONTENT {
            if let Some(text) = attrs.text(key).filter(|t| t != NOT_SENT) {
                let mut value = Value::String(text);
                sanitize_value(&mut value);
                kept.insert((*key).to_owned(), redact_and_truncate(&value));
            }
        }
    }
    let field = match name.as_str() {
        "claude_code.api_request" => Some(UsageField::ApiRequests),
        "claude_code.api_error" => Some(UsageField::ApiErrors),
        _ => None,
    };
    let claude_session = session.as_ref().map(|s| s.claude_session_id.as_str()).unwrap_or("");
    // `event.sequence` tells a session's events apart; without it, what identifies the event
    // itself (its prompt, model request and tool use).
    let discriminator = match sequence {
        Some(n) => n.to_string(),
        None => ["prompt.id", "request_id", "tool_use_id"]
            .map(|key| attrs.text(key).unwrap_or_default())
            .join("\n"),
    };
    Ok(UsageEvent {
        id: id_of(
            user,
            &[
                "otlp-event",
                claude_session,
                &name,
                &discriminator,
                &time_ns.to_string(),
            ],
        ),
        name,
        time_ns,
        session,
        prompt_id,
        sequence,
        model: model_of(attrs),
        field,
        attributes: Value::Object(kept),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: &str = include_str!("../../../../events/otlp/logs.json");
    const NOW: u64 = 1_796_187_700_000_000_000;

    fn recorded() -> ExportLogsServiceRequest {
        serde_json::from_str(RECORDED).unwrap()
    }

    fn dev() -> UserId {
        UserId::parse("dev").unwrap()
    }

    #[test]
    fn the_recorded_events_are_kept_with_their_figures_typed() {
        // GIVEN what Claude Code 2.1.328 sent: plugin and settings events too
        let read = read(&recorded(), &dev(), HookContent::Metrics, NOW);
        let names: Vec<&str> = read.export.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "claude_code.user_prompt",
                "claude_code.tool_decision",
                "claude_code.api_request",
                "claude_code.tool_result",
                "claude_code.api_request"
            ]
        );
        assert_eq!(read.unknown, 5, "settings, three plugins, the response");
        assert_eq!(read.refused.count, 0);
        let request = &read.export.events[2];
        assert_eq!(request.field, Some(UsageField::ApiRequests));
        assert_eq!(request.model, "claude-opus-5-5");
        assert_eq!(request.sequence, Some(6));
        assert_eq!(request.attributes["input_tokens"], 120.0);
        assert_eq!(request.attributes["cost_usd"], 0.00146);
        // Numbers and flags sent as text are typed.
        let tool = &read.export.events[3];
        assert_eq!(tool.attributes["duration_ms"], 37.0);
        assert_eq!(tool.attributes["success"], true);
        assert_eq!(tool.prompt_id.as_deref(), Some("ea786446-73a4-43a3-8015-9d85d34fd7f5"));
    }

    #[test]
    fn a_prompt_is_kept_only_by_length_unless_content_is_kept_and_then_redacted() {
        let prompt = |content| {
            let mut request = recorded();
            let record = request.resource_logs[0].scope_logs[0].log_records[4].clone();
            let mut record = record;
            for kv in &mut record.attributes {
                if kv.key == "prompt" {
                    kv.value = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(Any::StringValue(
                            "deploy with ghp_abcdefghijklmnopqrstuvwxyz0123456789".into(),
                        )),
                    });
                }
            }
            request.resource_logs[0].scope_logs[0].log_records = vec![record];
            read(&request, &dev(), content, NOW).export.events.remove(0)
        };
        let by_default = prompt(HookContent::Metrics);
        assert_eq!(by_default.attributes["prompt_length"], 9.0);
        assert!(
            !by_default.attributes.to_string().contains("deploy"),
            "{}",
            by_default.attributes
        );
        let opted_in = prompt(HookContent::Redacted);
        let text = opted_in.attributes["prompt"].as_str().unwrap();
        assert!(text.contains("deploy") && !text.contains("ghp_abc"), "{text}");
    }

    #[test]
    fn a_retry_has_the_same_ids() {
        let one = read(&recorded(), &dev(), HookContent::Metrics, NOW).export;
        let two = read(&recorded(), &dev(), HookContent::Metrics, NOW).export;
        assert_eq!(one, two);
        let mut ids: Vec<_> = one.events.iter().map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), one.events.len());
    }
}
