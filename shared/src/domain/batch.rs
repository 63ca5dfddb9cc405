//! Batches: the body of `POST /metrics/batch`, and the envelope that carries a batch through
//! SQS to the worker. Importers with IAM rights write envelopes to the queue themselves, so the
//! worker parses every envelope with the same rules (`schemas/batch-envelope.schema.json`
//! documents the format).

use crate::domain::identified::Identify;
use crate::domain::kind::{Kind, PerKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::domain::ids::{Caller, OrgId, UserId};
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::SessionImport;
use crate::domain::validation::{Choice, FieldError, Fields, Text};

pub const ENVELOPE_VERSION: i64 = 1;
/// Most metrics one envelope may carry (the API allows `COLLECTION_BATCH_SIZE` per request;
/// importers may pack more).
pub const MAX_ENVELOPE_METRICS: usize = 1000;
/// Largest SQS message.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// What SQS counts of a message besides its body: its attributes (the queue's `batch_id`,
/// `organization_id` and `source`; a dead letter's reason, of up to 1,000 characters, its
/// original id and time). An envelope leaves this much of [`MAX_MESSAGE_BYTES`] to them, so a
/// batch accepted with 202 can always be queued, and dead-lettered, whole.
pub const MESSAGE_ATTRIBUTES_RESERVE: usize = 8 * 1024;
/// Largest envelope, as a message body.
pub const MAX_ENVELOPE_BYTES: usize = MAX_MESSAGE_BYTES - MESSAGE_ATTRIBUTES_RESERVE;
/// Default of `COLLECTION_BATCH_SIZE`, the specification's 20 metrics per batch.
pub const DEFAULT_BATCH_SIZE: u64 = 20;

/// The arrays a batch may carry: one per kind, by its plural name.
const ARRAYS: [&str; 4] = [
    Kind::CommandExecution.plural_const(),
    Kind::AgentInteraction.plural_const(),
    Kind::UserSession.plural_const(),
    Kind::ProductivityMetric.plural_const(),
];

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub command_executions: Vec<CommandExecution>,
    pub agent_interactions: Vec<AgentInteraction>,
    pub user_sessions: Vec<SessionImport>,
    pub productivity_metrics: Vec<ProductivityMetric>,
}

impl Metrics {
    pub fn total(&self) -> usize {
        self.counts().total()
    }

    /// Metrics per kind.
    pub fn counts(&self) -> PerKind<usize> {
        self.ids().map(|_, ids| ids.len())
    }

    /// The body of `POST /metrics/batch`: at most `max` metrics, at least one, every error
    /// located (`agent_interactions[3].input_tokens`).
    pub fn from_request(value: &Value, max: usize) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, "", &ARRAYS)?;
        let metrics = Self::read(&mut f, max);
        f.finish()?;
        Ok(metrics)
    }

    fn read(f: &mut Fields<'_>, max: usize) -> Self {
        for kind in ARRAYS {
            f.expect_array(kind);
        }
        let total: usize = ARRAYS.iter().filter_map(|kind| f.array(kind)).map(Vec::len).sum();
        if total > max {
            f.error_at(
                "body",
                format!("A batch holds at most {max} metrics; this one has {total}"),
            );
            return Self::default();
        }
        if total == 0 && ARRAYS.iter().all(|kind| f.is_valid(kind)) {
            f.error_at(
                "body",
                format!("A batch must hold at least one metric in {}", ARRAYS.join(", ")),
            );
        }
        let metrics = Self {
            command_executions: read_all(f, Kind::CommandExecution, CommandExecution::from_json),
            agent_interactions: read_all(f, Kind::AgentInteraction, AgentInteraction::from_json),
            user_sessions: read_all(f, Kind::UserSession, SessionImport::from_json),
            productivity_metrics: read_all(f, Kind::ProductivityMetric, ProductivityMetric::from_json),
        };
        metrics.refuse_repeated_ids(f);
        metrics
    }

    /// Two metrics of one kind with the same id would be acknowledged as two and stored as one:
    /// the second is refused where it stands.
    fn refuse_repeated_ids(&self, f: &mut Fields<'_>) {
        for (kind, ids) in self.ids().iter() {
            let kind = kind.plural();
            let mut first_at = std::collections::HashMap::new();
            for (i, id) in ids.iter().enumerate() {
                let Some(id) = id else { continue };
                if let Some(first) = first_at.insert(*id, i) {
                    first_at.insert(*id, first);
                    f.error_at(
                        &format!("{kind}[{i}].id"),
                        format!("Repeats the id of {kind}[{first}]: each metric of a batch needs its own id"),
                    );
                }
            }
        }
    }

    /// Keeps client ids and assigns the missing ones, before anything is queued, so a
    /// redelivered message writes nothing twice.
    pub fn with_ids(self) -> Self {
        Self {
            command_executions: self.command_executions.into_iter().map(Identify::with_id).collect(),
            agent_interactions: self.agent_interactions.into_iter().map(Identify::with_id).collect(),
            user_sessions: self.user_sessions.into_iter().map(Identify::with_id).collect(),
            productivity_metrics: self.productivity_metrics.into_iter().map(Identify::with_id).collect(),
        }
    }

    /// Every metric's id, per kind (`None` where none is assigned yet).
    pub fn ids(&self) -> PerKind<Vec<Option<Uuid>>> {
        PerKind {
            command_executions: self.command_executions.iter().map(|m| m.id).collect(),
            agent_interactions: self.agent_interactions.iter().map(|m| m.id).collect(),
            user_sessions: self.user_sessions.iter().map(|m| m.id).collect(),
            productivity_metrics: self.productivity_metrics.iter().map(|m| m.id).collect(),
        }
    }
}

/// Validates every item of the array `kind`, located as `kind[i]`.
fn read_all<T>(f: &mut Fields<'_>, kind: Kind, parse: fn(&Value, &str) -> Result<T, Vec<FieldError>>) -> Vec<T> {
    let kind = kind.plural();
    let Some(items) = f.array(kind) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse(item, &f.path(&format!("{kind}[{i}]"))) {
            Ok(metric) => out.push(metric),
            Err(errors) => f.absorb(errors),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Import,
}

crate::choice_serde!(Source);

impl Choice for Source {
    const ALL: &'static [(&'static str, Self)] = &[("api", Self::Api), ("import", Self::Import)];
}

/// A batch whose envelope would not fit one SQS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the envelope is over the {limit}-byte message limit")]
pub struct EnvelopeTooLarge {
    pub limit: usize,
}

/// One SQS message: a batch of one organization's metrics, every metric with its id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    pub version: i64,
    pub batch_id: Uuid,
    pub organization_id: OrgId,
    pub user_id: UserId,
    pub received_at: DateTime<Utc>,
    pub source: Source,
    #[serde(flatten)]
    pub metrics: Metrics,
}

const ENVELOPE_FIELDS: &[&str] = &[
    "version",
    "batch_id",
    "organization_id",
    "user_id",
    "received_at",
    "source",
    "command_executions",
    "agent_interactions",
    "user_sessions",
    "productivity_metrics",
];

impl Envelope {
    /// Wraps `metrics` (ids assigned) for `caller`, received now.
    pub fn new(caller: &Caller, source: Source, metrics: Metrics) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            batch_id: Uuid::now_v7(),
            organization_id: caller.org.clone(),
            user_id: caller.user.clone(),
            received_at: crate::domain::validation::at_storage_precision(Utc::now()),
            source,
            metrics: metrics.with_ids(),
        }
    }

    pub fn caller(&self) -> Caller {
        Caller::member(self.organization_id.clone(), self.user_id.clone())
    }

    /// The SQS message body; a batch that cannot fit one message is refused, never split.
    pub fn to_message(&self) -> Result<String, EnvelopeTooLarge> {
        // An envelope is plain data with string keys: serialising it cannot fail.
        let message = serde_json::to_string(self).unwrap_or_default();
        if message.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeTooLarge {
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        Ok(message)
    }

    /// Parses and validates a message from the queue; the error says why it can never be written.
    pub fn parse(message: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(message).map_err(|e| format!("not JSON: {e}"))?;
        Self::from_json(&value).map_err(|errors| {
            let reasons: Vec<String> = errors
                .iter()
                .take(10)
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            let more = errors.len().saturating_sub(10);
            let suffix = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            format!("invalid envelope: {}{suffix}", reasons.join("; "))
        })
    }

    fn from_json(value: &Value) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(value, "", ENVELOPE_FIELDS)?;
        let version = f.required_integer("version", 1, i64::MAX);
        if f.is_valid("version") && version != ENVELOPE_VERSION {
            f.error(
                "version",
                format!("Unsupported version {version}; this worker reads {ENVELOPE_VERSION}"),
            );
        }
        if f.is_absent("batch_id") {
            f.error("batch_id", "Required");
        }
        let batch_id = f.uuid("batch_id").unwrap_or_default();
        let org = f.required_text("organization_id", Text::name(crate::domain::ids::MAX_ORG_ID_LEN));
        let user = f.required_exact_string("user_id");
        let received_at = f.required_timestamp("received_at");
        let source = f.required_choice::<Source>("source");
        let metrics = Metrics::read(&mut f, MAX_ENVELOPE_METRICS);
        for (kind, ids) in metrics.ids().iter() {
            let kind = kind.plural();
            for (i, id) in ids.iter().enumerate() {
                if id.is_none() {
                    f.error(
                        &format!("{kind}[{i}].id"),
                        "Required in an envelope: ids are assigned before queueing",
                    );
                }
            }
        }
        let organization_id = OrgId::parse(&org);
        let user_id = UserId::parse(user);
        f.finish()?;
        match (organization_id, user_id) {
            (Ok(organization_id), Ok(user_id)) => Ok(Self {
                version,
                batch_id,
                organization_id,
                user_id,
                received_at,
                source,
                metrics,
            }),
            (Err(problem), _) => Err(vec![FieldError::new("organization_id", problem)]),
            (_, Err(problem)) => Err(vec![FieldError::new("user_id", problem)]),
        }
    }

    /// The 202 answer's `data`: the batch id, counts per kind, and the ids assigned.
    pub fn accepted(&self) -> Value {
        let mut data = Map::new();
        data.insert("batch_id".into(), json!(self.batch_id));
        data.insert("status".into(), json!("queued"));
        let mut ids = Map::new();
        for (kind, kind_ids) in self.metrics.ids().iter() {
            data.insert(kind.plural().into(), json!(kind_ids.len()));
            ids.insert(
                kind.plural().into(),
                json!(kind_ids.iter().flatten().collect::<Vec<_>>()),
            );
        }
        data.insert("total".into(), json!(self.metrics.total()));
        data.insert("ids".into(), Value::Object(ids));
        Value::Object(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_batch() -> Value {
        json!({
            "command_executions": [{
                "command_name": "generate_component", "execution_time_ms": 1200, "status": "success",
                "command_args": {"type": "react"}, "context": {"project": "web_app"}
            }],
            "agent_interactions": [{
                "agent_name": "frontend-developer", "interaction_type": "tool_call", "input_tokens": 300,
                "output_tokens": 800, "processing_time_ms": 2100, "success": true,
                "metadata": {"task": "component_creation"}
            }],
            "productivity_metrics": [{
                "metric_type": "completion_rate", "value": 8.5, "unit": "tasks_per_hour",
                "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z",
                "dimensions": {"complexity": "medium"}
            }]
        })
    }

    fn caller() -> Caller {
        Caller::member(OrgId::parse("acme").unwrap(), UserId::parse("alice").unwrap())
    }

    #[test]
    fn the_specification_example_is_a_valid_batch() {
        let metrics = Metrics::from_request(&spec_batch(), 20).unwrap();
        assert_eq!(
            metrics.counts(),
            PerKind {
                command_executions: 1,
                agent_interactions: 1,
                user_sessions: 0,
                productivity_metrics: 1
            }
        );
    }

    #[test]
    fn errors_are_located_by_kind_and_index() {
        let mut body = spec_batch();
        body["agent_interactions"] = json!([
            body["agent_interactions"][0].clone(),
            body["agent_interactions"][0].clone(),
            body["agent_interactions"][0].clone(),
            {"agent_name": "x", "interaction_type": "tool_call", "input_tokens": -3,
             "output_tokens": 1, "processing_time_ms": 1, "success": true}
        ]);
        body["command_executions"][0]["status"] = json!("nope");
        let errors = Metrics::from_request(&body, 20).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["command_executions[0].status", "agent_interactions[3].input_tokens"]
        );
    }

    #[test]
    fn too_many_or_no_metrics_are_refused() {
        let many = json!({"command_executions": vec![spec_batch()["command_executions"][0].clone(); 21]});
        let errors = Metrics::from_request(&many, 20).unwrap_err();
        assert_eq!(errors[0].field, "body");
        assert!(errors[0].message.contains("at most 20"));
        assert_eq!(Metrics::from_request(&json!({}), 20).unwrap_err()[0].field, "body");
        let errors = Metrics::from_request(&json!({"command_executions": {}}), 20).unwrap_err();
        assert_eq!(errors[0].field, "command_executions");
        let errors = Metrics::from_request(&json!({"organization_id": "x", "command_executions": []}), 20).unwrap_err();
        assert_eq!(errors[0].field, "organization_id");
    }

    #[test]
    fn an_envelope_round_trips_through_its_message() {
        let metrics = Metrics::from_request(&spec_batch(), 20).unwrap();
        let envelope = Envelope::new(&caller(), Source::Api, metrics);
        assert!(
            envelope
                .metrics
                .ids()
                .iter()
                .all(|(_, ids)| ids.iter().all(Option::is_some))
        );
        let message = envelope.to_message().unwrap();
        let parsed = Envelope::parse(&message).unwrap();
        assert_eq!(parsed, envelope);
        assert_eq!(parsed.caller(), caller());
    }

    #[test]
    fn the_accepted_answer_counts_each_kind() {
        let envelope = Envelope::new(
            &caller(),
            Source::Api,
            Metrics::from_request(&spec_batch(), 20).unwrap(),
        );
        let data = envelope.accepted();
        assert_eq!(data["command_executions"], 1);
        assert_eq!(data["user_sessions"], 0);
        assert_eq!(data["total"], 3);
        assert_eq!(data["ids"]["agent_interactions"].as_array().unwrap().len(), 1);
        assert_eq!(data["batch_id"], envelope.batch_id.to_string());
    }

    #[test]
    fn poison_envelopes_say_why() {
        assert!(Envelope::parse("not json").unwrap_err().starts_with("not JSON"));
        let mut envelope: Value = serde_json::from_str(
            &Envelope::new(
                &caller(),
                Source::Import,
                Metrics::from_request(&spec_batch(), 20).unwrap(),
            )
            .to_message()
            .unwrap(),
        )
        .unwrap();
        envelope["organization_id"] = json!("acme\"; DROP SCHEMA public; --");
        envelope["version"] = json!(2);
        envelope["command_executions"][0].as_object_mut().unwrap().remove("id");
        let reason = Envelope::parse(&envelope.to_string()).unwrap_err();
        assert!(reason.contains("version"), "{reason}");
        assert!(reason.contains("organization_id"), "{reason}");
        assert!(reason.contains("command_executions[0].id"), "{reason}");
    }

    #[test]
    fn a_batch_that_cannot_fit_one_message_with_its_attributes_is_refused() {
        let mut envelope = Envelope::new(
            &caller(),
            Source::Api,
            Metrics::from_request(&spec_batch(), 20).unwrap(),
        );
        let mut sized = |extra: usize| {
            envelope.metrics.command_executions[0].error_message = Some("x".repeat(extra));
            envelope.to_message()
        };
        let base = sized(0).unwrap().len();
        assert_eq!(sized(MAX_ENVELOPE_BYTES - base).unwrap().len(), MAX_ENVELOPE_BYTES);
        // A body SQS would take alone, but not with the attributes it is sent with.
        let refused = Err(EnvelopeTooLarge {
            limit: MAX_ENVELOPE_BYTES,
        });
        assert_eq!(sized(MAX_ENVELOPE_BYTES - base + 1), refused);
        assert_eq!(sized(MAX_MESSAGE_BYTES - base), refused);
    }
}
