//! Usage: what Claude Code's own telemetry says a developer spent and produced (tokens, cost,
//! lines, commits, pull requests, active time, model requests and errors), as the OTLP routes
//! hand it to the store (see [`crate::domain::otlp`] for how an export is read).
//!
//! Counters arrive as data points of a series (a metric and its attributes). Delta points are
//! counted as they are; cumulative points are turned into deltas against the last point of
//! their series ([`SeriesState::delta_to`]). Every point and event has a deterministic id, so
//! an exporter's retry stores nothing twice, and only newly stored rows are counted into the
//! rolling usage aggregates.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// One figure of a summary group's `usage`, in the order the summary shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageField {
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheCreationTokens,
    CostUsd,
    LinesAdded,
    LinesRemoved,
    Commits,
    PullRequests,
    ActiveTimeS,
    ApiRequests,
    ApiErrors,
}

impl UsageField {
    pub const ALL: [UsageField; 12] = [
        UsageField::InputTokens,
        UsageField::OutputTokens,
        UsageField::CacheReadTokens,
        UsageField::CacheCreationTokens,
        UsageField::CostUsd,
        UsageField::LinesAdded,
        UsageField::LinesRemoved,
        UsageField::Commits,
        UsageField::PullRequests,
        UsageField::ActiveTimeS,
        UsageField::ApiRequests,
        UsageField::ApiErrors,
    ];

    /// Its name in the summary's `usage` object, and its column in the usage aggregates.
    pub fn name(self) -> &'static str {
        match self {
            UsageField::InputTokens => "input_tokens",
            UsageField::OutputTokens => "output_tokens",
            UsageField::CacheReadTokens => "cache_read_tokens",
            UsageField::CacheCreationTokens => "cache_creation_tokens",
            UsageField::CostUsd => "cost_usd",
            UsageField::LinesAdded => "lines_added",
            UsageField::LinesRemoved => "lines_removed",
            UsageField::Commits => "commits",
            UsageField::PullRequests => "pull_requests",
            UsageField::ActiveTimeS => "active_time_s",
            UsageField::ApiRequests => "api_requests",
            UsageField::ApiErrors => "api_errors",
        }
    }

    /// Cost and active time are fractional; everything else is a count.
    fn is_fractional(self) -> bool {
        matches!(self, UsageField::CostUsd | UsageField::ActiveTimeS)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A sum of usage, one figure per [`UsageField`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage([f64; 12]);

impl Usage {
    pub fn get(&self, field: UsageField) -> f64 {
        self.0[field as usize]
    }

    pub fn add(&mut self, field: UsageField, amount: f64) {
        self.0[field as usize] += amount;
    }

    pub fn add_all(&mut self, other: &Usage) {
        for field in UsageField::ALL {
            self.add(field, other.get(field));
        }
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0.0)
    }

    /// The summary's `usage` object: counts as integers, cost in USD to the micro-dollar,
    /// active time in seconds to the millisecond.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for field in UsageField::ALL {
            let value = self.get(field);
            let shown = if field == UsageField::CostUsd {
                json!((value * 1e6).round() / 1e6)
            } else if field.is_fractional() {
                json!((value * 1e3).round() / 1e3)
            } else {
                json!(value.round() as i64)
            };
            map.insert(field.name().into(), shown);
        }
        Value::Object(map)
    }
}

/// Claude's session, as our records know it: its own id and ours (derived from the caller, as
/// the hooks derive it, so hook and OTLP data land on the same session).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRef {
    pub claude_session_id: String,
    pub key: Uuid,
}

/// The context of a session started by OTLP data (a hook event may start it first, with more).
pub fn session_context(session: &SessionRef) -> Value {
    json!({"client": "claude-code", "claude_session_id": session.claude_session_id, "started_by": "otlp"})
}

/// One data point of a kept Claude Code metric, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct UsagePoint {
    /// Deterministic: the caller, the series and the point's times.
    pub id: Uuid,
    /// The caller, the metric and its attributes.
    pub series: Uuid,
    pub metric: String,
    pub cumulative: bool,
    pub start_ns: u64,
    pub time_ns: u64,
    /// The value as sent (a running total for cumulative points).
    pub value: f64,
    pub session: Option<SessionRef>,
    /// `""` for metrics that are not per model.
    pub model: String,
    /// The `type` attribute (`input`, `added`, `cli`, ...), `""` when absent.
    pub point_type: String,
    /// The usage figure it adds to, if any.
    pub field: Option<UsageField>,
    /// Attributes kept as labels (never used for identity).
    pub labels: Value,
}

impl UsagePoint {
    pub fn time(&self) -> DateTime<Utc> {
        from_unix_nanos(self.time_ns)
    }
}

/// One kept Claude Code event (a log record), ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEvent {
    /// Deterministic: the caller, the session, the event's name, sequence and time.
    pub id: Uuid,
    pub name: String,
    pub time_ns: u64,
    pub session: Option<SessionRef>,
    pub prompt_id: Option<String>,
    pub sequence: Option<i64>,
    pub model: String,
    /// The usage figure it counts one of (`api_requests`, `api_errors`), if any.
    pub field: Option<UsageField>,
    /// The event's figures and labels (content only when the organization opted in, redacted).
    pub attributes: Value,
}

impl UsageEvent {
    pub fn time(&self) -> DateTime<Utc> {
        from_unix_nanos(self.time_ns)
    }
}

pub fn from_unix_nanos(ns: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(ns).unwrap_or(i64::MAX))
}

/// What one export asks the store to keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageExport {
    pub points: Vec<UsagePoint>,
    pub events: Vec<UsageEvent>,
}

impl UsageExport {
    /// The sessions the export touches, each with the earliest time it was seen at.
    pub fn sessions(&self) -> Vec<(SessionRef, DateTime<Utc>)> {
        let mut seen: Vec<(SessionRef, DateTime<Utc>)> = vec![];
        let mut at: HashMap<Uuid, usize> = HashMap::new();
        let times = self
            .points
            .iter()
            .map(|p| (&p.session, p.time()))
            .chain(self.events.iter().map(|e| (&e.session, e.time())));
        for (session, time) in times {
            let Some(session) = session else { continue };
            match at.get(&session.key) {
                Some(i) => seen[*i].1 = seen[*i].1.min(time),
                None => {
                    at.insert(session.key, seen.len());
                    seen.push((session.clone(), time));
                }
            }
        }
        seen
    }

    /// The cumulative series of the export (their last states are read before writing).
    pub fn cumulative_series(&self) -> Vec<Uuid> {
        let mut series: Vec<Uuid> = self.points.iter().filter(|p| p.cumulative).map(|p| p.series).collect();
        series.sort();
        series.dedup();
        series
    }
}

/// The last point stored of a cumulative series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesState {
    pub start_ns: u64,
    pub time_ns: u64,
    pub value: f64,
}

impl SeriesState {
    /// What a cumulative point adds since this state: nothing for a point at or before it (a
    /// retry, or a late point), the difference for a later point of the same run, the whole
    /// value after a reset (a new start time, or a total that went down: the process restarted).
    pub fn delta_to(&self, point: &SeriesState) -> Option<f64> {
        if point.time_ns <= self.time_ns {
            None
        } else if point.start_ns == self.start_ns && point.value >= self.value {
            Some(point.value - self.value)
        } else {
            Some(point.value)
        }
    }
}

/// A point to store with what it counts (`delta`), and the last state of each cumulative series.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted<'a> {
    pub points: Vec<(&'a UsagePoint, f64)>,
    pub series: Vec<(Uuid, SeriesState)>,
}

/// The export's points with the amount each counts: a delta point its value, a cumulative
/// point its difference to the series' previous point (`previous`, read from the store, then
/// each point of the export in time order); cumulative points that add nothing new are left
/// out. A point already stored (same id) is skipped by the store, so it counts nothing either.
/// A point sent twice in one export counts once.
pub fn count_points<'a>(export: &'a UsageExport, previous: &[(Uuid, SeriesState)]) -> Counted<'a> {
    let mut states: HashMap<Uuid, SeriesState> = previous.iter().copied().collect();
    let mut unique = HashSet::new();
    let mut ordered: Vec<&UsagePoint> = export.points.iter().filter(|p| unique.insert(p.id)).collect();
    ordered.sort_by_key(|p| (p.series, p.time_ns));
    let mut points = vec![];
    for point in ordered {
        if !point.cumulative {
            points.push((point, point.value));
            continue;
        }
        let state = SeriesState {
            start_ns: point.start_ns,
            time_ns: point.time_ns,
            value: point.value,
        };
        match states.entry(point.series) {
            Entry::Occupied(mut last) => {
                if let Some(delta) = last.get().delta_to(&state) {
                    points.push((point, delta));
                    last.insert(state);
                }
            }
            Entry::Vacant(first) => {
                points.push((point, point.value));
                first.insert(state);
            }
        }
    }
    let mut series: Vec<(Uuid, SeriesState)> = export
        .cumulative_series()
        .into_iter()
        .filter_map(|id| states.get(&id).map(|state| (id, *state)))
        .collect();
    series.sort_by_key(|(id, _)| *id);
    Counted { points, series }
}

/// The usage that newly stored points (with their counted amounts) and events add.
pub fn usage_of<'a>(
    points: impl IntoIterator<Item = (&'a UsagePoint, f64)>,
    events: impl IntoIterator<Item = &'a UsageEvent>,
) -> Usage {
    let mut usage = Usage::default();
    for (point, delta) in points {
        if let Some(field) = point.field {
            usage.add(field, delta);
        }
    }
    let mut unique = HashSet::new();
    for event in events.into_iter().filter(|e| unique.insert(e.id)) {
        if let Some(field) = event.field {
            usage.add(field, 1.0);
        }
    }
    usage
}

/// What the store kept of an export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageWritten {
    /// Points and events newly stored (a retry stores none).
    pub points: u64,
    pub events: u64,
    /// What they added to the usage aggregates.
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(start_ns: u64, time_ns: u64, value: f64) -> SeriesState {
        SeriesState {
            start_ns,
            time_ns,
            value,
        }
    }

    #[test]
    fn a_later_point_of_the_same_run_counts_its_difference() {
        assert_eq!(state(1, 10, 5.0).delta_to(&state(1, 20, 8.0)), Some(3.0));
        assert_eq!(state(1, 10, 5.0).delta_to(&state(1, 20, 5.0)), Some(0.0));
    }

    #[test]
    fn a_retry_or_a_late_point_counts_nothing() {
        assert_eq!(state(1, 10, 5.0).delta_to(&state(1, 10, 5.0)), None);
        assert_eq!(state(1, 10, 5.0).delta_to(&state(1, 5, 2.0)), None);
    }

    #[test]
    fn a_reset_counts_the_whole_new_total() {
        // A new start time: the process restarted.
        assert_eq!(state(1, 10, 5.0).delta_to(&state(15, 20, 2.0)), Some(2.0));
        // The same start but a lower total: the counter was reset.
        assert_eq!(state(1, 10, 5.0).delta_to(&state(1, 20, 1.0)), Some(1.0));
    }

    fn point(series: u128, cumulative: bool, time_ns: u64, value: f64) -> UsagePoint {
        UsagePoint {
            id: Uuid::from_u128(series << 64 | u128::from(time_ns)),
            series: Uuid::from_u128(series),
            metric: "claude_code.token.usage".into(),
            cumulative,
            start_ns: 1,
            time_ns,
            value,
            session: None,
            model: "m".into(),
            point_type: "input".into(),
            field: Some(UsageField::InputTokens),
            labels: json!({}),
        }
    }

    #[test]
    fn cumulative_points_of_one_export_are_counted_in_time_order_after_the_stored_state() {
        // GIVEN a series whose last stored total is 10, and an export with its next two totals
        // out of order, plus a delta point of another series
        let export = UsageExport {
            points: vec![
                point(1, true, 30, 25.0),
                point(1, true, 20, 12.0),
                point(2, false, 20, 7.0),
            ],
            events: vec![],
        };
        let counted = count_points(&export, &[(Uuid::from_u128(1), state(1, 10, 10.0))]);
        // THEN each counts its own increase, and the delta point its value
        let amounts: Vec<(u64, f64)> = counted.points.iter().map(|(p, d)| (p.time_ns, *d)).collect();
        assert_eq!(amounts, [(20, 2.0), (30, 13.0), (20, 7.0)]);
        assert_eq!(usage_of(counted.points, []).get(UsageField::InputTokens), 22.0);
        assert_eq!(counted.series, [(Uuid::from_u128(1), state(1, 30, 25.0))]);
    }

    #[test]
    fn the_first_point_of_a_new_cumulative_series_counts_its_whole_value() {
        let export = UsageExport {
            points: vec![point(3, true, 5, 4.0)],
            events: vec![],
        };
        let counted = count_points(&export, &[]);
        assert_eq!(counted.points[0].1, 4.0);
    }

    #[test]
    fn usage_json_shows_counts_as_integers_and_cost_to_the_micro_dollar() {
        let mut usage = Usage::default();
        usage.add(UsageField::InputTokens, 240.0);
        usage.add(UsageField::CostUsd, 0.0029200000000000003);
        usage.add(UsageField::ActiveTimeS, 0.2531);
        let shown = usage.to_json();
        assert_eq!(shown["input_tokens"], 240);
        assert_eq!(shown["cost_usd"], 0.00292);
        assert_eq!(shown["active_time_s"], 0.253);
        assert_eq!(shown.as_object().unwrap().len(), 12);
    }
}
