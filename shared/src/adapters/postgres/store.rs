use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Object;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::migrate::{provision_tenant, quote_ident};
use super::{Database, with_client};
use crate::domain::batch::Envelope;
use crate::domain::ids::{Caller, OrgId};
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{
    MAX_AGENTS, SessionAction, SessionActivity, SessionChange, SessionEnd, SessionRecord, SessionStart, SessionStatus,
};
use crate::domain::summary::{AggregateRow, GroupBy, SummaryQuery};
use crate::domain::validation::Choice;
use crate::ports::store::{HookReceipt, KeptHookEvent, MetricStore, StoreError, Stored};

/// The request-path statements of one tenant, with its quoted schema name filled in once.
struct TenantSql {
    command_execution: InsertSql,
    agent_interaction: InsertSql,
    productivity_metric: InsertSql,
    session_start: InsertSql,
    session_update: String,
    session_end: String,
    abandon_idle: String,
    hook_event: String,
    taken_ids: String,
    schema: String,
    /// The envelope statements, by the set of kinds present, built on first use.
    envelopes: [std::sync::OnceLock<String>; 16],
    /// The summary statements, by grouping and whether p95 is asked for, built on first use.
    summaries: [std::sync::OnceLock<String>; 10],
}

impl TenantSql {
    fn new(org: &OrgId) -> Self {
        let schema = quote_ident(&org.schema_name());
        Self {
            command_execution: InsertSql::aggregated(
                &format!("{schema}.command_executions"),
                "id, organization_id, user_id, command_name, command_args, execution_time_ms, status, \
                 error_message, context, \"timestamp\"",
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now())",
                &aggregate_upserts(&schema, COMMANDS, "inserted"),
            ),
            agent_interaction: InsertSql::aggregated(
                &format!("{schema}.agent_interactions"),
                "id, organization_id, user_id, agent_name, interaction_type, input_tokens, output_tokens, \
                 processing_time_ms, success, metadata, \"timestamp\"",
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now())",
                &aggregate_upserts(&schema, AGENTS, "inserted"),
            ),
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
                 productivity_score = coalesce($6, productivity_score)",
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
            schema,
        }
    }

    /// The statement writing the kinds in `present` (see [`envelope_statement`]).
    fn envelope(&self, present: usize) -> &str {
        self.envelopes[present].get_or_init(|| envelope_statement(&self.schema, present))
    }

    /// The statement of a summary (see [`summary_statement`]).
    fn summary(&self, group_by: GroupBy, p95: bool) -> &str {
        self.summaries[group_by as usize * 2 + usize::from(p95)]
            .get_or_init(|| summary_statement(&self.schema, group_by, p95))
    }
}

/// An idempotent insert, and the read that finds the stored row when the id existed.
struct InsertSql {
    insert: String,
    select_existing: String,
}

impl InsertSql {
    /// [`InsertSql::new`] whose inserted row also updates the rolling aggregates (`upserts`, CTEs
    /// reading the CTE `inserted`), in the same statement: a skipped (already stored) id counts
    /// nothing.
    fn aggregated(table: &str, columns: &str, values: &str, upserts: &str) -> Self {
        Self {
            insert: format!(
                "WITH inserted AS (INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING RETURNING *), \
                 {upserts} SELECT id, created_at, user_id FROM inserted"
            ),
            select_existing: format!("SELECT id, created_at, user_id FROM {table} WHERE id = $1"),
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

/// How each kind of metric is inserted from arrays (one array per column): its table and
/// columns, the `SELECT` over `unnest` (columns `id`, `a1`, `a2`, ...) and the array types, in
/// `batch::KINDS` order. `$1` is the organization, `$2` the user, `$3` the envelope's
/// `received_at` (the default timestamp).
struct KindInsert {
    table: &'static str,
    columns: &'static str,
    select: &'static str,
    arrays: &'static [&'static str],
}

const KIND_INSERTS: [KindInsert; 4] = [
    KindInsert {
        table: "command_executions",
        columns: "id, organization_id, user_id, command_name, command_args, execution_time_ms, status, error_message, \
                  context, \"timestamp\"",
        select: "r.id, $1, $2, r.a1, r.a2, r.a3, r.a4, r.a5, r.a6, coalesce(r.a7, $3)",
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
    },
    KindInsert {
        table: "agent_interactions",
        columns: "id, organization_id, user_id, agent_name, interaction_type, input_tokens, output_tokens, \
                  processing_time_ms, success, metadata, \"timestamp\"",
        select: "r.id, $1, $2, r.a1, r.a2, r.a3, r.a4, r.a5, r.a6, r.a7, coalesce(r.a8, $3)",
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
    },
    KindInsert {
        table: "user_sessions",
        columns: "id, organization_id, user_id, session_start, session_end, total_duration_ms, commands_executed, \
                  agents_used, productivity_score, context, status",
        select: "r.id, $1, $2, r.a1, r.a2, \
                 CASE WHEN r.a2 IS NULL THEN NULL \
                      ELSE GREATEST(0, floor(extract(epoch FROM r.a2 - r.a1) * 1000))::bigint END, \
                 r.a3::integer, ARRAY(SELECT jsonb_array_elements_text(r.a4)), r.a5, r.a6, r.a7",
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
    },
    KindInsert {
        table: "productivity_metrics",
        columns: "id, organization_id, user_id, metric_type, value, unit, period_start, period_end, dimensions",
        select: "r.id, $1, $2, r.a1, r.a2, r.a3, r.a4, r.a5, r.a6",
        arrays: &["uuid", "text", "float8", "text", "timestamptz", "timestamptz", "jsonb"],
    },
];

/// Kinds (indexes of `batch::KINDS`) that feed the rolling aggregates.
const COMMANDS: usize = 0;
const AGENTS: usize = 1;
const AGGREGATED_KINDS: usize = (1 << COMMANDS) | (1 << AGENTS);

/// Whether the envelope statement for `present` is one plain insert (its row count the answer).
fn is_plain_insert(present: usize) -> bool {
    present.count_ones() == 1 && present & AGGREGATED_KINDS == 0
}

/// Data-modifying CTEs (`name AS (...)`, comma-separated) adding the rows of the CTE `source`
/// (freshly inserted metrics of `kind`) to the hourly and daily aggregates and latency buckets:
/// grouped first (one upsert per key) and in key order (no deadlock between concurrent writers).
fn aggregate_upserts(schema: &str, kind: usize, source: &str) -> String {
    let (label, name, failed, ms, tokens) = if kind == COMMANDS {
        (
            "command",
            "command_name",
            "status <> 'success'",
            "execution_time_ms",
            "0, 0",
        )
    } else {
        (
            "agent",
            "agent_name",
            "NOT success",
            "processing_time_ms",
            "sum(input_tokens), sum(output_tokens)",
        )
    };
    [("hour", "hourly"), ("day", "daily")]
        .iter()
        .map(|(unit, period)| {
            let time = format!("date_trunc('{unit}', \"timestamp\", 'UTC')");
            let totals = format!(
                "INSERT INTO {schema}.{period}_aggregates AS agg \
                 ({unit}, user_id, kind, name, count, error_count, total_ms, tokens_in, tokens_out) \
                 SELECT {time}, user_id, '{label}', {name}, count(*), count(*) FILTER (WHERE {failed}), sum({ms}), {tokens} \
                 FROM {source} GROUP BY 1, 2, 4 ORDER BY 1, 2, 4 \
                 ON CONFLICT ({unit}, user_id, kind, name) DO UPDATE SET count = agg.count + excluded.count, \
                 error_count = agg.error_count + excluded.error_count, total_ms = agg.total_ms + excluded.total_ms, \
                 tokens_in = agg.tokens_in + excluded.tokens_in, tokens_out = agg.tokens_out + excluded.tokens_out"
            );
            let latency = format!(
                "INSERT INTO {schema}.{period}_latency AS lat ({unit}, user_id, kind, name, bucket, count) \
                 SELECT {time}, user_id, '{label}', {name}, {schema}.latency_bucket({ms}), count(*) \
                 FROM {source} GROUP BY 1, 2, 4, 5 ORDER BY 1, 2, 4, 5 \
                 ON CONFLICT ({unit}, user_id, kind, name, bucket) DO UPDATE SET count = lat.count + excluded.count"
            );
            format!("{source}_{unit} AS ({totals}), {source}_{unit}_latency AS ({latency})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statement that writes the kinds in `present` (bit `i` = `batch::KINDS[i]`), each
/// `ON CONFLICT (id) DO NOTHING`. Sessions or productivity metrics alone are one plain insert
/// (its row count is the answer); otherwise the kinds, and the aggregates of commands and
/// agents, are data-modifying CTEs of one statement, atomic together, answering one count per kind.
fn envelope_statement(schema: &str, present: usize) -> String {
    let mut next_param = 4;
    let mut inserts = Vec::new();
    for (kind, spec) in KIND_INSERTS.iter().enumerate().filter(|(k, _)| present & (1 << k) != 0) {
        let arrays: Vec<String> = spec
            .arrays
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("${}::{ty}[]", next_param + i))
            .collect();
        let names: Vec<String> = std::iter::once("id".to_owned())
            .chain((1..spec.arrays.len()).map(|i| format!("a{i}")))
            .collect();
        next_param += spec.arrays.len();
        inserts.push((
            kind,
            format!(
                "INSERT INTO {schema}.{} ({}) SELECT {} FROM unnest({}) AS r({}) ON CONFLICT (id) DO NOTHING",
                spec.table,
                spec.columns,
                spec.select,
                arrays.join(", "),
                names.join(", ")
            ),
        ));
    }
    if is_plain_insert(present) {
        return inserts[0].1.clone();
    }
    let ctes: Vec<String> = inserts
        .iter()
        .flat_map(|(k, sql)| {
            if AGGREGATED_KINDS & (1 << k) != 0 {
                vec![
                    format!("k{k} AS ({sql} RETURNING *)"),
                    aggregate_upserts(schema, *k, &format!("k{k}")),
                ]
            } else {
                vec![format!("k{k} AS ({sql} RETURNING 1)")]
            }
        })
        .collect();
    let counts: Vec<String> = (0..4)
        .map(|k| {
            if present & (1 << k) != 0 {
                format!("(SELECT count(*) FROM k{k})")
            } else {
                "0::bigint".to_owned()
            }
        })
        .collect();
    format!("WITH {} SELECT {}", ctes.join(", "), counts.join(", "))
}

const SESSION_COLUMNS: &str = "id, status, session_start, session_end, total_duration_ms, commands_executed, \
                               agents_used, productivity_score, context, updated_at";

/// One statement that applies `action` to session `$1` of user `$2` when its status allows,
/// merging the activity (`$3` commands, `$4` agents, `$5` context) and `extra_set`, and says
/// what happened: `changed` with the record, the session's status when refused, `other_user`,
/// or no row for an unknown session.
fn session_change(schema: &str, action: SessionAction, extra_set: &str) -> String {
    let table = format!("{schema}.user_sessions");
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
                commands_executed = GREATEST(commands_executed, coalesce($3, commands_executed)), \
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
/// (`bucket` and `count` arrays).
fn summary_statement(schema: &str, group_by: GroupBy, p95: bool) -> String {
    let only = match group_by {
        GroupBy::Command => "AND kind = 'command'",
        GroupBy::Agent => "AND kind = 'agent'",
        _ => "",
    };
    let key = |time: &str| match group_by {
        GroupBy::User => "user_id".to_owned(),
        GroupBy::Command | GroupBy::Agent => "name".to_owned(),
        GroupBy::Hour => format!("to_char({time} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')"),
        GroupBy::Day => format!("to_char({time} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
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
    let pick = |table: &str, columns: &str| {
        ranges
            .iter()
            .map(|(period, unit, range)| {
                format!(
                    "SELECT {} AS key, {columns} FROM {schema}.{period}_{table} WHERE {range} {only}",
                    key(unit)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let order = if group_by.chronological() {
        "key"
    } else {
        "sum(count) DESC, key"
    };
    let (latency_cte, buckets, join) = if p95 {
        (
            format!(
                ", latency AS (SELECT key, kind, bucket, sum(count)::bigint AS n FROM ({}) l \
                   WHERE key IN (SELECT key FROM keys) GROUP BY 1, 2, 3), \
                 histograms AS (SELECT key, kind, array_agg(bucket ORDER BY bucket) AS buckets, \
                   array_agg(n ORDER BY bucket) AS counts FROM latency GROUP BY 1, 2)",
                pick("latency", "kind, bucket, count")
            ),
            "h.buckets, h.counts",
            "LEFT JOIN histograms h USING (key, kind)",
        )
    } else {
        (String::new(), "NULL::smallint[], NULL::bigint[]", "")
    };
    format!(
        "WITH picked AS ({}), \
         grouped AS ( \
            SELECT key, kind, sum(count)::bigint AS count, sum(error_count)::bigint AS error_count, \
                sum(total_ms) AS total_ms, sum(tokens_in)::bigint AS tokens_in, sum(tokens_out)::bigint AS tokens_out \
            FROM picked GROUP BY 1, 2), \
         keys AS ( \
            SELECT key, row_number() OVER (ORDER BY {order}) AS position \
            FROM grouped GROUP BY key ORDER BY {order} LIMIT $3){latency_cte} \
         SELECT g.key, g.kind, g.count, g.error_count, g.total_ms, g.tokens_in, g.tokens_out, {buckets} \
         FROM grouped g JOIN keys USING (key) {join} ORDER BY keys.position, g.kind DESC",
        pick(
            "aggregates",
            "kind, count, error_count, total_ms, tokens_in, tokens_out"
        )
    )
}

/// A dense histogram from the buckets (1-based) that have counts.
fn histogram(buckets: Option<Vec<i16>>, counts: Option<Vec<i64>>) -> Vec<i64> {
    let mut dense = vec![0; crate::domain::summary::HISTOGRAM_BUCKETS];
    for (bucket, count) in buckets.unwrap_or_default().into_iter().zip(counts.unwrap_or_default()) {
        if let Some(slot) = usize::try_from(bucket)
            .ok()
            .and_then(|b| dense.get_mut(b.wrapping_sub(1)))
        {
            *slot += count;
        }
    }
    dense
}

/// The ids among `$1`..`$4` (arrays of ids, in `batch::KINDS` order) stored as another user's
/// than `$5`, each with its kind's index.
fn taken_ids_statement(schema: &str) -> String {
    KIND_INSERTS
        .iter()
        .enumerate()
        .map(|(kind, spec)| {
            format!(
                "SELECT {kind}::int4, id FROM {schema}.{} WHERE id = ANY(${}::uuid[]) AND user_id <> $5",
                spec.table,
                kind + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Keeps a hook event once (`$1` id, `$2` organization, `$3` user, `$4` session, `$5` event,
/// `$6` correlation, `$7` payload, `$8` partner id) and answers, in the same round trip, when it
/// and its partner were received and how many tool uses its session has.
fn hook_event_statement(schema: &str) -> String {
    let table = format!("{schema}.hook_events");
    let tool_uses = crate::ports::store::TOOL_USE_EVENTS
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH kept AS ( \
            INSERT INTO {table} (id, organization_id, user_id, session_id, event_name, correlation_id, payload) \
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING received_at) \
         SELECT coalesce((SELECT received_at FROM kept), (SELECT received_at FROM {table} WHERE id = $1), now()), \
            (SELECT received_at FROM {table} WHERE id = $8), \
            (SELECT count(*) FROM {table} WHERE session_id = $4 AND user_id = $3 AND event_name IN ({tool_uses})) \
              + (SELECT count(*) FROM kept WHERE $5 IN ({tool_uses}))"
    )
}

/// Metrics in PostgreSQL, one schema per organization, provisioned on first use.
pub struct PgStore {
    db: Database,
    /// Organizations whose schema is known to be current in this container.
    tenants: RwLock<HashMap<OrgId, Arc<TenantSql>>>,
}

impl PgStore {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The tenant's statements, provisioning its schema first if this container has not seen it.
    async fn tenant(&self, client: &mut Object, org: &OrgId) -> Result<Arc<TenantSql>, tokio_postgres::Error> {
        if let Some(sql) = self.cached(org) {
            return Ok(sql);
        }
        if provision_tenant(client, org).await? {
            tracing::info!(org = %org, "provisioned tenant schema");
        }
        let sql = Arc::new(TenantSql::new(org));
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(org.clone(), sql.clone());
        Ok(sql)
    }

    fn cached(&self, org: &OrgId) -> Option<Arc<TenantSql>> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(org).cloned()
    }

    /// Runs one of the tenant's idempotent inserts; `params[0]` must be the id. The same id
    /// sent again by the same user answers the stored record; an id another user of the
    /// organization has taken is [`StoreError::IdTaken`] (their record is neither changed nor
    /// described).
    async fn insert(
        &self,
        caller: &Caller,
        statement: impl Fn(&TenantSql) -> &InsertSql,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Stored, StoreError> {
        let (rows, new) = with_client!(&self.db, |client| {
            self.insert_on(&mut client, &caller.org, &statement, params).await
        })?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Internal("insert returned no row".into()))?;
        if !new && row.get::<_, &str>(2) != caller.user.as_str() {
            return Err(StoreError::IdTaken);
        }
        Ok(Stored {
            id: row.get(0),
            created_at: row.get(1),
            new,
        })
    }

    async fn insert_on(
        &self,
        client: &mut Object,
        org: &OrgId,
        statement: &impl Fn(&TenantSql) -> &InsertSql,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<(Vec<tokio_postgres::Row>, bool), tokio_postgres::Error> {
        let tenant = self.tenant(client, org).await?;
        let sql = statement(&tenant);
        let rows = client.query_typed(&sql.insert, params).await?;
        if !rows.is_empty() {
            return Ok((rows, true));
        }
        // Stored already (perhaps by a concurrent insert that committed after our snapshot).
        Ok((client.query_typed(&sql.select_existing, &params[..1]).await?, false))
    }

    /// Runs a statement built by [`session_change`] and interprets its answer.
    async fn change_session(
        &self,
        org: &OrgId,
        statement: impl Fn(&TenantSql) -> &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<SessionChange, StoreError> {
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, org).await {
                Ok(tenant) => client.query_typed(statement(&tenant), params).await,
                Err(err) => Err(err),
            }
        })?;
        let Some(row) = rows.first() else {
            return Ok(SessionChange::NotFound);
        };
        let outcome: String = row.get(0);
        Ok(match outcome.as_str() {
            "changed" => {
                let record: serde_json::Value = row.get(1);
                SessionChange::Changed(
                    serde_json::from_value::<SessionRecord>(record)
                        .map_err(|e| StoreError::Internal(format!("session record: {e}")))?,
                )
            }
            "other_user" => SessionChange::OtherUser,
            "context_full" => SessionChange::ContextFull,
            status => SessionChange::Refused(
                serde_json::from_value(serde_json::Value::String(status.to_owned()))
                    .map_err(|e| StoreError::Internal(format!("session status {status:?}: {e}")))?,
            ),
        })
    }

    /// Organizations in the registry.
    async fn registered_tenants(&self) -> Result<Vec<OrgId>, StoreError> {
        let rows = with_client!(&self.db, |client| {
            client
                .query_typed(
                    "SELECT organization_id FROM public.tenants ORDER BY organization_id",
                    &[],
                )
                .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|row| OrgId::parse(row.get::<_, &str>(0)).ok())
            .collect())
    }
}

#[async_trait]
impl MetricStore for PgStore {
    async fn aggregates(&self, caller: &Caller, query: &SummaryQuery) -> Result<Vec<AggregateRow>, StoreError> {
        let groups = i64::from(query.limit) + 1;
        let (first_day, end_of_days) = query.whole_days();
        let params: &[(&(dyn ToSql + Sync), Type)] = &[
            (&query.since, Type::TIMESTAMPTZ),
            (&query.until, Type::TIMESTAMPTZ),
            (&groups, Type::INT8),
            (&first_day, Type::TIMESTAMPTZ),
            (&end_of_days, Type::TIMESTAMPTZ),
        ];
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &caller.org).await {
                Ok(tenant) => {
                    client
                        .query_typed(tenant.summary(query.group_by, query.p95), params)
                        .await
                }
                Err(err) => Err(err),
            }
        })?;
        Ok(rows
            .iter()
            .map(|row| AggregateRow {
                key: row.get(0),
                kind: row.get(1),
                count: row.get(2),
                error_count: row.get(3),
                total_ms: row.get(4),
                tokens_in: row.get(5),
                tokens_out: row.get(6),
                histogram: histogram(row.get(7), row.get(8)),
            })
            .collect())
    }

    async fn keep_hook_event(&self, caller: &Caller, event: &KeptHookEvent<'_>) -> Result<HookReceipt, StoreError> {
        let params: &[(&(dyn ToSql + Sync), Type)] = &[
            (&event.id, Type::UUID),
            (&caller.org.as_str(), Type::TEXT),
            (&caller.user.as_str(), Type::TEXT),
            (&event.session_id, Type::TEXT),
            (&event.event_name, Type::TEXT),
            (&event.correlation_id, Type::TEXT),
            (event.payload, Type::JSONB),
            (&event.partner, Type::UUID),
        ];
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &caller.org).await {
                Ok(tenant) => client.query_typed(&tenant.hook_event, params).await,
                Err(err) => Err(err),
            }
        })?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Internal("hook event statement returned no row".into()))?;
        Ok(HookReceipt {
            received_at: row.get(0),
            partner_received_at: row.get(1),
            tool_uses: row.get(2),
        })
    }

    async fn insert_command_execution(&self, caller: &Caller, m: &CommandExecution) -> Result<Stored, StoreError> {
        let id = m.id.ok_or_else(|| StoreError::Internal("metric without id".into()))?;
        let status = m.status.as_str();
        self.insert(
            caller,
            |sql| &sql.command_execution,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&m.command_name, Type::TEXT),
                (&m.command_args, Type::JSONB),
                (&m.execution_time_ms, Type::FLOAT8),
                (&status, Type::TEXT),
                (&m.error_message, Type::TEXT),
                (&m.context, Type::JSONB),
                (&m.timestamp, Type::TIMESTAMPTZ),
            ],
        )
        .await
    }

    async fn insert_agent_interaction(&self, caller: &Caller, m: &AgentInteraction) -> Result<Stored, StoreError> {
        let id = m.id.ok_or_else(|| StoreError::Internal("metric without id".into()))?;
        let kind = m.interaction_type.as_str();
        self.insert(
            caller,
            |sql| &sql.agent_interaction,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&m.agent_name, Type::TEXT),
                (&kind, Type::TEXT),
                (&m.input_tokens, Type::INT8),
                (&m.output_tokens, Type::INT8),
                (&m.processing_time_ms, Type::FLOAT8),
                (&m.success, Type::BOOL),
                (&m.metadata, Type::JSONB),
                (&m.timestamp, Type::TIMESTAMPTZ),
            ],
        )
        .await
    }

    async fn insert_productivity_metric(&self, caller: &Caller, m: &ProductivityMetric) -> Result<Stored, StoreError> {
        let id = m.id.ok_or_else(|| StoreError::Internal("metric without id".into()))?;
        let kind = m.metric_type.as_str();
        self.insert(
            caller,
            |sql| &sql.productivity_metric,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&kind, Type::TEXT),
                (&m.value, Type::FLOAT8),
                (&m.unit, Type::TEXT),
                (&m.period_start, Type::TIMESTAMPTZ),
                (&m.period_end, Type::TIMESTAMPTZ),
                (&m.dimensions, Type::JSONB),
            ],
        )
        .await
    }

    async fn start_session(&self, caller: &Caller, start: &SessionStart) -> Result<Stored, StoreError> {
        let id = start
            .id
            .ok_or_else(|| StoreError::Internal("session without id".into()))?;
        self.insert(
            caller,
            |sql| &sql.session_start,
            &[
                (&id, Type::UUID),
                (&caller.org.as_str(), Type::TEXT),
                (&caller.user.as_str(), Type::TEXT),
                (&start.session_start, Type::TIMESTAMPTZ),
                (&start.context, Type::JSONB),
            ],
        )
        .await
    }

    async fn update_session(
        &self,
        caller: &Caller,
        id: Uuid,
        a: &SessionActivity,
    ) -> Result<SessionChange, StoreError> {
        self.change_session(
            &caller.org,
            |sql| &sql.session_update,
            &[
                (&id, Type::UUID),
                (&caller.user.as_str(), Type::TEXT),
                (&a.commands_executed, Type::INT8),
                (&a.agents_used, Type::TEXT_ARRAY),
                (&a.context, Type::JSONB),
            ],
        )
        .await
    }

    async fn end_session(&self, caller: &Caller, end: &SessionEnd) -> Result<SessionChange, StoreError> {
        let a = &end.activity;
        self.change_session(
            &caller.org,
            |sql| &sql.session_end,
            &[
                (&end.session_id, Type::UUID),
                (&caller.user.as_str(), Type::TEXT),
                (&a.commands_executed, Type::INT8),
                (&a.agents_used, Type::TEXT_ARRAY),
                (&a.context, Type::JSONB),
                (&end.productivity_score, Type::FLOAT8),
            ],
        )
        .await
    }

    async fn ids_taken_by_others(&self, envelope: &Envelope) -> Result<[Vec<Uuid>; 4], StoreError> {
        let ids = envelope
            .metrics
            .ids()
            .map(|ids| ids.into_iter().flatten().collect::<Vec<Uuid>>());
        let user = envelope.user_id.as_str();
        let params: &[(&(dyn ToSql + Sync), Type)] = &[
            (&ids[0], Type::UUID_ARRAY),
            (&ids[1], Type::UUID_ARRAY),
            (&ids[2], Type::UUID_ARRAY),
            (&ids[3], Type::UUID_ARRAY),
            (&user, Type::TEXT),
        ];
        let rows = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &envelope.organization_id).await {
                Ok(tenant) => client.query_typed(&tenant.taken_ids, params).await,
                Err(err) => Err(err),
            }
        })?;
        let mut taken: [Vec<Uuid>; 4] = Default::default();
        for row in rows {
            if let Some(ids) = usize::try_from(row.get::<_, i32>(0))
                .ok()
                .and_then(|k| taken.get_mut(k))
            {
                ids.push(row.get(1));
            }
        }
        Ok(taken)
    }

    async fn write_envelope(&self, envelope: &Envelope) -> Result<[u64; 4], StoreError> {
        let columns = EnvelopeColumns::new(envelope);
        let present = columns.present();
        if present == 0 {
            return Ok([0; 4]);
        }
        let org = envelope.organization_id.as_str();
        let user = envelope.user_id.as_str();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
            (&org, Type::TEXT),
            (&user, Type::TEXT),
            (&envelope.received_at, Type::TIMESTAMPTZ),
        ];
        for kind in 0..4 {
            if present & (1 << kind) != 0 {
                params.extend(columns.params(kind));
            }
        }
        let single_kind = is_plain_insert(present);
        let counts = with_client!(&self.db, |client| {
            match self.tenant(&mut client, &envelope.organization_id).await {
                Ok(tenant) if single_kind => {
                    let kind = present.trailing_zeros() as usize;
                    client.execute_typed(tenant.envelope(present), &params).await.map(|n| {
                        let mut counts = [0u64; 4];
                        counts[kind] = n;
                        counts
                    })
                }
                Ok(tenant) => client.query_typed(tenant.envelope(present), &params).await.map(|rows| {
                    let mut counts = [0u64; 4];
                    if let Some(row) = rows.first() {
                        for (k, count) in counts.iter_mut().enumerate() {
                            *count = row.get::<_, i64>(k) as u64;
                        }
                    }
                    counts
                }),
                Err(err) => Err(err),
            }
        })?;
        Ok(counts)
    }

    async fn abandon_idle_sessions(&self, idle: Duration) -> Result<u64, StoreError> {
        let idle_seconds = idle.as_secs_f64();
        let mut abandoned = 0;
        for org in self.registered_tenants().await? {
            let rows = with_client!(&self.db, |client| {
                match self.tenant(&mut client, &org).await {
                    Ok(tenant) => {
                        client
                            .query_typed(&tenant.abandon_idle, &[(&idle_seconds, Type::FLOAT8)])
                            .await
                    }
                    Err(err) => Err(err),
                }
            })?;
            if !rows.is_empty() {
                tracing::info!(org = %org, sessions = rows.len(), "marked idle sessions abandoned");
            }
            abandoned += rows.len() as u64;
        }
        Ok(abandoned)
    }
}

type Timestamp = chrono::DateTime<chrono::Utc>;

/// An envelope's metrics turned into one array per column, as [`envelope_statement`] binds them.
struct EnvelopeColumns {
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
    /// The kinds with at least one metric (bit `i` = `batch::KINDS[i]`).
    fn present(&self) -> usize {
        [
            self.command_ids.len(),
            self.agent_ids.len(),
            self.session_ids.len(),
            self.productivity_ids.len(),
        ]
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(k, _)| 1 << k)
        .sum()
    }

    /// The arrays of one kind, in the order of its [`KindInsert`].
    fn params(&self, kind: usize) -> Vec<(&(dyn ToSql + Sync), Type)> {
        match kind {
            0 => vec![
                (&self.command_ids, Type::UUID_ARRAY),
                (&self.command_names, Type::TEXT_ARRAY),
                (&self.command_args, Type::JSONB_ARRAY),
                (&self.command_times, Type::FLOAT8_ARRAY),
                (&self.command_statuses, Type::TEXT_ARRAY),
                (&self.command_errors, Type::TEXT_ARRAY),
                (&self.command_contexts, Type::JSONB_ARRAY),
                (&self.command_timestamps, Type::TIMESTAMPTZ_ARRAY),
            ],
            1 => vec![
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
            2 => vec![
                (&self.session_ids, Type::UUID_ARRAY),
                (&self.session_starts, Type::TIMESTAMPTZ_ARRAY),
                (&self.session_ends, Type::TIMESTAMPTZ_ARRAY),
                (&self.session_commands, Type::INT8_ARRAY),
                (&self.session_agents, Type::JSONB_ARRAY),
                (&self.session_scores, Type::FLOAT8_ARRAY),
                (&self.session_contexts, Type::JSONB_ARRAY),
                (&self.session_statuses, Type::TEXT_ARRAY),
            ],
            _ => vec![
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
    fn new(envelope: &Envelope) -> Self {
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
