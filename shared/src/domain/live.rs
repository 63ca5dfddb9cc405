//! The live-update messages: what a dashboard receives after a record is stored (`metric_update`,
//! compact: names, statuses, times and counts, never arguments, context or metadata).
//!
//! May import: the domain only.

use crate::domain::batch::Envelope;
use crate::domain::ids::{Caller, Role};
use crate::domain::kind::PerKind;
use crate::domain::metrics::Stored;
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{SessionChange, SessionStart};
use crate::domain::usage::UsageWritten;
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// The `type` of every message pushed to a connection.
pub const MESSAGE_TYPE: &str = "metric_update";

/// The message for one stored record: what a dashboard needs to show it, never its payload
/// (arguments, context, metadata).
pub fn update(caller: &Caller, kind: &str, id: Uuid, summary: Value) -> Value {
    json!({
        "type": MESSAGE_TYPE,
        "organization_id": caller.org.as_str(),
        "user_id": caller.user.as_str(),
        "kind": kind,
        "id": id,
        "metric": summary,
    })
}

/// Who may see an update whole: admins, and the developer it is about. Other members learn only
/// that the organization has new records of a kind ([`without_identity`]): they read the
/// organization's totals but only their own per-user figures, and a record's own figures (a
/// command's time, an export's cost, a session's start) would be another developer's row.
pub fn seen_whole_by(update: &Value, viewer_role: Role, viewer: Option<&str>) -> bool {
    viewer_role == Role::Admin || (viewer.is_some() && update["user_id"].as_str() == viewer)
}

/// What other members receive of an update: its type, organization and kind, and for a batch
/// its counts of new records (already totals); no developer, record id or record figures. A
/// dashboard refreshes the organization's totals (the summary) when it hears of new records.
pub fn without_identity(update: &Value) -> Value {
    let mut kept = json!({
        "type": update["type"],
        "organization_id": update["organization_id"],
        "kind": update["kind"],
    });
    if update["kind"] == "batch" {
        kept["metric"] = json!({"new": update["metric"]["new"]});
    }
    kept
}

pub fn command_execution_update(caller: &Caller, metric: &CommandExecution, stored: &Stored) -> Value {
    update(
        caller,
        "command_execution",
        stored.id,
        json!({
            "command_name": metric.command_name,
            "status": metric.status,
            "execution_time_ms": metric.execution_time_ms,
            "timestamp": metric.timestamp.unwrap_or(stored.created_at),
        }),
    )
}

pub fn agent_interaction_update(caller: &Caller, metric: &AgentInteraction, stored: &Stored) -> Value {
    update(
        caller,
        "agent_interaction",
        stored.id,
        json!({
            "agent_name": metric.agent_name,
            "interaction_type": metric.interaction_type,
            "input_tokens": metric.input_tokens,
            "output_tokens": metric.output_tokens,
            "processing_time_ms": metric.processing_time_ms,
            "success": metric.success,
            "timestamp": metric.timestamp.unwrap_or(stored.created_at),
        }),
    )
}

pub fn productivity_update(caller: &Caller, metric: &ProductivityMetric, stored: &Stored) -> Value {
    update(
        caller,
        "productivity_metric",
        stored.id,
        json!({
            "metric_type": metric.metric_type,
            "value": metric.value,
            "unit": metric.unit,
            "period_start": metric.period_start,
            "period_end": metric.period_end,
        }),
    )
}

pub fn session_started(caller: &Caller, start: &SessionStart, stored: &Stored) -> Value {
    update(
        caller,
        "user_session",
        stored.id,
        json!({
            "status": "active",
            "session_start": start.session_start.unwrap_or(stored.created_at),
            "session_end": null,
            "total_duration_ms": null,
            "commands_executed": 0,
        }),
    )
}

pub fn session_update(caller: &Caller, change: &SessionChange) -> Option<Value> {
    let SessionChange::Changed(session) = change else {
        return None;
    };
    Some(update(
        caller,
        "user_session",
        session.id,
        json!({
            "status": session.status,
            "session_start": session.session_start,
            "session_end": session.session_end,
            "total_duration_ms": session.total_duration_ms,
            "commands_executed": session.commands_executed,
        }),
    ))
}

/// One message per batch envelope: how many records of each kind it added.
pub fn batch_update(envelope: &Envelope, new: &PerKind<u64>) -> Value {
    let counts: HashMap<&str, u64> = new.iter().map(|(kind, n)| (kind.plural(), *n)).collect();
    json!({
        "type": MESSAGE_TYPE,
        "organization_id": envelope.organization_id.as_str(),
        "user_id": envelope.user_id.as_str(),
        "kind": "batch",
        "id": envelope.batch_id,
        "metric": { "new": counts },
    })
}

/// One message per OTLP export that stored something: how many points and events were new and
/// the usage they added (nothing of their labels or attributes).
pub fn usage_update(caller: &Caller, written: &UsageWritten) -> Value {
    json!({
        "type": MESSAGE_TYPE,
        "organization_id": caller.org.as_str(),
        "user_id": caller.user.as_str(),
        "kind": "usage",
        "metric": {
            "points": written.points,
            "events": written.events,
            "usage": written.usage.to_json(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{OrgId, UserId};

    #[test]
    fn colleagues_learn_only_the_kind_of_any_update_and_a_batchs_counts() {
        let alice = Caller::member(OrgId::parse("acme").unwrap(), UserId::parse("alice").unwrap());
        // Every record message is built by `update`; whatever its figures, only the kind stays.
        for kind in [
            "command_execution",
            "agent_interaction",
            "productivity_metric",
            "user_session",
            "usage",
        ] {
            let whole = update(
                &alice,
                kind,
                Uuid::new_v4(),
                json!({"session_start": "t", "cost_usd": 1.5}),
            );
            assert_eq!(
                without_identity(&whole),
                json!({"type": MESSAGE_TYPE, "organization_id": "acme", "kind": kind})
            );
        }
        let batch = json!({"type": MESSAGE_TYPE, "organization_id": "acme", "user_id": "alice", "kind": "batch",
                           "id": Uuid::new_v4(), "metric": {"new": {"command_executions": 18}, "batch_id": "b"}});
        assert_eq!(
            without_identity(&batch),
            json!({"type": MESSAGE_TYPE, "organization_id": "acme", "kind": "batch",
                   "metric": {"new": {"command_executions": 18}}})
        );
    }

    #[test]
    fn admins_and_the_records_developer_see_it_whole() {
        let message = json!({"user_id": "alice"});
        assert!(seen_whole_by(&message, Role::Admin, Some("boss")));
        assert!(seen_whole_by(&message, Role::Member, Some("alice")));
        assert!(!seen_whole_by(&message, Role::Member, Some("bob")));
        assert!(!seen_whole_by(&message, Role::Member, None));
        assert!(!seen_whole_by(&json!({}), Role::Member, Some("bob")));
    }
}
