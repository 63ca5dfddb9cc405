//! The data lifecycle: how long each kind of row is kept (retention), what a retention run and
//! a user's erasure removed.
//!
//! Aggregates (the hourly and daily rolling figures, usage included) outlive the raw rows by
//! design: they hold no content, only counts per hour or day, user and name, and summaries over
//! long spans read them. They have their own retention (`aggregates_days`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Days each kind of data is kept, per organization: the organization settings'
/// `data_retention` (defaults: 90 days of metrics, hook events and OTLP data, a year of sessions
/// and productivity, 400 days of aggregates).
pub use crate::domain::settings::DataRetention as Retention;

/// What retention keeps apart: each table a retention run deletes from, in the order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiring {
    CommandExecutions,
    AgentInteractions,
    UserSessions,
    ProductivityMetrics,
    HookEvents,
    OtlpPoints,
    OtlpEvents,
    OtlpSeries,
    HourlyAggregates,
    HourlyLatency,
    DailyAggregates,
    DailyLatency,
    HourlyUsage,
    DailyUsage,
}

impl Expiring {
    pub const ALL: [Expiring; 14] = [
        Expiring::CommandExecutions,
        Expiring::AgentInteractions,
        Expiring::UserSessions,
        Expiring::ProductivityMetrics,
        Expiring::HookEvents,
        Expiring::OtlpPoints,
        Expiring::OtlpEvents,
        Expiring::OtlpSeries,
        Expiring::HourlyAggregates,
        Expiring::HourlyLatency,
        Expiring::DailyAggregates,
        Expiring::DailyLatency,
        Expiring::HourlyUsage,
        Expiring::DailyUsage,
    ];

    /// The table's name in a tenant schema.
    pub fn table(self) -> &'static str {
        match self {
            Expiring::CommandExecutions => "command_executions",
            Expiring::AgentInteractions => "agent_interactions",
            Expiring::UserSessions => "user_sessions",
            Expiring::ProductivityMetrics => "productivity_metrics",
            Expiring::HookEvents => "hook_events",
            Expiring::OtlpPoints => "otlp_points",
            Expiring::OtlpEvents => "otlp_events",
            Expiring::OtlpSeries => "otlp_series",
            Expiring::HourlyAggregates => "hourly_aggregates",
            Expiring::HourlyLatency => "hourly_latency",
            Expiring::DailyAggregates => "daily_aggregates",
            Expiring::DailyLatency => "daily_latency",
            Expiring::HourlyUsage => "hourly_usage",
            Expiring::DailyUsage => "daily_usage",
        }
    }

    /// The days this table's rows are kept under `retention`.
    pub fn days(self, retention: &Retention) -> u32 {
        match self {
            Expiring::CommandExecutions => retention.command_executions_days,
            Expiring::AgentInteractions => retention.agent_interactions_days,
            Expiring::UserSessions => retention.user_sessions_days,
            Expiring::ProductivityMetrics => retention.productivity_metrics_days,
            Expiring::HookEvents => retention.hook_events_days,
            Expiring::OtlpPoints | Expiring::OtlpEvents | Expiring::OtlpSeries => retention.otlp_days,
            Expiring::HourlyAggregates
            | Expiring::HourlyLatency
            | Expiring::DailyAggregates
            | Expiring::DailyLatency
            | Expiring::HourlyUsage
            | Expiring::DailyUsage => retention.aggregates_days,
        }
    }

    /// Rows of this table from before the cutoff are expired.
    pub fn cutoff(self, retention: &Retention, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(i64::from(self.days(retention)))
    }
}

/// Rows deleted per table (tables with none are left out).
pub type Deleted = BTreeMap<Expiring, u64>;

/// What one organization's retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub deleted: Deleted,
    /// Whether every expired row was deleted; `false` when the time budget ran out first (the
    /// next run resumes: it deletes by the same conditions).
    pub complete: bool,
}

/// The tables a user's erasure removes rows from, in the order it removes them (series before
/// the points that name them; the aggregates in the order every writer takes their rows, tenant
/// migration 0008, so an erasure and that user's last writes wait for each other, never deadlock).
pub const ERASED: [&str; 14] = [
    "command_executions",
    "agent_interactions",
    "user_sessions",
    "productivity_metrics",
    "hook_events",
    "otlp_series",
    "otlp_points",
    "otlp_events",
    "daily_latency",
    "daily_aggregates",
    "hourly_latency",
    "hourly_aggregates",
    "hourly_usage",
    "daily_usage",
];

/// Rows removed per table by a user's erasure (every table named, zero included).
pub type Erased = BTreeMap<&'static str, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_is_kept_for_its_kinds_days() {
        let retention = Retention {
            command_executions_days: 1,
            agent_interactions_days: 2,
            user_sessions_days: 3,
            productivity_metrics_days: 4,
            hook_events_days: 5,
            otlp_days: 6,
            aggregates_days: 7,
        };
        let days: Vec<u32> = Expiring::ALL.iter().map(|e| e.days(&retention)).collect();
        assert_eq!(days, [1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 7, 7, 7, 7]);
        let now = Utc::now();
        assert_eq!(Expiring::HookEvents.cutoff(&retention, now), now - Duration::days(5));
        assert_eq!(Retention::default().aggregates_days, 400);
        assert!(Expiring::ALL.windows(2).all(|pair| pair[0] < pair[1]), "in run order");
    }
}
