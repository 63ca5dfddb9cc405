//! `ExportMetricsServiceRequest` → usage points. Claude Code's metrics are monotonic sums, one
//! series per metric and attribute set; delta temporality by default, cumulative when the
//! exporter asks for it (the store turns cumulative points into deltas).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, NumberDataPoint};
use serde_json::Value;

use super::attributes::{Attributes, cut};
use super::{
    COMMON_LABELS, Kept, MAX_ITEMS_PER_EXPORT, MAX_POINT_VALUE, Refusals, id_of, model_of, plausible_time, session_of,
};
use crate::domain::ids::UserId;
use crate::domain::usage::{UsageExport, UsageField, UsagePoint};

/// The metrics kept, as Claude Code names them.
pub const KEPT_METRICS: [&str; 8] = [
    "claude_code.token.usage",
    "claude_code.cost.usage",
    "claude_code.lines_of_code.count",
    "claude_code.commit.count",
    "claude_code.pull_request.count",
    "claude_code.active_time.total",
    "claude_code.session.count",
    "claude_code.code_edit_tool.decision",
];

/// Labels a point keeps besides [`COMMON_LABELS`] (its `type`, model and session are columns).
const POINT_LABELS: &[&str] = &[
    "query_source",
    "effort",
    "speed",
    "start_type",
    "decision",
    "source",
    "tool_name",
    "tool",
    "language",
];

/// The usage figure a point of `metric` with attribute `type` adds to.
pub fn usage_field(metric: &str, point_type: &str) -> Option<UsageField> {
    Some(match (metric, point_type) {
        ("claude_code.token.usage", "input") => UsageField::InputTokens,
        ("claude_code.token.usage", "output") => UsageField::OutputTokens,
        ("claude_code.token.usage", "cacheRead") => UsageField::CacheReadTokens,
        ("claude_code.token.usage", "cacheCreation") => UsageField::CacheCreationTokens,
        ("claude_code.cost.usage", _) => UsageField::CostUsd,
        ("claude_code.lines_of_code.count", "added") => UsageField::LinesAdded,
        ("claude_code.lines_of_code.count", "removed") => UsageField::LinesRemoved,
        ("claude_code.commit.count", _) => UsageField::Commits,
        ("claude_code.pull_request.count", _) => UsageField::PullRequests,
        ("claude_code.active_time.total", _) => UsageField::ActiveTimeS,
        _ => return None,
    })
}

/// What an export holds for the store, what was refused, and how many points of metrics this
/// version does not keep were dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsRead {
    pub export: UsageExport,
    pub refused: Refusals,
    pub unknown: u64,
}

/// Reads an export sent by `user` at `now_ns`.
pub fn read(request: &ExportMetricsServiceRequest, user: &UserId, now_ns: u64) -> MetricsRead {
    let mut read = MetricsRead::default();
    let mut kept = Kept::default();
    let metrics = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics);
    for metric in metrics {
        let name = metric.name.as_str();
        let points = match &metric.data {
            Some(Data::Sum(sum)) => Ok((sum.aggregation_temporality, &sum.data_points)),
            Some(Data::Gauge(gauge)) => Err(gauge.data_points.len().max(1)),
            Some(Data::Histogram(h)) => Err(h.data_points.len().max(1)),
            Some(Data::ExponentialHistogram(h)) => Err(h.data_points.len().max(1)),
            Some(Data::Summary(s)) => Err(s.data_points.len().max(1)),
            None => Err(1),
        };
        if !KEPT_METRICS.contains(&name) {
            read.unknown += match &points {
                Ok((_, points)) => points.len() as u64,
                Err(n) => *n as u64,
            };
            continue;
        }
        let (temporality, points) = match points {
            Ok(found) => found,
            Err(n) => {
                for _ in 0..n {
                    read.refused.refuse(format!("{name}: must be a sum"));
                }
                continue;
            }
        };
        let cumulative = match AggregationTemporality::try_from(temporality) {
            Ok(AggregationTemporality::Delta) => false,
            Ok(AggregationTemporality::Cumulative) => true,
            _ => {
                for _ in points {
                    read.refused.refuse(format!(
                        "{name}: aggregationTemporality must be 1 (delta) or 2 (cumulative)"
                    ));
                }
                continue;
            }
        };
        for point in points {
            if read.export.points.len() >= MAX_ITEMS_PER_EXPORT {
                read.refused
                    .refuse(format!("more than {MAX_ITEMS_PER_EXPORT} data points in one export"));
                continue;
            }
            let admitted = usage_point(name, cumulative, point, user, now_ns)
                .and_then(|p| kept.admit(p.id, p.session.as_ref()).map(|new| new.then_some(p)));
            match admitted {
                Ok(Some(point)) => read.export.points.push(point),
                Ok(None) => {}
                Err(reason) => read.refused.refuse(format!("{name}: {reason}")),
            }
        }
    }
    read
}

fn usage_point(
    metric: &str,
    cumulative: bool,
    point: &NumberDataPoint,
    user: &UserId,
    now_ns: u64,
) -> Result<UsagePoint, String> {
    let value = match point.value {
        Some(Number::AsDouble(v)) => v,
        Some(Number::AsInt(v)) => v as f64,
        None => return Err("a data point without a value".into()),
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{value} is not a count (finite, not negative)"));
    }
    if value > MAX_POINT_VALUE {
        return Err(format!("{value:e} is implausibly large (at most {MAX_POINT_VALUE:e})"));
    }
    // `-0.0` passes the sign check: counted as a plain zero.
    let value = value.abs();
    if !plausible_time(point.time_unix_nano, now_ns) {
        return Err(format!("timeUnixNano {} is not a plausible time", point.time_unix_nano));
    }
    let attrs = Attributes(&point.attributes);
    let session = session_of(attrs, user)?;
    let point_type = cut(&attrs.text("type").unwrap_or_default(), 64);
    // A cumulative series is one run of one process: its start time is part of it, so two
    // processes (or a restart) never take each other's totals for resets.
    let run = if cumulative {
        point.start_time_unix_nano.to_string()
    } else {
        String::new()
    };
    let series = id_of(user, &["otlp-series", metric, &attrs.canonical(), &run]);
    let (start, time) = (point.start_time_unix_nano.to_string(), point.time_unix_nano.to_string());
    let mut labels = attrs.labels(COMMON_LABELS);
    labels.extend(attrs.labels(POINT_LABELS));
    Ok(UsagePoint {
        id: id_of(user, &["otlp-point", &series.to_string(), &start, &time]),
        series,
        metric: metric.to_owned(),
        cumulative,
        // Stored as a bigint: a start past 2262 is no real start.
        start_ns: point.start_time_unix_nano.min(i64::MAX as u64),
        time_ns: point.time_unix_nano,
        value,
        session,
        model: model_of(attrs),
        field: usage_field(metric, &point_type),
        point_type,
        labels: Value::Object(labels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: &str = include_str!("../../../../events/otlp/metrics.json");

    fn recorded() -> ExportMetricsServiceRequest {
        serde_json::from_str(RECORDED).unwrap()
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    /// A time after the recording.
    const NOW: u64 = 1_796_187_700_000_000_000;

    #[test]
    fn the_recorded_export_becomes_usage_points_of_its_session() {
        // GIVEN what Claude Code 2.1.328 sent
        let read = read(&recorded(), &user("dev"), NOW);
        // THEN every point is kept, none refused, none unknown
        assert_eq!(read.refused, Refusals::default());
        assert_eq!(read.unknown, 0);
        let fields: Vec<_> = read
            .export
            .points
            .iter()
            .map(|p| (p.metric.as_str(), p.field))
            .collect();
        assert!(fields.contains(&("claude_code.token.usage", Some(UsageField::InputTokens))));
        assert!(fields.contains(&("claude_code.cost.usage", Some(UsageField::CostUsd))));
        assert!(fields.contains(&("claude_code.session.count", None)));
        let tokens = read
            .export
            .points
            .iter()
            .find(|p| p.field == Some(UsageField::InputTokens))
            .unwrap();
        assert_eq!(
            (tokens.model.as_str(), tokens.value, tokens.cumulative),
            ("claude-opus-5-5", 240.0, false)
        );
        let session = tokens.session.as_ref().unwrap();
        assert_eq!(session.claude_session_id, "628c2061-0941-40c6-896f-63efa727f5fc");
        assert_eq!(
            session.key,
            crate::domain::hooks::session_key(&user("dev"), &session.claude_session_id)
        );
        // AND the hashed user attribute is a label, not the identity
        assert_eq!(tokens.labels["user.id"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn ids_are_the_callers_own_and_the_same_for_a_retry() {
        let first = read(&recorded(), &user("dev"), NOW).export;
        let again = read(&recorded(), &user("dev"), NOW).export;
        let other = read(&recorded(), &user("someone-else"), NOW).export;
        assert_eq!(first, again);
        assert!(
            first
                .points
                .iter()
                .zip(&other.points)
                .all(|(a, b)| a.id != b.id && a.series != b.series)
        );
    }

    #[test]
    fn values_postgresql_could_not_keep_are_refused_alone_and_repeats_kept_once() {
        let point = |value: f64, session: &str| {
            serde_json::json!({"asDouble": value, "timeUnixNano": "1796187601039000000",
                "attributes": [{"key": "session.id", "value": {"stringValue": session}}]})
        };
        let mut points = vec![
            point(1e300, "s"),
            point(-0.0, "s"),
            point(-0.0, "s"),
            point(2.0, "s\u{0}x"),
        ];
        // With "s", 102 sessions: the last two are too many.
        points.extend((0..101).map(|n| point(1.0, &format!("session-{n}"))));
        let body = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "claude_code.commit.count", "sum": {"aggregationTemporality": 1, "dataPoints": points}}
        ]}]}]});
        let request: ExportMetricsServiceRequest = serde_json::from_value(body).unwrap();
        let read = read(&request, &user("dev"), NOW);
        // THEN the huge value, the control character and the 101st and 102nd sessions are refused
        assert_eq!(read.refused.count, 4, "{:?}", read.refused);
        let message = read.refused.message();
        assert!(
            message.contains("implausibly large")
                && message.contains("without control or invisible formatting characters"),
            "{message}"
        );
        assert!(message.contains("sessions in one export"), "{message}");
        // AND the zero sent twice is kept once, as a plain zero
        let zeros: Vec<_> = read.export.points.iter().filter(|p| p.value == 0.0).collect();
        assert_eq!(zeros.len(), 1);
        assert!(zeros[0].value.is_sign_positive());
        assert_eq!(read.export.points.len(), 1 + 99);
    }

    #[test]
    fn points_that_are_not_counts_are_refused_and_unknown_metrics_counted() {
        let body = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "claude_code.token.usage", "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [
                {"asDouble": -1, "timeUnixNano": "1796187601039000000"},
                {"asDouble": 5, "timeUnixNano": "0"},
                {"asInt": "7", "timeUnixNano": "1796187601039000000", "attributes": [{"key": "type", "value": {"stringValue": "output"}}]}
            ]}},
            {"name": "claude_code.cost.usage", "gauge": {"dataPoints": [{"asDouble": 1, "timeUnixNano": "1796187601039000000"}]}},
            {"name": "claude_code.commit.count", "sum": {"aggregationTemporality": 0, "dataPoints": [{"asInt": "1", "timeUnixNano": "1796187601039000000"}]}},
            {"name": "some.other.metric", "sum": {"aggregationTemporality": 1, "dataPoints": [{"asInt": "1"}, {"asInt": "2"}]}}
        ]}]}]});
        let request: ExportMetricsServiceRequest = serde_json::from_value(body).unwrap();
        let read = read(&request, &user("dev"), NOW);
        assert_eq!(read.export.points.len(), 1);
        assert_eq!(read.export.points[0].field, Some(UsageField::OutputTokens));
        assert_eq!(read.refused.count, 4);
        assert_eq!(read.unknown, 2);
        let message = read.refused.message();
        assert!(message.starts_with("4 refused: "), "{message}");
        assert!(
            message.contains("not a count") && message.contains("must be a sum"),
            "{message}"
        );
    }
}
