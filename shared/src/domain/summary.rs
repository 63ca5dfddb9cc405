//! `GET /api/v1/metrics/summary`: the caller's organization's rolling aggregates, grouped by
//! user, command, agent, model, hour or day, between `since` and `until` (whole UTC hours: `since` is
//! rounded down, `until` up). The aggregates are kept per hour and per day by the write paths
//! (see the tenant migration `0003_hourly_aggregates.sql`), so a summary never scans raw rows:
//! it reads a row per day for the whole days of the span and a row per hour around them.
//! Groups by user, model, hour and day also carry the `usage` Claude Code's OTLP export
//! reported (tokens, cost, lines, ...; see [`crate::domain::usage`]), from the usage aggregates
//! kept the same way; commands and agents have none (usage is per model, not per tool).
//! Every summary also counts the sessions started in its span ([`SessionFigures`]): in total,
//! and per group when grouping by user, hour or day (sessions have no command, agent or model).
//! Sessions are few (one per developer and sitting), so they are counted from their table's
//! rows, through its index on `session_start`.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Value, json};

use crate::domain::ids::{Caller, UserId};
use crate::domain::usage::Usage;
use crate::domain::validation::{Choice, FieldError};

/// Most groups in one answer (`limit`, default [`DEFAULT_GROUPS`]).
pub const MAX_GROUPS: u32 = 1000;
pub const DEFAULT_GROUPS: u32 = 100;
/// Longest span one summary may cover.
pub const MAX_SPAN_DAYS: i64 = 366;
/// Buckets of the latency histogram (see the migration): four per doubling from 0.1 ms.
pub const HISTOGRAM_BUCKETS: usize = 124;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    User,
    Command,
    Agent,
    Model,
    Hour,
    Day,
}

impl Choice for GroupBy {
    const ALL: &'static [(&'static str, Self)] = &[
        ("user", GroupBy::User),
        ("command", GroupBy::Command),
        ("agent", GroupBy::Agent),
        ("model", GroupBy::Model),
        ("hour", GroupBy::Hour),
        ("day", GroupBy::Day),
    ];
}

impl GroupBy {
    /// Groups by time come in time order; the others by activity, busiest first.
    pub fn chronological(self) -> bool {
        matches!(self, GroupBy::Hour | GroupBy::Day)
    }

    /// Whether its groups carry usage (commands and agents have none).
    pub fn has_usage(self) -> bool {
        !matches!(self, GroupBy::Command | GroupBy::Agent)
    }

    /// Whether its groups carry command and agent figures (models have none).
    pub fn has_metrics(self) -> bool {
        self != GroupBy::Model
    }

    /// Whether its groups carry session figures (a session has no command, agent or model).
    pub fn has_sessions(self) -> bool {
        matches!(self, GroupBy::User | GroupBy::Hour | GroupBy::Day)
    }
}

/// The kind of an [`AggregateRow`] holding a group's sessions.
pub const SESSION_ROW: &str = "session";
/// The kind of the one [`AggregateRow`] (key `""`) holding the sessions of the whole span,
/// whatever the grouping and the limit.
pub const SESSION_TOTAL_ROW: &str = "sessions_total";

/// The sessions started in a span (`session_start` in `[since, until)`), by their status now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFigures {
    pub started: i64,
    /// Still open now.
    pub active: i64,
    pub completed: i64,
    pub abandoned: i64,
    /// Those with a duration (ended ones), and the sum of their durations.
    pub timed: i64,
    pub duration_ms: i64,
}

impl SessionFigures {
    /// `{started, active, completed, abandoned, avg_duration_ms}`; the average is over the
    /// sessions that ended (`null` when none did).
    pub fn to_json(&self) -> Value {
        let average = (self.timed > 0).then(|| round3(self.duration_ms as f64 / self.timed as f64));
        json!({
            "started": self.started,
            "active": self.active,
            "completed": self.completed,
            "abandoned": self.abandoned,
            "avg_duration_ms": average,
        })
    }
}

/// The key of usage without a model (lines, commits, active time) when grouping by model.
pub const NO_MODEL_KEY: &str = "none";

#[derive(Debug, Clone, PartialEq)]
pub struct SummaryQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub group_by: GroupBy,
    pub limit: u32,
    /// Whether to compute p95 values (merging the latency histograms costs most of a summary).
    pub p95: bool,
    /// Only this user's records (`user=`): with `group_by=model`, a developer's usage per model.
    pub user: Option<UserId>,
    /// Set for members by [`SummaryQuery::as_seen_by`]: per-user rows are the caller's only.
    pub own_rows_only: bool,
}

/// Why a member's summary query is refused (403).
pub const OTHER_USERS_ROWS: &str = "members read only their own per-user figures (user= may name only yourself)";

impl SummaryQuery {
    /// Reads the query string parameters; every problem is reported, each by its parameter.
    pub fn parse<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = vec![];
        let (mut since, mut until, mut group_by, mut limit, mut p95, mut user) =
            (None, None, GroupBy::User, DEFAULT_GROUPS, false, None);
        for (name, value) in params {
            match name {
                "since" => since = time(name, value, &mut errors),
                "until" => until = time(name, value, &mut errors),
                "group_by" => match GroupBy::ALL.iter().find(|(n, _)| *n == value) {
                    Some((_, g)) => group_by = *g,
                    None => errors.push(FieldError::new(name, GroupBy::expected())),
                },
                "limit" => match value.parse::<u32>() {
                    Ok(n) if (1..=MAX_GROUPS).contains(&n) => limit = n,
                    _ => errors.push(FieldError::new(
                        name,
                        format!("Must be an integer from 1 to {MAX_GROUPS}"),
                    )),
                },
                "p95" => match value {
                    "true" => p95 = true,
                    "false" => p95 = false,
                    _ => errors.push(FieldError::new(name, "Must be true or false")),
                },
                "user" => match UserId::parse(value) {
                    Ok(id) => user = Some(id),
                    Err(_) => errors.push(FieldError::new(name, "Must be a user id (1-128 printable characters)")),
                },
                other => errors.push(FieldError::new(
                    other.chars().take(64).collect::<String>(),
                    "Unknown query parameter",
                )),
            }
        }
        let until = until.unwrap_or(now);
        let since = since.unwrap_or(until - Duration::hours(24));
        if until <= since {
            errors.push(FieldError::new("until", "Must be after since"));
        } else if until - since > Duration::days(MAX_SPAN_DAYS) {
            errors.push(FieldError::new(
                "since",
                format!("At most {MAX_SPAN_DAYS} days before until"),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let hour = Duration::hours(1);
        let since = since.duration_trunc(hour).unwrap_or(since);
        let until = match until.duration_trunc(hour) {
            Ok(floor) if floor < until => floor + hour,
            Ok(floor) => floor,
            Err(_) => until,
        };
        Ok(Self {
            since,
            until,
            group_by,
            limit,
            p95,
            user,
            own_rows_only: false,
        })
    }

    /// What `caller` may read. Admins: everything. Members: the organization's totals (groups
    /// by command, agent, model, hour and day over all its developers) and their own per-user
    /// figures only — `group_by=user` answers their own row, `user=` may name only themselves.
    pub fn as_seen_by(mut self, caller: &Caller) -> Result<Self, &'static str> {
        if caller.is_admin() {
            return Ok(self);
        }
        if self.user.as_ref().is_some_and(|user| user != &caller.user) {
            return Err(OTHER_USERS_ROWS);
        }
        if self.group_by == GroupBy::User {
            self.user = Some(caller.user.clone());
        }
        self.own_rows_only = true;
        Ok(self)
    }

    /// The whole UTC days inside the span, `[first, end)`; an empty range (both `until`) when
    /// the span holds no whole day.
    pub fn whole_days(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = Duration::days(1);
        let floor = |t: DateTime<Utc>| t.duration_trunc(day).unwrap_or(t);
        let first = match floor(self.since) {
            start if start < self.since => start + day,
            start => start,
        };
        let end = floor(self.until);
        if first < end {
            (first, end)
        } else {
            (self.until, self.until)
        }
    }
}

fn time(name: &str, value: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .inspect_err(|_| errors.push(FieldError::new(name, "Must be an RFC 3339 date-time")))
        .ok()
}

/// Aggregates of one group and one kind (`command`, `agent` or `usage`), summed over the span.
/// A `usage` row carries [`AggregateRow::usage`] (its `count` is the model requests, its
/// `error_count` the model errors) and no histogram. A [`SESSION_ROW`] or [`SESSION_TOTAL_ROW`]
/// carries [`AggregateRow::sessions`] (its `count` is the sessions started, so they count as
/// activity when groups are ranked).
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    pub key: String,
    pub kind: String,
    pub usage: Usage,
    pub sessions: SessionFigures,
    pub count: i64,
    pub error_count: i64,
    pub total_ms: f64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub histogram: Vec<i64>,
}

/// The histogram bucket of a latency, as the SQL function `latency_bucket` computes it (1-based).
pub fn latency_bucket(ms: f64) -> usize {
    let tenths = ms * 10.0;
    if tenths < 1.0 {
        return 1;
    }
    (2 + (4.0 * tenths.ln() / 2f64.ln()).floor() as usize).min(HISTOGRAM_BUCKETS)
}

/// The upper edge of a bucket in milliseconds (the last bucket has none).
fn bucket_upper_edge_ms(bucket: usize) -> Option<f64> {
    (bucket < HISTOGRAM_BUCKETS).then(|| 2f64.powf((bucket as f64 - 1.0) / 4.0) / 10.0)
}

/// The 95th percentile from a histogram: the upper edge of the bucket that holds it, so at most
/// one bucket (19%) above the true value.
pub fn p95_ms(histogram: &[i64]) -> Option<f64> {
    let total: i64 = histogram.iter().sum();
    if total <= 0 {
        return None;
    }
    let rank = (total as f64 * 0.95).ceil() as i64;
    let mut seen = 0;
    for (index, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let bucket = index + 1;
            return Some(bucket_upper_edge_ms(bucket).unwrap_or(f64::INFINITY)).filter(|v| v.is_finite());
        }
    }
    None
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The response's `data`: one entry per group, its commands and its agents, and whether groups
/// were left out by `limit` (`rows` may hold one group more than the limit, to tell), and the
/// sessions of the whole span.
pub fn summary_data(query: &SummaryQuery, rows: &[AggregateRow]) -> Value {
    let (totals, rows): (Vec<&AggregateRow>, Vec<&AggregateRow>) =
        rows.iter().partition(|row| row.kind == SESSION_TOTAL_ROW);
    let sessions = totals.first().map(|row| row.sessions).unwrap_or_default();
    let mut keys: Vec<&str> = vec![];
    for row in &rows {
        if !keys.contains(&row.key.as_str()) {
            keys.push(&row.key);
        }
    }
    let truncated = keys.len() > query.limit as usize;
    keys.truncate(query.limit as usize);
    let groups: Vec<Value> = keys
        .iter()
        .map(|key| {
            let mut group = json!({ "key": key });
            if query.group_by.has_usage() {
                group["usage"] = Usage::default().to_json();
            }
            if query.group_by.has_sessions() {
                group["sessions"] = SessionFigures::default().to_json();
            }
            for row in rows.iter().filter(|r| r.key == *key) {
                if row.kind == "usage" {
                    group["usage"] = row.usage.to_json();
                    continue;
                }
                if row.kind == SESSION_ROW {
                    group["sessions"] = row.sessions.to_json();
                    continue;
                }
                let average = if row.count > 0 {
                    round3(row.total_ms / row.count as f64)
                } else {
                    0.0
                };
                let p95 = if query.p95 {
                    p95_ms(&row.histogram).map(round3)
                } else {
                    None
                };
                if row.kind == "command" {
                    group["commands"] = json!({
                        "count": row.count,
                        "error_count": row.error_count,
                        "avg_execution_time_ms": average,
                        "p95_execution_time_ms": p95,
                    });
                } else {
                    group["agents"] = json!({
                        "interactions": row.count,
                        "failures": row.error_count,
                        "input_tokens": row.tokens_in,
                        "output_tokens": row.tokens_out,
                        "avg_processing_time_ms": average,
                        "p95_processing_time_ms": p95,
                    });
                }
            }
            group
        })
        .collect();
    json!({
        "group_by": query.group_by.as_str(),
        "since": query.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "until": query.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "groups": groups,
        "truncated": truncated,
        "per_user_rows": if query.own_rows_only { "own" } else { "all" },
        "sessions": sessions.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-28T10:30:00Z".parse().unwrap()
    }

    #[test]
    fn defaults_are_the_last_day_by_user_in_whole_hours() {
        let q = SummaryQuery::parse([], now()).unwrap();
        assert_eq!(q.group_by, GroupBy::User);
        assert_eq!(q.limit, DEFAULT_GROUPS);
        assert_eq!(q.since.to_rfc3339(), "2026-11-27T10:00:00+00:00");
        assert_eq!(q.until.to_rfc3339(), "2026-11-28T11:00:00+00:00");
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let errors = SummaryQuery::parse(
            [
                ("since", "yesterday"),
                ("group_by", "team"),
                ("limit", "0"),
                ("p95", "yes"),
                ("x", "1"),
            ],
            now(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["since", "group_by", "limit", "p95", "x"]);
        let errors = SummaryQuery::parse(
            [("since", "2026-11-28T10:00:00Z"), ("until", "2026-11-28T09:00:00Z")],
            now(),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "until");
        let errors = SummaryQuery::parse([("since", "2020-01-01T00:00:00Z")], now()).unwrap_err();
        assert_eq!(errors[0].field, "since");
    }

    #[test]
    fn whole_days_are_read_from_daily_rows_and_the_rest_from_hourly_ones() {
        let at = |t: &str| -> DateTime<Utc> { t.parse().unwrap() };
        let query =
            |since: &str, until: &str| SummaryQuery::parse([("since", since), ("until", until)], now()).unwrap();
        let q = query("2026-11-25T20:30:00Z", "2026-11-28T03:00:00Z");
        assert_eq!(q.whole_days(), (at("2026-11-26T00:00:00Z"), at("2026-11-28T00:00:00Z")));
        let q = query("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
        assert_eq!(q.whole_days(), (at("2026-11-27T00:00:00Z"), at("2026-11-28T00:00:00Z")));
        let q = query("2026-11-27T09:00:00Z", "2026-11-27T23:00:00Z");
        assert_eq!(q.whole_days(), (q.until, q.until), "no whole day: hourly rows only");
    }

    #[test]
    fn buckets_are_a_quarter_of_a_doubling_wide() {
        assert_eq!(latency_bucket(0.0), 1);
        assert_eq!(latency_bucket(0.05), 1);
        assert_eq!(latency_bucket(0.1), 2);
        assert_eq!(latency_bucket(0.2), 6);
        assert_eq!(latency_bucket(1e12), HISTOGRAM_BUCKETS);
        for ms in [0.3, 1.0, 7.5, 120.0, 2100.0, 299_999.0] {
            let edge = bucket_upper_edge_ms(latency_bucket(ms)).unwrap();
            assert!(edge > ms && edge <= ms * 2f64.powf(0.25) * 1.0001, "{ms} → {edge}");
        }
    }

    #[test]
    fn p95_is_the_edge_of_the_bucket_holding_it() {
        let mut histogram = vec![0; HISTOGRAM_BUCKETS];
        histogram[latency_bucket(10.0) - 1] = 95;
        histogram[latency_bucket(1000.0) - 1] = 5;
        let p95 = p95_ms(&histogram).unwrap();
        assert!((10.0..10.0 * 1.19 + 0.01).contains(&p95), "{p95}");
        histogram[latency_bucket(1000.0) - 1] = 6;
        assert!(p95_ms(&histogram).unwrap() >= 1000.0);
        assert_eq!(p95_ms(&vec![0; HISTOGRAM_BUCKETS]), None);
    }

    #[test]
    fn groups_beyond_the_limit_are_left_out_and_said_so() {
        let row = |key: &str, kind: &str| AggregateRow {
            key: key.into(),
            kind: kind.into(),
            usage: Usage::default(),
            sessions: SessionFigures::default(),
            count: 4,
            error_count: 1,
            total_ms: 10.0,
            tokens_in: 7,
            tokens_out: 9,
            histogram: vec![0; HISTOGRAM_BUCKETS],
        };
        let mut q = SummaryQuery::parse([("p95", "true")], now()).unwrap();
        q.limit = 1;
        let data = summary_data(
            &q,
            &[row("alice", "command"), row("alice", "agent"), row("bob", "command")],
        );
        assert_eq!(data["truncated"], true);
        assert_eq!(data["groups"].as_array().unwrap().len(), 1);
        assert_eq!(data["groups"][0]["commands"]["avg_execution_time_ms"], 2.5);
        assert_eq!(data["groups"][0]["agents"]["input_tokens"], 7);
    }

    #[test]
    fn sessions_are_totalled_for_the_span_and_given_per_group_by_user_hour_and_day() {
        let row = |key: &str, kind: &str, sessions: SessionFigures| AggregateRow {
            key: key.into(),
            kind: kind.into(),
            usage: Usage::default(),
            sessions,
            count: sessions.started,
            error_count: 0,
            total_ms: 0.0,
            tokens_in: 0,
            tokens_out: 0,
            histogram: vec![],
        };
        let alices = SessionFigures {
            started: 3,
            active: 1,
            completed: 1,
            abandoned: 1,
            timed: 2,
            duration_ms: 3001,
        };
        let all = SessionFigures {
            started: 5,
            active: 3,
            ..alices
        };
        let q = SummaryQuery::parse([], now()).unwrap();
        let data = summary_data(
            &q,
            &[row("", SESSION_TOTAL_ROW, all), row("alice", SESSION_ROW, alices)],
        );
        assert_eq!(
            data["groups"].as_array().unwrap().len(),
            1,
            "the total is no group: {data}"
        );
        assert_eq!(
            data["groups"][0]["sessions"],
            json!({"started": 3, "active": 1, "completed": 1, "abandoned": 1, "avg_duration_ms": 1500.5})
        );
        assert_eq!(data["sessions"]["started"], 5);
        assert_eq!(data["sessions"]["active"], 3);
        let q = SummaryQuery::parse([("group_by", "command")], now()).unwrap();
        let data = summary_data(&q, &[row("", SESSION_TOTAL_ROW, SessionFigures::default())]);
        assert_eq!(data["groups"], json!([]));
        assert_eq!(
            data["sessions"],
            json!({"started": 0, "active": 0, "completed": 0, "abandoned": 0, "avg_duration_ms": null})
        );
    }
}
