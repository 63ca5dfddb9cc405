//! Writing an OTLP export (see `MetricStore::write_usage`): the statements, and the export as
//! the JSON documents they read with `jsonb_to_recordset` (one parameter per table, whatever the
//! number of points).
//!
//! Cumulative series are serialised per series: a placeholder row is inserted if missing, then
//! every series of the export is locked (`FOR UPDATE`, in series order) and read, the deltas
//! are computed by the domain (`usage::count_points`), and one statement stores the points and
//! events, the aggregates, the series' new states and the sessions, in the same transaction.
//! An export of delta points only is that one statement.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::usage::{SeriesState, UsageExport, UsageField, UsagePoint};

/// `$1`: the series ids. Makes sure each has a row to lock (a new series reads as a state at
/// time 0, so its first point counts whole).
pub(super) fn ensure_series(schema: &str) -> String {
    format!(
        "INSERT INTO {schema}.otlp_series (series, start_ns, last_ns, last_value) \
         SELECT s, 0, 0, 0 FROM unnest($1::uuid[]) AS s ORDER BY s ON CONFLICT (series) DO NOTHING"
    )
}

/// `$1`: the series ids; their last states, locked until the transaction ends.
pub(super) fn lock_series(schema: &str) -> String {
    format!(
        "SELECT series, start_ns, last_ns, last_value FROM {schema}.otlp_series \
         WHERE series = ANY($1::uuid[]) ORDER BY series FOR UPDATE"
    )
}

/// The series' states as read by [`lock_series`] (a placeholder is no state).
pub(super) fn series_states(rows: &[tokio_postgres::Row]) -> Vec<(Uuid, SeriesState)> {
    rows.iter()
        .filter(|row| row.get::<_, i64>(2) > 0)
        .map(|row| {
            (
                row.get(0),
                SeriesState {
                    start_ns: row.get::<_, i64>(1) as u64,
                    time_ns: row.get::<_, i64>(2) as u64,
                    value: row.get(3),
                },
            )
        })
        .collect()
}

/// Stores the export: `$1` organization, `$2` user, `$3` points (with what each counts), `$4`
/// events, `$5` the series' new states, `$6` the sessions. Answers the ids newly stored.
pub(super) fn write_usage(schema: &str) -> String {
    let fields: Vec<&str> = UsageField::ALL.iter().map(|f| f.name()).collect();
    let sums: Vec<String> = fields
        .iter()
        .map(|f| format!("coalesce(sum(delta) FILTER (WHERE usage_field = '{f}'), 0)"))
        .collect();
    let adds: Vec<String> = fields.iter().map(|f| format!("{f} = u.{f} + excluded.{f}")).collect();
    let aggregate = |period: &str, unit: &str| {
        format!(
            "{period} AS (INSERT INTO {schema}.{period}_usage AS u ({unit}, user_id, model, {}) \
             SELECT date_trunc('{unit}', \"time\", 'UTC'), $2, model, {} FROM counted GROUP BY 1, 3 ORDER BY 1, 3 \
             ON CONFLICT ({unit}, user_id, model) DO UPDATE SET {})",
            fields.join(", "),
            sums.join(", "),
            adds.join(", ")
        )
    };
    format!(
        "WITH points AS (SELECT * FROM jsonb_to_recordset($3::jsonb) AS p(id uuid, series uuid, metric text, \
            session_id uuid, claude_session_id text, model text, point_type text, usage_field text, cumulative boolean, \
            start_time timestamptz, \"time\" timestamptz, value float8, delta float8, labels jsonb)), \
         new_points AS (INSERT INTO {schema}.otlp_points (id, organization_id, user_id, series, metric, session_id, \
            claude_session_id, model, point_type, usage_field, cumulative, start_time, \"time\", value, delta, labels) \
            SELECT id, $1, $2, series, metric, session_id, claude_session_id, model, point_type, usage_field, cumulative, \
            start_time, \"time\", value, delta, labels FROM points ORDER BY id ON CONFLICT (id) DO NOTHING \
            RETURNING id, \"time\", model, usage_field, delta), \
         events AS (SELECT * FROM jsonb_to_recordset($4::jsonb) AS e(id uuid, event_name text, session_id uuid, \
            claude_session_id text, prompt_id text, sequence bigint, model text, usage_field text, \
            \"timestamp\" timestamptz, attributes jsonb)), \
         new_events AS (INSERT INTO {schema}.otlp_events (id, organization_id, user_id, event_name, session_id, \
            claude_session_id, prompt_id, sequence, model, usage_field, \"timestamp\", attributes) \
            SELECT id, $1, $2, event_name, session_id, claude_session_id, prompt_id, sequence, model, usage_field, \
            \"timestamp\", attributes FROM events ORDER BY id ON CONFLICT (id) DO NOTHING \
            RETURNING id, \"timestamp\" AS \"time\", model, usage_field, 1::float8 AS delta), \
         counted AS (SELECT \"time\", model, usage_field, delta FROM new_points WHERE usage_field IS NOT NULL \
            UNION ALL SELECT \"time\", model, usage_field, delta FROM new_events WHERE usage_field IS NOT NULL), \
         {}, {}, \
         series AS (UPDATE {schema}.otlp_series AS s SET start_ns = n.start_ns, last_ns = n.last_ns, \
            last_value = n.last_value FROM jsonb_to_recordset($5::jsonb) AS n(series uuid, start_ns bigint, \
            last_ns bigint, last_value float8) WHERE s.series = n.series), \
         sessions AS (SELECT * FROM jsonb_to_recordset($6::jsonb) AS s(id uuid, started timestamptz, context jsonb)), \
         started AS (INSERT INTO {schema}.user_sessions (id, organization_id, user_id, session_start, context) \
            SELECT id, $1, $2, started, context FROM sessions ORDER BY id ON CONFLICT (id) DO NOTHING), \
         touched AS (UPDATE {schema}.user_sessions SET updated_at = now() \
            WHERE id IN (SELECT id FROM sessions) AND user_id = $2 AND status = 'active') \
         SELECT ARRAY(SELECT id FROM new_points), ARRAY(SELECT id FROM new_events)",
        aggregate("hourly", "hour"),
        aggregate("daily", "day"),
    )
}

fn time(ns: u64) -> String {
    crate::domain::usage::from_unix_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `$3` of [`write_usage`]: the points to store, each with what it counts.
pub(super) fn points_json(points: &[(&UsagePoint, f64)]) -> Value {
    Value::Array(
        points
            .iter()
            .map(|(p, delta)| {
                json!({
                    "id": p.id,
                    "series": p.series,
                    "metric": p.metric,
                    "session_id": p.session.as_ref().map(|s| s.key),
                    "claude_session_id": p.session.as_ref().map(|s| &s.claude_session_id),
                    "model": p.model,
                    "point_type": p.point_type,
                    "usage_field": p.field.map(UsageField::name),
                    "cumulative": p.cumulative,
                    "start_time": (p.start_ns > 0).then(|| time(p.start_ns)),
                    "time": time(p.time_ns),
                    "value": p.value,
                    "delta": delta,
                    "labels": p.labels,
                })
            })
            .collect(),
    )
}

/// `$4` of [`write_usage`].
pub(super) fn events_json(export: &UsageExport) -> Value {
    Value::Array(
        export
            .events
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "event_name": e.name,
                    "session_id": e.session.as_ref().map(|s| s.key),
                    "claude_session_id": e.session.as_ref().map(|s| &s.claude_session_id),
                    "prompt_id": e.prompt_id,
                    "sequence": e.sequence,
                    "model": e.model,
                    "usage_field": e.field.map(UsageField::name),
                    "timestamp": time(e.time_ns),
                    "attributes": e.attributes,
                })
            })
            .collect(),
    )
}

/// `$5` of [`write_usage`].
pub(super) fn series_json(series: &[(Uuid, SeriesState)]) -> Value {
    Value::Array(
        series
            .iter()
            .map(|(id, s)| json!({"series": id, "start_ns": s.start_ns, "last_ns": s.time_ns, "last_value": s.value}))
            .collect(),
    )
}

/// `$6` of [`write_usage`]: each session with the earliest time the export saw it.
pub(super) fn sessions_json(export: &UsageExport) -> Value {
    Value::Array(
        export
            .sessions()
            .into_iter()
            .map(|(session, first)| {
                json!({
                    "id": session.key,
                    "started": first.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "context": crate::domain::usage::session_context(&session),
                })
            })
            .collect(),
    )
}
