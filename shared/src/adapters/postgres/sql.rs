//! The SQL of one tenant: every statement the store runs, built once per tenant with its quoted
//! schema name (values are always bind parameters).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::migrate::quote_ident;
use crate::domain::ids::OrgId;
use crate::domain::kind::{Kind, PerKind};
use crate::domain::sessions::{MAX_AGENTS, SessionAction, SessionStatus};
use crate::domain::summary::{GroupBy, NO_MODEL_KEY, SESSION_ROW, SESSION_TOTAL_ROW};
use crate::domain::usage::UsageField;
use crate::domain::validation::Choice;
use crate::lock;

/// The request-path statements of one tenant, with its quoted schema name filled in once.
pub(super) struct TenantSql {
    pub(super) command_execution: InsertSql,
    pub(super) agent_interaction: InsertSql,
    pub(super) productivity_metric: InsertSql,
    pub(super) session_start: InsertSql,
    pub(super) session_update: String,
    pub(super) session_end: String,
    pub(super) abandon_idle: String,
    pub(super) hook_event: String,
    pub(super) taken_ids: String,
    pub(super) ensure_series: String,
    pub(super) lock_series: String,
    pub(super) write_usage: String,
    schema: String,
    /// The envelope statements, by the set of kinds present, built on first use.
    envelopes: Mutex<HashMap<PerKind<bool>, Arc<str>>>,
    /// The summaries' tenant functions, by grouping and whether p95 is asked for, built on
    /// first use.
    summaries: Mutex<HashMap<(GroupBy, bool), Arc<SummaryFunction>>>,
}

impl TenantSql {
    pub(super) fn new(org: &OrgId) -> Self {
        let schema = quote_ident(&org.schema_name());
        Self {
            command_execution: InsertSql::aggregated(&schema, Kind::CommandExecution, 10),
            agent_interaction: InsertSql::aggregated(&schema, Kind::AgentInteraction, 11),
            productivity_metric: InsertSql::new(
                &format!("{schema}.productivity_metrics"),
                "id, organization_id, user_id, metric_type, value, unit, period_start, period_end, dimensions",
                "$1, $2, $3, $4, $5, $6, $7, $8, $9",
            ),
            session_start: InsertSql::new(
                &format!("{schema}.user_sessions"),
                "id, organization_id, user_id, session_start, context",
                "$1, $2, $3, coalesce($4, now()), $5",
            ),
            session_update: session_change(&schema, SessionAction::Update, ""),
            session_end: session_change(
                &schema,
                SessionAction::End,
                ", status = 'completed', session_end = now(), \
                 total_duration_ms = GREATEST(0, floor(extract(epoch FROM now() - session_start) * 1000))::bigint, \
                 productivity_score = coalesce($7, productivity_score)",
            ),
            envelopes: Default::default(),
            summaries: Default::default(),
            abandon_idle: format!(
                "UPDATE {schema}.user_sessions SET status = 'abandoned', session_end = updated_at, \
                 total_duration_ms = GREATEST(0, floor(extract(epoch FROM updated_at - session_start) * 1000))::bigint, \
                 updated_at = now() \
                 WHERE status = 'active' AND updated_at < now() - make_interval(secs => $1) RETURNING id"
            ),
            hook_event: hook_event_statement(&schema),
            taken_ids: taken_ids_statement(&schema),
            ensure_series: super::usage::ensure_series(&schema),
            lock_series: super::usage::lock_series(&schema),
            write_usage: super::usage::write_usage(&schema),
            schema,
        }
    }

    /// The statement writing the kinds in `present` (see [`envelope_statement`]).
    pub(super) fn envelope(&self, present: &PerKind<bool>) -> Arc<str> {
        lock(&self.envelopes)
            .entry(present.clone())
            .or_insert_with(|| envelope_statement(&self.schema, present).into())
            .clone()
    }

    /// The tenant function of a summary (see [`SummaryFunction`]).
    pub(super) fn summary(&self, group_by: GroupBy, p95: bool) -> Arc<SummaryFunction> {
        lock(&self.summaries)
            .entry((group_by, p95))
            .or_insert_with(|| SummaryFunction::new(&self.schema, group_by, p95).into())
            .clone()
    }
}

/// A summary statement ([`summary_statement`]) run as a function of the tenant's schema, so that
/// PostgreSQL parses and analyses it once per connection instead of on every request (the
/// request path sends unnamed statements only: no session state, for RDS Proxy and PgBouncer).
/// It is still planned on every call with the call's values (`force_custom_plan`): one generic
/// plan for every span and user was 4× slower in `make bench`'s summary (day grouping 18 ms
/// against 4), and PostgreSQL's own choice could switch to it after five calls.
///
/// The function is named after a digest of what it runs, and created the first time a
/// container finds it missing (the store, under the tenant's migration lock): a deploy that
/// changes the statement calls a new function while the previous deploy's containers keep theirs,
/// and no migration has to follow the statement's every change.
pub(super) struct SummaryFunction {
    /// `SELECT * FROM` the function, with the statement's six parameters.
    pub(super) call: String,
    /// The function's name and parameter types, as `to_regprocedure` reads them.
    pub(super) signature: String,
    /// `CREATE FUNCTION`, its body the statement.
    pub(super) definition: String,
}

/// The parameters of every summary function: `$1`..`$6` of [`summary_statement`].
const SUMMARY_PARAMETERS: &str = "timestamptz, timestamptz, bigint, timestamptz, timestamptz, text";

impl SummaryFunction {
    fn new(schema: &str, group_by: GroupBy, p95: bool) -> Self {
        use sha2::{Digest, Sha256};
        // The digest of the whole definition with stand-ins for the schema and the name: the
        // same name in every tenant, and a new one for any change of the statement or its wrapper.
        let digest = Sha256::digest(summary_function("tenant", "summary", group_by, p95).as_bytes());
        let name = format!(
            "summary_{}{}_{}",
            group_by.as_str(),
            if p95 { "_p95" } else { "" },
            crate::domain::api_keys::hex(&digest[..6])
        );
        Self {
            // The rows in the statement's order (sessions first, then the groups by position),
            // which a function scan does not promise by itself.
            call: format!(
                "SELECT * FROM {schema}.{name}($1, $2, $3, $4, $5, $6) WITH ORDINALITY AS answer \
                 ORDER BY answer.ordinality"
            ),
            signature: format!("{schema}.{name}({SUMMARY_PARAMETERS})"),
            definition: summary_function(schema, &name, group_by, p95),
        }
    }
}

/// `CREATE FUNCTION` of the summary function `name`: its body the summary statement.
fn summary_function(schema: &str, name: &str, group_by: GroupBy, p95: bool) -> String {
    let usage_columns = UsageField::ALL.iter().map(|f| format!(", {} float8", f.name()));
    let session_columns = SESSION_COLUMNS_OF_SUMMARY
        .iter()
        .map(|(name, _)| format!(", {name} bigint"));
    let columns: String = usage_columns.chain(session_columns).collect();
    // `use_column`: the result's column names (count, kind, …) are also the names of the
    // statement's columns, which they must mean. The schema holds only `[A-Za-z0-9_-]`
    // (`OrgId`), so it cannot end the dollar quote.
    format!(
        "CREATE FUNCTION {schema}.{name}({SUMMARY_PARAMETERS}) \
         RETURNS TABLE (key text, kind text, count bigint, error_count bigint, total_ms float8, \
            tokens_in bigint, tokens_out bigint, buckets smallint[], counts bigint[]{columns}) \
         LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $summary$ \
         #variable_conflict use_column\n\
         BEGIN RETURN QUERY {}; END $summary$",
        summary_statement(schema, group_by, p95)
    )
}

/// An idempotent insert, and the read that finds the stored row when the id existed.
pub(super) struct InsertSql {
    pub(super) insert: String,
    pub(super) select_existing: String,
}

impl InsertSql {
    /// One metric of an aggregated kind through its tenant function `insert_<kind>` (migration
    /// 0008, singular: one row in scalar statements), which also counts it in the rolling
    /// aggregates, in the same statement: a skipped (already stored) id counts nothing. The
    /// parameters are those of a plain insert (`$1` the id, `$2` the organization, `$3` the user,
    /// then the kind's columns up to `$params`, the last its timestamp).
    fn aggregated(schema: &str, kind: Kind, params: usize) -> Self {
        let columns: Vec<String> = std::iter::once(1)
            .chain(4..=params)
            .map(|param| format!("${param}"))
            .collect();
        Self {
            insert: format!(
                "SELECT stored_id, stored_at, $3 FROM {schema}.insert_{}($2, $3, now(), {})",
                kind.singular(),
                columns.join(", ")
            ),
            select_existing: format!(
                "SELECT id, created_at, user_id FROM {schema}.{} WHERE id = $1",
                kind.plural()
            ),
        }
    }

    /// A plain insert that skips an existing id (cheap to plan on every call); when it returns
    /// no row, `select_existing` reads the stored one. `$1` must be the id.
    fn new(table: &str, columns: &str, values: &str) -> Self {
        Self {
            insert: format!(
                "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING RETURNING id, created_at, user_id"
            ),
            select_existing: format!("SELECT id, created_at, user_id FROM {table} WHERE id = $1"),
        }
    }
}

/// How each kind of metric is inserted from arrays (one array per column, of the types in
/// `arrays`, in `EnvelopeColumns::params` order). `$1` is the organization, `$2` the user, `$3`
/// the envelope's `received_at` (the default timestamp). Aggregated kinds go through their
/// tenant function `insert_<kind>s` (migration 0007; plural: a batch), which takes exactly
/// these; the others are a plain insert of `columns` from `select` over `unnest` (columns `id`,
/// `a1`, `a2`, ...).
struct KindInsert {
    arrays: &'static [&'static str],
    plain: Option<PlainInsert>,
}

struct PlainInsert {
    columns: &'static str,
    select: &'static str,
}

fn kind_insert(kind: Kind) -> KindInsert {
    match kind {
        Kind::CommandExecution => KindInsert {
            arrays: &[
                "uuid",
                "text",
                "jsonb",
                "float8",
                "text",
                "text",
                "jsonb",
                "timestamptz",
            ],
            plain: None,
        },
        Kind::AgentInteraction => KindInsert {
            arrays: &[
                "uuid",
                "text",
                "text",
                "int8",
                "int8",
                "float8",
                "bool",
                "jsonb",
                "timestamptz",
            ],
            plain: None,
        },
        Kind::UserSession => KindInsert {
            arrays: &[
                "uuid",
                "timestamptz",
                "timestamptz",
                "int8",
                "jsonb",
                "float8",
                "jsonb",
                "text",
            ],
            plain: Some(PlainInsert {
                columns: "id, organization_id, user_id, session_start, session_end, total_duration_ms, \
                          commands_executed, agents_used, productivity_score, context, status",
                select: "r.id, $1, $2, r.a1, r.a2, \
                         CASE WHEN r.a2 IS NULL THEN NULL \
                              ELSE GREATEST(0, floor(extract(epoch FROM r.a2 - r.a1) * 1000))::bigint END, \
                         r.a3::integer, ARRAY(SELECT jsonb_array_elements_text(r.a4)), r.a5, r.a6, r.a7",
            }),
        },
        Kind::ProductivityMetric => KindInsert {
            arrays: &["uuid", "text", "float8", "text", "timestamptz", "timestamptz", "jsonb"],
            plain: Some(PlainInsert {
                columns: "id, organization_id, user_id, metric_type, value, unit, period_start, period_end, dimensions",
                select: "r.id, $1, $2, r.a1, r.a2, r.a3, r.a4, r.a5, r.a6",
            }),
        },
    }
}

/// Whether the envelope statement for `present` is one plain insert (its row count the answer).
fn is_plain_insert(present: &PerKind<bool>) -> bool {
    let kinds: Vec<Kind> = present.iter().filter(|(_, p)| **p).map(|(k, _)| k).collect();
    kinds.len() == 1 && !kinds[0].is_aggregated()
}

/// The statement that writes the kinds in `present`, each skipping ids already stored.
/// Sessions or productivity metrics alone are one plain insert (its row count is the answer);
/// otherwise one statement, atomic as a whole, answers one count per kind in [`Kind::ALL`]
/// order: plain kinds are data-modifying CTEs, and commands and agents (with their aggregates)
/// calls of their tenant functions, evaluated in that order (commands first), so every writer
/// takes the aggregates' row locks in the same order.
pub(super) fn envelope_statement(schema: &str, present: &PerKind<bool>) -> String {
    let mut next_param = 4;
    let mut ctes = Vec::new();
    let mut counts = Vec::new();
    for kind in Kind::ALL {
        if !present[kind] {
            counts.push("0::bigint".to_owned());
            continue;
        }
        let spec = kind_insert(kind);
        let arrays: Vec<String> = spec
            .arrays
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("${}::{ty}[]", next_param + i))
            .collect();
        next_param += spec.arrays.len();
        let table = kind.plural();
        let Some(plain) = spec.plain else {
            counts.push(format!(
                "(SELECT count(*) FROM {schema}.insert_{table}($1, $2, $3, {}))",
                arrays.join(", ")
            ));
            continue;
        };
        let names: Vec<String> = std::iter::once("id".to_owned())
            .chain((1..spec.arrays.len()).map(|i| format!("a{i}")))
            .collect();
        let insert = format!(
            "INSERT INTO {schema}.{table} ({}) SELECT {} FROM unnest({}) AS r({}) ON CONFLICT (id) DO NOTHING",
            plain.columns,
            plain.select,
            arrays.join(", "),
            names.join(", ")
        );
        if is_plain_insert(present) {
            return insert;
        }
        ctes.push(format!("new_{table} AS ({insert} RETURNING 1)"));
        counts.push(format!("(SELECT count(*) FROM new_{table})"));
    }
    let with = if ctes.is_empty() {
        String::new()
    } else {
        format!("WITH {} ", ctes.join(", "))
    };
    format!("{with}SELECT {}", counts.join(", "))
}

pub(super) const SESSION_COLUMNS: &str = "id, status, session_start, session_end, total_duration_ms, commands_executed, \
                               agents_used, productivity_score, context, updated_at";

/// One statement that applies `action` to session `$1` of user `$2` when its status allows,
/// merging the activity (`$3` commands, `$4` agents, `$5` context, `$6` the Claude Code session
/// whose tool uses it counts) and `extra_set`, and says
/// what happened: `changed` with the record, the session's status when refused, `other_user`,
/// or no row for an unknown session.
pub(super) fn session_change(schema: &str, action: SessionAction, extra_set: &str) -> String {
    let table = format!("{schema}.user_sessions");
    let tool_uses = tool_use_events();
    let allowed = [
        SessionStatus::Active,
        SessionStatus::Completed,
        SessionStatus::Abandoned,
    ]
    .into_iter()
    .filter(|status| action.allowed_from(*status))
    .map(|status| format!("'{}'", status.as_str()))
    .collect::<Vec<_>>()
    .join(", ");
    // The merged context stays within the bounds `sessions::context_fits` states, checked on the
    // row being updated (so a concurrent update is checked again on the row it left), and only
    // when the change brings context: a heartbeat or an end never fails on a full context.
    // PostgreSQL measures `jsonb` text (a space after `:` and `,`), a little more than the
    // compact JSON the request check measures.
    let fits = format!(
        "($5::jsonb IS NULL OR ((SELECT count(*) FROM jsonb_object_keys(context || $5)) <= {} \
         AND octet_length((context || $5)::text) <= {}))",
        crate::domain::sessions::MAX_CONTEXT_KEYS,
        crate::domain::sessions::MAX_CONTEXT_BYTES
    );
    format!(
        "WITH target AS (SELECT user_id, status FROM {table} WHERE id = $1), \
         changed AS ( \
            UPDATE {table} SET \
                commands_executed = GREATEST(commands_executed, coalesce($3, commands_executed), ( \
                    SELECT count(*) FROM {schema}.hook_events \
                    WHERE session_id = $6 AND user_id = $2 AND event_name IN ({tool_uses}))), \
                agents_used = (SELECT coalesce(array_agg(agent ORDER BY first_seen), '{{}}') FROM ( \
                    SELECT agent, min(n) AS first_seen \
                    FROM unnest(agents_used || coalesce($4, '{{}}'::text[])) WITH ORDINALITY AS u(agent, n) \
                    GROUP BY agent ORDER BY first_seen LIMIT {MAX_AGENTS}) AS merged), \
                context = context || coalesce($5, '{{}}'::jsonb), \
                updated_at = now(){extra_set} \
            WHERE id = $1 AND user_id = $2 AND status IN ({allowed}) AND {fits} \
            RETURNING {SESSION_COLUMNS}) \
         SELECT 'changed', to_jsonb(changed) FROM changed \
         UNION ALL \
         SELECT CASE WHEN target.user_id <> $2 THEN 'other_user' \
                     WHEN target.status IN ({allowed}) AND $5::jsonb IS NOT NULL THEN 'context_full' \
                     ELSE target.status END, NULL::jsonb \
         FROM target WHERE NOT EXISTS (SELECT 1 FROM changed)"
    )
}

/// The aggregates of `$1 <= time < $2`, summed per group and kind, for the first `$3` groups:
/// whole days `$4 <= day < $5` from the daily rows, the hours around them from the hourly rows
/// (grouping by hour reads hourly rows only); with `p95`, each group's latency buckets too
/// (`bucket` and `count` arrays); with `$6`, only that user's rows. Usage rows (kind `usage`,
/// from the usage aggregates) come with
/// the groups that carry usage; their model requests and errors are their count and errors.
/// The sessions started in the span (the same user filter) come as one [`SESSION_TOTAL_ROW`] of
/// key `''`, first, and — for the groupings that carry sessions — a [`SESSION_ROW`] per group
/// (count: the sessions started, so they rank groups too).
/// Columns: key, kind, count, error_count, total_ms, tokens_in, tokens_out, buckets, counts,
/// one per [`UsageField::ALL`], then one per [`SESSION_COLUMNS_OF_SUMMARY`].
///
/// What keeps it fast over a month of aggregates (`make bench`, "summary"): each source is summed
/// on its own (metrics, usage and sessions share no kind, so no group spans two), so the
/// thousands of metric rows are not also summed over usage and session columns that are zero
/// for them; hours and days are grouped as timestamps, formatted only once per group; and a key
/// computed from a column (hour, day, model) is computed once per sum of a range's rows.
pub(super) fn summary_statement(schema: &str, group_by: GroupBy, p95: bool) -> String {
    let only = match group_by {
        GroupBy::Command => "AND kind = 'command'",
        GroupBy::Agent => "AND kind = 'agent'",
        _ => "",
    };
    // The stored column a group is made of, and the group's key when it is computed from that
    // column (`None`: the column is the key).
    let source = |time: &str, name: &str| match group_by {
        GroupBy::User => "user_id".to_owned(),
        GroupBy::Command | GroupBy::Agent | GroupBy::Model => name.to_owned(),
        GroupBy::Hour | GroupBy::Day => time.to_owned(),
    };
    let computed_key = |column: &str| match group_by {
        GroupBy::User | GroupBy::Command | GroupBy::Agent => None,
        GroupBy::Model => Some(format!(
            "CASE WHEN {column} = '' THEN '{NO_MODEL_KEY}' ELSE {column} END"
        )),
        GroupBy::Hour => Some(format!("date_trunc('hour', {column} AT TIME ZONE 'UTC')")),
        GroupBy::Day => Some(format!("date_trunc('day', {column} AT TIME ZONE 'UTC')")),
    };
    let key_of = |column: &str| computed_key(column).unwrap_or_else(|| column.to_owned());
    let key_as_text = match group_by {
        GroupBy::Hour => r#"coalesce(to_char(key, 'YYYY-MM-DD"T"HH24:00:00"Z"'), '')"#,
        GroupBy::Day => "coalesce(to_char(key, 'YYYY-MM-DD'), '')",
        _ => "coalesce(key, '')",
    };
    // Each range its own branch, so each is an index range scan.
    let ranges: Vec<(&str, &str, &str)> = if group_by == GroupBy::Hour {
        vec![("hourly", "hour", "hour >= $1 AND hour < $2")]
    } else {
        vec![
            ("daily", "day", "day >= $4 AND day < $5"),
            ("hourly", "hour", "hour >= $1 AND hour < $4"),
            ("hourly", "hour", "hour >= $5 AND hour < $2"),
        ]
    };
    // A computed key from each range's rows summed per stored column, so that it is computed
    // once per sum, not once per row: a day's key over 9,000 daily rows was about a fifth of the
    // statement in `make bench`. A key that is a column is grouped by directly (summing twice
    // made those statements slower).
    let pick = |table: &str, name: &str, kept: &[&str], summed: &[&str], filter: &str| {
        let kept_columns: String = kept.iter().map(|column| format!(", {column}")).collect();
        let summed_columns: String = summed.iter().map(|column| format!(", {column}")).collect();
        let sums: String = summed
            .iter()
            .map(|column| format!(", sum({column}) AS {column}"))
            .collect();
        let by_source_and_kept: Vec<String> = (1..=kept.len() + 1).map(|n| n.to_string()).collect();
        // The range's rows: their stored column as `alias`, the kept columns, then `figures`.
        let rows = |period: &str, unit: &str, range: &str, alias: &str, figures: &str| {
            format!(
                "SELECT {} AS {alias}{kept_columns}{figures} FROM {schema}.{period}_{table} \
                 WHERE {range} {filter} AND ($6::text IS NULL OR user_id = $6)",
                source(unit, name)
            )
        };
        const SOURCE: &str = "source";
        ranges
            .iter()
            .map(|(period, unit, range)| match computed_key(SOURCE) {
                None => rows(period, unit, range, "key", &summed_columns),
                Some(key) => format!(
                    "SELECT {key} AS key{kept_columns}{summed_columns} FROM ({} GROUP BY {}) {period}_sums",
                    rows(period, unit, range, SOURCE, &sums),
                    by_source_and_kept.join(", ")
                ),
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let usage_names: Vec<&str> = UsageField::ALL.iter().map(|f| f.name()).collect();
    let no_usage = usage_names
        .iter()
        .map(|n| format!("0::float8 AS {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let session_names: Vec<&str> = SESSION_COLUMNS_OF_SUMMARY.iter().map(|(name, _)| *name).collect();
    let no_sessions = session_names
        .iter()
        .map(|n| format!("0::bigint AS {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let session_sums = |prefix: &str| {
        SESSION_COLUMNS_OF_SUMMARY
            .iter()
            .map(|(name, value)| format!("{prefix}sum({value}), 0)::bigint AS {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut branches = vec![];
    if group_by.has_metrics() {
        branches.push(format!(
            "SELECT key, kind, sum(count)::bigint AS count, sum(error_count)::bigint AS error_count, \
                sum(total_ms) AS total_ms, sum(tokens_in)::bigint AS tokens_in, \
                sum(tokens_out)::bigint AS tokens_out, {no_usage}, {no_sessions} \
             FROM ({}) metric_rows GROUP BY 1, 2",
            pick(
                "aggregates",
                "name",
                &["kind"],
                &["count", "error_count", "total_ms", "tokens_in", "tokens_out"],
                only
            )
        ));
    }
    if group_by.has_usage() {
        let usage_sums = usage_names
            .iter()
            .map(|n| format!("sum({n})::float8 AS {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        branches.push(format!(
            "SELECT key, 'usage' AS kind, sum(api_requests)::bigint AS count, \
                sum(api_errors)::bigint AS error_count, 0::float8 AS total_ms, 0::bigint AS tokens_in, \
                0::bigint AS tokens_out, {usage_sums}, {no_sessions} \
             FROM ({}) usage_rows GROUP BY 1",
            pick("usage", "model", &[], &usage_names, "")
        ));
    }
    // Sessions by their start, from the table's rows (its index on `session_start`).
    if group_by.has_sessions() {
        branches.push(format!(
            "SELECT {} AS key, '{SESSION_ROW}' AS kind, count(*)::bigint AS count, 0::bigint AS error_count, \
                0::float8 AS total_ms, 0::bigint AS tokens_in, 0::bigint AS tokens_out, {no_usage}, {} \
             FROM sessions GROUP BY 1",
            key_of(&source("session_start", "")),
            session_sums("coalesce(")
        ));
    }
    let order = if group_by.chronological() {
        "key"
    } else {
        "sum(count) DESC, key"
    };
    let (latency_cte, buckets, join) = if p95 && group_by.has_metrics() {
        (
            format!(
                ", latency AS (SELECT key, kind, bucket, sum(count)::bigint AS n FROM ({}) l \
                   WHERE key IN (SELECT key FROM keys) GROUP BY 1, 2, 3), \
                 histograms AS (SELECT key, kind, array_agg(bucket ORDER BY bucket) AS buckets, \
                   array_agg(n ORDER BY bucket) AS counts FROM latency GROUP BY 1, 2)",
                pick("latency", "name", &["kind", "bucket"], &["count"], only)
            ),
            "h.buckets, h.counts",
            "LEFT JOIN histograms h USING (key, kind)",
        )
    } else {
        (
            String::new(),
            "NULL::smallint[] AS buckets, NULL::bigint[] AS counts",
            "",
        )
    };
    let figures = usage_names
        .iter()
        .chain(&session_names)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let group_figures = usage_names
        .iter()
        .chain(&session_names)
        .map(|n| format!("g.{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH sessions AS ( \
            SELECT user_id, session_start, status, total_duration_ms FROM {schema}.user_sessions \
            WHERE session_start >= $1 AND session_start < $2 AND ($6::text IS NULL OR user_id = $6)), \
         grouped AS ({}), \
         keys AS ( \
            SELECT key, row_number() OVER (ORDER BY {order}) AS position \
            FROM grouped GROUP BY key ORDER BY {order} LIMIT $3){latency_cte} \
         SELECT {key_as_text} AS key, kind, count, error_count, total_ms, tokens_in, tokens_out, buckets, counts, \
            {figures} FROM ( \
            SELECT keys.position, g.key, g.kind, g.count, g.error_count, g.total_ms, g.tokens_in, g.tokens_out, \
                {buckets}, {group_figures} \
            FROM grouped g JOIN keys USING (key) {join} \
            UNION ALL \
            SELECT 0, NULL, '{SESSION_TOTAL_ROW}', count(*), 0, 0, 0, 0, NULL, NULL, {no_usage}, {} FROM sessions \
         ) answer ORDER BY position, kind DESC",
        branches.join(" UNION ALL "),
        session_sums("coalesce("),
    )
}

/// The session figures of a summary row, after its usage columns: each column's name and its
/// value for one `user_sessions` row (summed over a group).
pub(super) const SESSION_COLUMNS_OF_SUMMARY: [(&str, &str); 5] = [
    ("sessions_active", "(status = 'active')::int"),
    ("sessions_completed", "(status = 'completed')::int"),
    ("sessions_abandoned", "(status = 'abandoned')::int"),
    ("sessions_timed", "(total_duration_ms IS NOT NULL)::int"),
    ("sessions_duration_ms", "coalesce(total_duration_ms, 0)"),
];

/// The ids among `$1`..`$4` (arrays of ids, one per kind in [`Kind::ALL`] order) stored as
/// another user's than `$5`, each with its kind's plural name.
fn taken_ids_statement(schema: &str) -> String {
    Kind::ALL
        .iter()
        .zip(1..)
        .map(|(kind, param)| {
            let table = kind.plural();
            format!("SELECT '{table}', id FROM {schema}.{table} WHERE id = ANY(${param}::uuid[]) AND user_id <> $5")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Keeps a hook event once (`$1` id, `$2` organization, `$3` user, `$4` session, `$5` event,
/// `$6` correlation, `$7` payload, `$8` partner id) and answers, in the same round trip, when it
/// and its partner were received. (Its session's tool uses are counted by the session's write,
/// `session_change`, which can see the events kept beside this one.)
pub(super) fn hook_event_statement(schema: &str) -> String {
    let table = format!("{schema}.hook_events");
    format!(
        "WITH kept AS ( \
            INSERT INTO {table} (id, organization_id, user_id, session_id, event_name, correlation_id, payload) \
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING received_at) \
         SELECT coalesce((SELECT received_at FROM kept), (SELECT received_at FROM {table} WHERE id = $1), now()), \
            (SELECT received_at FROM {table} WHERE id = $8)"
    )
}

/// The hook events that count as a tool use, as an SQL list.
fn tool_use_events() -> String {
    crate::ports::store::TOOL_USE_EVENTS
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
