//! An envelope's metrics as one array per column: the batch worker's statement binds each kind's
//! columns as arrays and unnests them, so a whole envelope is one round trip.

use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::domain::batch::Envelope;
use crate::domain::kind::{Kind, PerKind};
use crate::domain::validation::Choice;

type Timestamp = chrono::DateTime<chrono::Utc>;

/// An envelope's metrics turned into one array per column, as `sql::envelope_statement` binds them.
pub(super) struct EnvelopeColumns {
    command_ids: Vec<Uuid>,
    command_names: Vec<String>,
    command_args: Vec<serde_json::Value>,
    command_times: Vec<f64>,
    command_statuses: Vec<&'static str>,
    command_errors: Vec<Option<String>>,
    command_contexts: Vec<serde_json::Value>,
    command_timestamps: Vec<Option<Timestamp>>,
    agent_ids: Vec<Uuid>,
    agent_names: Vec<String>,
    agent_kinds: Vec<&'static str>,
    agent_input: Vec<i64>,
    agent_output: Vec<i64>,
    agent_times: Vec<f64>,
    agent_success: Vec<bool>,
    agent_metadata: Vec<serde_json::Value>,
    agent_timestamps: Vec<Option<Timestamp>>,
    session_ids: Vec<Uuid>,
    session_starts: Vec<Timestamp>,
    session_ends: Vec<Option<Timestamp>>,
    session_commands: Vec<i64>,
    session_agents: Vec<serde_json::Value>,
    session_scores: Vec<Option<f64>>,
    session_contexts: Vec<serde_json::Value>,
    session_statuses: Vec<&'static str>,
    productivity_ids: Vec<Uuid>,
    productivity_kinds: Vec<&'static str>,
    productivity_values: Vec<f64>,
    productivity_units: Vec<String>,
    productivity_starts: Vec<Timestamp>,
    productivity_ends: Vec<Timestamp>,
    productivity_dimensions: Vec<serde_json::Value>,
}

impl EnvelopeColumns {
    /// Whether each kind has at least one metric.
    pub(super) fn present(&self) -> PerKind<bool> {
        PerKind {
            command_executions: !self.command_ids.is_empty(),
            agent_interactions: !self.agent_ids.is_empty(),
            user_sessions: !self.session_ids.is_empty(),
            productivity_metrics: !self.productivity_ids.is_empty(),
        }
    }

    /// The arrays of one kind, in the order its insert binds them.
    pub(super) fn params(&self, kind: Kind) -> Vec<(&(dyn ToSql + Sync), Type)> {
        match kind {
            Kind::CommandExecution => vec![
                (&self.command_ids, Type::UUID_ARRAY),
                (&self.command_names, Type::TEXT_ARRAY),
                (&self.command_args, Type::JSONB_ARRAY),
                (&self.command_times, Type::FLOAT8_ARRAY),
                (&self.command_statuses, Type::TEXT_ARRAY),
                (&self.command_errors, Type::TEXT_ARRAY),
                (&self.command_contexts, Type::JSONB_ARRAY),
                (&self.command_timestamps, Type::TIMESTAMPTZ_ARRAY),
            ],
            Kind::AgentInteraction => vec![
                (&self.agent_ids, Type::UUID_ARRAY),
                (&self.agent_names, Type::TEXT_ARRAY),
                (&self.agent_kinds, Type::TEXT_ARRAY),
                (&self.agent_input, Type::INT8_ARRAY),
                (&self.agent_output, Type::INT8_ARRAY),
                (&self.agent_times, Type::FLOAT8_ARRAY),
                (&self.agent_success, Type::BOOL_ARRAY),
                (&self.agent_metadata, Type::JSONB_ARRAY),
                (&self.agent_timestamps, Type::TIMESTAMPTZ_ARRAY),
            ],
            Kind::UserSession => vec![
                (&self.session_ids, Type::UUID_ARRAY),
                (&self.session_starts, Type::TIMESTAMPTZ_ARRAY),
                (&self.session_ends, Type::TIMESTAMPTZ_ARRAY),
                (&self.session_commands, Type::INT8_ARRAY),
                (&self.session_agents, Type::JSONB_ARRAY),
                (&self.session_scores, Type::FLOAT8_ARRAY),
                (&self.session_contexts, Type::JSONB_ARRAY),
                (&self.session_statuses, Type::TEXT_ARRAY),
            ],
            Kind::ProductivityMetric => vec![
                (&self.productivity_ids, Type::UUID_ARRAY),
                (&self.productivity_kinds, Type::TEXT_ARRAY),
                (&self.productivity_values, Type::FLOAT8_ARRAY),
                (&self.productivity_units, Type::TEXT_ARRAY),
                (&self.productivity_starts, Type::TIMESTAMPTZ_ARRAY),
                (&self.productivity_ends, Type::TIMESTAMPTZ_ARRAY),
                (&self.productivity_dimensions, Type::JSONB_ARRAY),
            ],
        }
    }

    /// Metrics without an id are skipped: [`Envelope::parse`] refuses such envelopes.
    pub(super) fn new(envelope: &Envelope) -> Self {
        let m = &envelope.metrics;
        let commands: Vec<_> = m.command_executions.iter().filter_map(|x| Some((x.id?, x))).collect();
        let agents: Vec<_> = m.agent_interactions.iter().filter_map(|x| Some((x.id?, x))).collect();
        let sessions: Vec<_> = m.user_sessions.iter().filter_map(|x| Some((x.id?, x))).collect();
        let productivity: Vec<_> = m.productivity_metrics.iter().filter_map(|x| Some((x.id?, x))).collect();
        Self {
            command_ids: commands.iter().map(|(id, _)| *id).collect(),
            command_names: commands.iter().map(|(_, x)| x.command_name.clone()).collect(),
            command_args: commands.iter().map(|(_, x)| x.command_args.clone()).collect(),
            command_times: commands.iter().map(|(_, x)| x.execution_time_ms).collect(),
            command_statuses: commands.iter().map(|(_, x)| x.status.as_str()).collect(),
            command_errors: commands.iter().map(|(_, x)| x.error_message.clone()).collect(),
            command_contexts: commands.iter().map(|(_, x)| x.context.clone()).collect(),
            command_timestamps: commands.iter().map(|(_, x)| x.timestamp).collect(),
            agent_ids: agents.iter().map(|(id, _)| *id).collect(),
            agent_names: agents.iter().map(|(_, x)| x.agent_name.clone()).collect(),
            agent_kinds: agents.iter().map(|(_, x)| x.interaction_type.as_str()).collect(),
            agent_input: agents.iter().map(|(_, x)| x.input_tokens).collect(),
            agent_output: agents.iter().map(|(_, x)| x.output_tokens).collect(),
            agent_times: agents.iter().map(|(_, x)| x.processing_time_ms).collect(),
            agent_success: agents.iter().map(|(_, x)| x.success).collect(),
            agent_metadata: agents.iter().map(|(_, x)| x.metadata.clone()).collect(),
            agent_timestamps: agents.iter().map(|(_, x)| x.timestamp).collect(),
            session_ids: sessions.iter().map(|(id, _)| *id).collect(),
            session_starts: sessions.iter().map(|(_, x)| x.session_start).collect(),
            session_ends: sessions.iter().map(|(_, x)| x.session_end).collect(),
            session_commands: sessions.iter().map(|(_, x)| x.commands_executed).collect(),
            session_agents: sessions.iter().map(|(_, x)| serde_json::json!(x.agents_used)).collect(),
            session_scores: sessions.iter().map(|(_, x)| x.productivity_score).collect(),
            session_contexts: sessions.iter().map(|(_, x)| x.context.clone()).collect(),
            session_statuses: sessions.iter().map(|(_, x)| x.status.as_str()).collect(),
            productivity_ids: productivity.iter().map(|(id, _)| *id).collect(),
            productivity_kinds: productivity.iter().map(|(_, x)| x.metric_type.as_str()).collect(),
            productivity_values: productivity.iter().map(|(_, x)| x.value).collect(),
            productivity_units: productivity.iter().map(|(_, x)| x.unit.clone()).collect(),
            productivity_starts: productivity.iter().map(|(_, x)| x.period_start).collect(),
            productivity_ends: productivity.iter().map(|(_, x)| x.period_end).collect(),
            productivity_dimensions: productivity.iter().map(|(_, x)| x.dimensions.clone()).collect(),
        }
    }
}
