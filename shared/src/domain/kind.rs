//! The four kinds of metric, and values kept per kind.
//!
//! Each kind has its own table, its own batch array and its own wire names; code that handles
//! "every kind" iterates [`Kind::ALL`] or holds a [`PerKind`], never positions in an array.

use std::ops::{Index, IndexMut};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    CommandExecution,
    AgentInteraction,
    UserSession,
    ProductivityMetric,
}

impl Kind {
    /// Every kind, in the order batches list them.
    pub const ALL: [Kind; 4] = [
        Kind::CommandExecution,
        Kind::AgentInteraction,
        Kind::UserSession,
        Kind::ProductivityMetric,
    ];

    /// The batch array, the envelope field and the table: `command_executions`, …
    pub fn plural(self) -> &'static str {
        self.plural_const()
    }

    pub(crate) const fn plural_const(self) -> &'static str {
        match self {
            Kind::CommandExecution => "command_executions",
            Kind::AgentInteraction => "agent_interactions",
            Kind::UserSession => "user_sessions",
            Kind::ProductivityMetric => "productivity_metrics",
        }
    }

    /// One metric of the kind, as importer lines and live updates name it: `command_execution`, …
    pub fn singular(self) -> &'static str {
        match self {
            Kind::CommandExecution => "command_execution",
            Kind::AgentInteraction => "agent_interaction",
            Kind::UserSession => "user_session",
            Kind::ProductivityMetric => "productivity_metric",
        }
    }

    /// The kind whose singular name is `raw`.
    pub fn from_singular(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.singular() == raw)
    }

    /// Whether its rows feed the rolling aggregates of the summaries.
    pub fn is_aggregated(self) -> bool {
        matches!(self, Kind::CommandExecution | Kind::AgentInteraction)
    }
}

/// One value per kind, serialised with the kinds' plural names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct PerKind<T> {
    pub command_executions: T,
    pub agent_interactions: T,
    pub user_sessions: T,
    pub productivity_metrics: T,
}

impl<T> PerKind<T> {
    /// A value for each kind, from `value`.
    pub fn from_fn(mut value: impl FnMut(Kind) -> T) -> Self {
        PerKind {
            command_executions: value(Kind::CommandExecution),
            agent_interactions: value(Kind::AgentInteraction),
            user_sessions: value(Kind::UserSession),
            productivity_metrics: value(Kind::ProductivityMetric),
        }
    }

    /// Each kind with its value, in [`Kind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, &T)> {
        Kind::ALL.into_iter().map(move |kind| (kind, &self[kind]))
    }

    pub fn map<U>(&self, mut f: impl FnMut(Kind, &T) -> U) -> PerKind<U> {
        PerKind::from_fn(|kind| f(kind, &self[kind]))
    }
}

impl PerKind<u64> {
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

impl PerKind<usize> {
    pub fn total(&self) -> usize {
        self.iter().map(|(_, n)| n).sum()
    }
}

impl<T> Index<Kind> for PerKind<T> {
    type Output = T;

    fn index(&self, kind: Kind) -> &T {
        match kind {
            Kind::CommandExecution => &self.command_executions,
            Kind::AgentInteraction => &self.agent_interactions,
            Kind::UserSession => &self.user_sessions,
            Kind::ProductivityMetric => &self.productivity_metrics,
        }
    }
}

impl<T> IndexMut<Kind> for PerKind<T> {
    fn index_mut(&mut self, kind: Kind) -> &mut T {
        match kind {
            Kind::CommandExecution => &mut self.command_executions,
            Kind::AgentInteraction => &mut self.agent_interactions,
            Kind::UserSession => &mut self.user_sessions,
            Kind::ProductivityMetric => &mut self.productivity_metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_names_and_value() {
        let mut counts = PerKind::<u64>::default();
        counts[Kind::UserSession] += 2;
        counts[Kind::CommandExecution] += 1;
        assert_eq!(counts.user_sessions, 2);
        assert_eq!(counts.total(), 3);
        let json = serde_json::to_value(&counts).unwrap();
        for kind in Kind::ALL {
            assert_eq!(json[kind.plural()], counts[kind]);
            assert_eq!(Kind::from_singular(kind.singular()), Some(kind));
        }
        assert_eq!(Kind::from_singular("nonsense"), None);
    }
}
