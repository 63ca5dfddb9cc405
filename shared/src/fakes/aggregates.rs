//! The in-memory store's summaries: rows grouped and ordered as the PostgreSQL summary statement
//! groups and orders its aggregates (the store contract checks the two agree).

use chrono::{DateTime, Utc};

use crate::domain::sessions::{SessionRecord, SessionStatus};
use crate::domain::summary::{
    AggregateRow, GroupBy, HISTOGRAM_BUCKETS, NO_MODEL_KEY, SESSION_ROW, SESSION_TOTAL_ROW, SessionFigures,
    SummaryQuery, latency_bucket,
};
use crate::domain::usage::{Usage, UsageField};

/// One stored record as a summary counts it: (user, kind, name, when, ms, failed, tokens in,
/// tokens out).
pub(super) type Counted<'a> = (&'a str, &'static str, &'a str, DateTime<Utc>, f64, bool, i64, i64);

/// One stored usage amount as a summary counts it: (user, model, when, field, amount).
pub(super) type CountedUsage<'a> = (&'a str, &'a str, DateTime<Utc>, UsageField, f64);

/// The key of a record of `user` and `name` (command, agent or model) at `when`.
fn key_of(group_by: GroupBy, user: &str, name: &str, when: DateTime<Utc>) -> String {
    match group_by {
        GroupBy::User => user.to_owned(),
        GroupBy::Command | GroupBy::Agent => name.to_owned(),
        GroupBy::Model if name.is_empty() => NO_MODEL_KEY.to_owned(),
        GroupBy::Model => name.to_owned(),
        GroupBy::Hour => when.format("%Y-%m-%dT%H:00:00Z").to_string(),
        GroupBy::Day => when.format("%Y-%m-%d").to_string(),
    }
}

fn empty_row(key: String, kind: &str) -> AggregateRow {
    AggregateRow {
        key,
        kind: kind.to_owned(),
        usage: Usage::default(),
        sessions: SessionFigures::default(),
        count: 0,
        error_count: 0,
        total_ms: 0.0,
        tokens_in: 0,
        tokens_out: 0,
        histogram: vec![0; HISTOGRAM_BUCKETS],
    }
}

/// Adds one session to the figures of a summary row.
fn count_session(row: &mut AggregateRow, session: &SessionRecord) {
    let figures = &mut row.sessions;
    figures.started += 1;
    match session.status {
        SessionStatus::Active => figures.active += 1,
        SessionStatus::Completed => figures.completed += 1,
        SessionStatus::Abandoned => figures.abandoned += 1,
    }
    if let Some(ms) = session.total_duration_ms {
        figures.timed += 1;
        figures.duration_ms += ms;
    }
    row.count = figures.started;
}

/// The rows of `query` over `records`, `usage` and `sessions` (with their users): first the
/// span's session total, then the first `limit + 1` groups, busiest first (or in time order for
/// hours and days), each group's kinds together.
pub(super) fn summarise<'a>(
    records: impl Iterator<Item = Counted<'a>>,
    usage: impl Iterator<Item = CountedUsage<'a>>,
    sessions: impl Iterator<Item = (&'a str, &'a SessionRecord)>,
    query: &SummaryQuery,
) -> Vec<AggregateRow> {
    let mut rows: Vec<AggregateRow> = vec![];
    let in_span = |when: DateTime<Utc>| when >= query.since && when < query.until;
    let wanted_user = |user: &str| query.user.as_ref().is_none_or(|u| u.as_str() == user);
    let mut span_total = empty_row(String::new(), SESSION_TOTAL_ROW);
    for (user, session) in sessions {
        if !in_span(session.session_start) || !wanted_user(user) {
            continue;
        }
        count_session(&mut span_total, session);
        if !query.group_by.has_sessions() {
            continue;
        }
        let key = key_of(query.group_by, user, "", session.session_start);
        let at = match rows.iter().position(|r| r.key == key && r.kind == SESSION_ROW) {
            Some(at) => at,
            None => {
                rows.push(empty_row(key, SESSION_ROW));
                rows.len() - 1
            }
        };
        count_session(&mut rows[at], session);
    }
    for (user, model, when, field, amount) in usage {
        if !query.group_by.has_usage() || !in_span(when) || !wanted_user(user) {
            continue;
        }
        let key = key_of(query.group_by, user, model, when);
        let at = match rows.iter().position(|r| r.key == key && r.kind == "usage") {
            Some(at) => at,
            None => {
                rows.push(empty_row(key, "usage"));
                rows.len() - 1
            }
        };
        let row = &mut rows[at];
        row.usage.add(field, amount);
        row.count = row.usage.get(UsageField::ApiRequests).round() as i64;
        row.error_count = row.usage.get(UsageField::ApiErrors).round() as i64;
    }
    for (user, kind, name, when, ms, failed, tin, tout) in records {
        let wanted = match query.group_by {
            GroupBy::Command => kind == "command",
            GroupBy::Agent => kind == "agent",
            GroupBy::Model => false,
            _ => true,
        };
        if !wanted || !in_span(when) || !wanted_user(user) {
            continue;
        }
        let key = key_of(query.group_by, user, name, when);
        let at = match rows.iter().position(|r| r.key == key && r.kind == kind) {
            Some(at) => at,
            None => {
                rows.push(empty_row(key, kind));
                rows.len() - 1
            }
        };
        let row = &mut rows[at];
        row.count += 1;
        row.error_count += i64::from(failed);
        row.total_ms += ms;
        row.tokens_in += tin;
        row.tokens_out += tout;
        row.histogram[latency_bucket(ms) - 1] += 1;
    }
    let total = |key: &str| rows.iter().filter(|r| r.key == key).map(|r| r.count).sum::<i64>();
    let mut keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    keys.sort_by(|a, b| {
        if query.group_by.chronological() {
            a.cmp(b)
        } else {
            total(b).cmp(&total(a)).then(a.cmp(b))
        }
    });
    keys.dedup();
    keys.truncate(query.limit as usize + 1);
    let groups = keys
        .iter()
        .flat_map(|key| rows.iter().filter(|r| &r.key == key).cloned().collect::<Vec<_>>());
    std::iter::once(span_total).chain(groups).collect()
}
