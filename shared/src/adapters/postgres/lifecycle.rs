//! The data lifecycle on PostgreSQL: retention's chunked deletes, a user's erasure, and an
//! organization's export as importer lines (streamed through a cursor).
//!
//! A retention chunk is one short statement: it picks at most `chunk_rows` expired rows through
//! the index on the table's time column (`migrations/tenant/0005_retention_indexes.sql`, or the
//! aggregates' primary keys) and deletes them by `ctid`, repeating the condition so a row
//! changed meanwhile is re-checked. It takes only row locks, which inserts never wait for, and
//! commits on its own, so no lock is held longer than one chunk.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::migrate::{latest_tenant_version, provision_tenant, quote_ident, tenant_version};
use super::{Database, classify, with_client};
use crate::config::{ConfigError, DatabaseConfig, Env};
use crate::domain::ids::{OrgId, UserId};
use crate::domain::lifecycle::{ERASED, Erased, Expired, Expiring, Retention};
use crate::ports::lifecycle::DataLifecycle;
use crate::ports::store::StoreError;

/// Rows a retention chunk deletes at most, by default.
pub const DEFAULT_CHUNK_ROWS: u32 = 5000;
/// Milliseconds between two chunks (`RETENTION_PAUSE_MS`).
pub const DEFAULT_PAUSE_MS: u64 = 0;

pub struct PgLifecycle {
    db: Database,
    chunk_rows: i64,
    /// A pause between chunks, leaving the database to the ingest path.
    pause: Duration,
    /// The statement timeout of an erasure's transaction (it may scan whole tables).
    erase_timeout: Duration,
}

impl PgLifecycle {
    pub fn new(db: Database, chunk_rows: u32, pause: Duration, erase_timeout: Duration) -> Self {
        Self {
            db,
            chunk_rows: i64::from(chunk_rows.max(1)),
            pause,
            erase_timeout,
        }
    }

    /// `RETENTION_CHUNK_ROWS` (default 5000), `RETENTION_PAUSE_MS` between chunks (default 0)
    /// and `ERASE_TIMEOUT_MS` (default 20000, under API Gateway's 30 s) on the database of
    /// `DATABASE_*`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let chunk_rows = env.number_or("RETENTION_CHUNK_ROWS", u64::from(DEFAULT_CHUNK_ROWS), 1)?;
        let chunk_rows = u32::try_from(chunk_rows)
            .map_err(|_| ConfigError::new("RETENTION_CHUNK_ROWS", format!("must be at most {}", u32::MAX)))?;
        let pause = Duration::from_millis(env.parse_or("RETENTION_PAUSE_MS", DEFAULT_PAUSE_MS)?);
        let erase_timeout = env.millis_or("ERASE_TIMEOUT_MS", 20_000)?;
        let db = Database::connect(&DatabaseConfig::from_env(env)?)?;
        Ok(Self::new(db, chunk_rows, pause, erase_timeout))
    }

    /// Runs one chunk of a table's expired rows from `from` on (see [`chunk_sql`]); how many it
    /// deleted, and the latest time among them (where the next chunk starts).
    async fn chunk(&self, sql: &str, cutoff: &Bound, from: &Bound) -> Result<(u64, Option<Bound>), StoreError> {
        let limit = self.chunk_rows;
        let row = with_client!(&self.db, |client| {
            match (cutoff, from) {
                (Bound::Time(cutoff), Bound::Time(from)) => {
                    client
                        .query_typed(
                            sql,
                            &[
                                (cutoff, Type::TIMESTAMPTZ),
                                (&limit, Type::INT8),
                                (from, Type::TIMESTAMPTZ),
                            ],
                        )
                        .await
                }
                (Bound::Nanos(cutoff), Bound::Nanos(from)) => {
                    client
                        .query_typed(sql, &[(cutoff, Type::INT8), (&limit, Type::INT8), (from, Type::INT8)])
                        .await
                }
                _ => unreachable!("a cutoff and its lower bound have one type"),
            }
        })?;
        let row = row
            .first()
            .ok_or_else(|| StoreError::Internal("a chunk answered no row".into()))?;
        let deleted: i64 = row.get(0);
        let latest = match cutoff {
            Bound::Time(_) => row.get::<_, Option<DateTime<Utc>>>(1).map(Bound::Time),
            Bound::Nanos(_) => row.get::<_, Option<i64>>(1).map(Bound::Nanos),
        };
        Ok((deleted.max(0) as u64, latest))
    }
}

/// A value of a table's time column: the cutoff, or where a chunk starts.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Time(DateTime<Utc>),
    /// OTLP series keep their last point's time in nanoseconds since the epoch.
    Nanos(i64),
}

impl Bound {
    /// Before any row's time.
    fn earliest(like: &Bound) -> Bound {
        match like {
            Bound::Time(_) => Bound::Time(DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).unwrap_or_default()),
            Bound::Nanos(_) => Bound::Nanos(i64::MIN),
        }
    }
}

/// The time column a table's rows expire by, and what else a row must be to expire.
fn time_column(table: Expiring) -> (&'static str, &'static str) {
    match table {
        Expiring::CommandExecutions | Expiring::AgentInteractions | Expiring::OtlpEvents => ("\"timestamp\"", ""),
        // An active session is never deleted, however old its start.
        Expiring::UserSessions => ("session_start", " AND status <> 'active'"),
        Expiring::ProductivityMetrics => ("period_end", ""),
        Expiring::HookEvents => ("received_at", ""),
        Expiring::OtlpPoints => ("\"time\"", ""),
        Expiring::OtlpSeries => ("last_ns", ""),
        Expiring::HourlyAggregates | Expiring::HourlyLatency | Expiring::HourlyUsage => ("hour", ""),
        Expiring::DailyAggregates | Expiring::DailyLatency | Expiring::DailyUsage => ("day", ""),
    }
}

/// One chunk of `table`'s expired rows in `schema` (quoted): `$1` the cutoff, `$2` the chunk's
/// rows, `$3` where it starts. The rows are the chunk's first in time order from `$3` through
/// the time index, so each chunk starts where the last ended instead of walking again over the
/// rows (dead until vacuumed) that earlier chunks deleted; the condition is repeated so a row
/// changed meanwhile is checked again. Answers the rows deleted and the latest time among them.
pub fn chunk_sql(schema: &str, table: Expiring) -> String {
    let t = table.table();
    let (time, also) = time_column(table);
    let expired = format!("{time} < $1{also}");
    format!(
        "WITH gone AS (DELETE FROM {schema}.{t} WHERE ctid = ANY(ARRAY(\
         SELECT ctid FROM {schema}.{t} WHERE {time} >= $3 AND {expired} ORDER BY {time} LIMIT $2)) \
         AND {expired} RETURNING {time}) SELECT count(*), max({time}) FROM gone"
    )
}

#[async_trait]
impl DataLifecycle for PgLifecycle {
    async fn organizations(&self) -> Result<Vec<OrgId>, StoreError> {
        super::registered_organizations(&self.db).await
    }

    async fn delete_expired(
        &self,
        org: &OrgId,
        retention: &Retention,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Expired, StoreError> {
        // Retention never migrates: a tenant behind the latest migration (which `migrate`
        // brings up after a deploy) may lack a table or an index, so it waits for that.
        let version = with_client!(&self.db, |client| tenant_version(&client, org).await)?;
        if version < Some(latest_tenant_version()) {
            return Err(StoreError::Unavailable(format!(
                "tenant schema at version {version:?}, not {}: run migrate",
                latest_tenant_version()
            )));
        }
        let schema = quote_ident(&org.schema_name());
        let mut expired = Expired::default();
        for table in Expiring::ALL {
            let cutoff_at = table.cutoff(retention, now);
            let cutoff = match table {
                Expiring::OtlpSeries => Bound::Nanos(cutoff_at.timestamp_nanos_opt().unwrap_or(0)),
                _ => Bound::Time(cutoff_at),
            };
            let mut from = Bound::earliest(&cutoff);
            let sql = chunk_sql(&schema, table);
            loop {
                if Instant::now() >= deadline {
                    return Ok(expired);
                }
                let (deleted, latest) = self.chunk(&sql, &cutoff, &from).await?;
                if deleted > 0 {
                    *expired.deleted.entry(table).or_default() += deleted;
                }
                match latest {
                    Some(latest) if deleted >= self.chunk_rows as u64 => from = latest,
                    _ => break,
                }
                if !self.pause.is_zero() {
                    tokio::time::sleep(self.pause).await;
                }
            }
        }
        expired.complete = true;
        Ok(expired)
    }

    async fn erase_user(&self, org: &OrgId, user: &UserId) -> Result<Erased, StoreError> {
        let timeout = self.erase_timeout;
        let work = async {
            let mut client = self.db.client().await?;
            erase_on(&mut client, org, user, timeout).await.map_err(classify)
        };
        tokio::time::timeout(timeout + Duration::from_secs(1), work)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("erasure took over {timeout:?}"))))
    }
}

async fn erase_on(
    client: &mut tokio_postgres::Client,
    org: &OrgId,
    user: &UserId,
    timeout: Duration,
) -> Result<Erased, tokio_postgres::Error> {
    let mut erased: Erased = ERASED.iter().map(|table| (*table, 0)).collect();
    // An organization never seen has nothing to erase (and no schema); one behind the latest
    // migration is brought up first, so every table the erasure names exists.
    match tenant_version(client, org).await? {
        None => return Ok(erased),
        Some(version) if version < latest_tenant_version() => {
            provision_tenant(client, org).await?;
        }
        Some(_) => {}
    }
    let schema = quote_ident(&org.schema_name());
    let user = user.as_str();
    let tx = client.transaction().await?;
    let timeout_ms = timeout.as_millis().to_string();
    tx.query_typed(
        "SELECT set_config('statement_timeout', $1, true)",
        &[(&timeout_ms, Type::TEXT)],
    )
    .await?;
    for table in ERASED {
        let sql = match table {
            // A series belongs to the user whose points name it; removed before the points.
            "otlp_series" => format!(
                "DELETE FROM {schema}.otlp_series WHERE series IN \
                 (SELECT series FROM {schema}.otlp_points WHERE user_id = $1)"
            ),
            _ => format!("DELETE FROM {schema}.{table} WHERE user_id = $1"),
        };
        let removed = tx.execute_typed(&sql, &[(&user, Type::TEXT)]).await?;
        erased.insert(table, removed);
    }
    tx.commit().await?;
    Ok(erased)
}

/// The importable kinds, in the order an export writes them: `(kind, table, columns)`.
const EXPORTED: [(&str, &str, &str); 4] = [
    (
        "command_execution",
        "command_executions",
        "user_id, id, command_name, command_args, execution_time_ms, status, error_message, context, \"timestamp\"",
    ),
    (
        "agent_interaction",
        "agent_interactions",
        "user_id, id, agent_name, interaction_type, input_tokens, output_tokens, processing_time_ms, success, \
         metadata, \"timestamp\"",
    ),
    (
        "user_session",
        "user_sessions",
        "user_id, id, session_start, session_end, commands_executed, agents_used, productivity_score, context, \
         status",
    ),
    (
        "productivity_metric",
        "productivity_metrics",
        "user_id, id, metric_type, value, unit, period_start, period_end, dimensions",
    ),
];

/// Rows fetched per round trip of an export's cursor.
const EXPORT_FETCH_ROWS: i32 = 1000;

/// Writes the organization's metrics and sessions as `metrics-import` lines (one JSON object
/// per line, with `kind`, `user_id` and `id`), kind by kind in id order, from one consistent
/// snapshot, `EXPORT_FETCH_ROWS` rows at a time through a cursor (never the whole organization
/// in memory). Returns the lines written per kind. Hook events and OTLP data have no importer
/// line and are not exported.
pub async fn export_organization(
    client: &mut tokio_postgres::Client,
    org: &OrgId,
    out: &mut (dyn FnMut(&str) -> std::io::Result<()> + Send),
) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut counts = BTreeMap::new();
    let registered = tenant_version(client, org)
        .await
        .map_err(|e| format!("read the registry: {e}"))?;
    if registered.is_none() {
        return Err(format!("organization {org} is not registered"));
    }
    let schema = quote_ident(&org.schema_name());
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| format!("begin: {e}"))?;
    for (kind, table, columns) in EXPORTED {
        let sql = format!("SELECT {columns} FROM {schema}.{table} ORDER BY id");
        let no_params: [&(dyn ToSql + Sync); 0] = [];
        let portal = tx.bind(&sql, &no_params).await.map_err(|e| format!("{table}: {e}"))?;
        let mut written = 0u64;
        loop {
            let rows = tx
                .query_portal(&portal, EXPORT_FETCH_ROWS)
                .await
                .map_err(|e| format!("{table}: {e}"))?;
            for row in &rows {
                let line = export_line(kind, row).map_err(|e| format!("{table}: {e}"))?;
                out(&line).map_err(|e| format!("write: {e}"))?;
                written += 1;
            }
            if rows.len() < EXPORT_FETCH_ROWS as usize {
                break;
            }
        }
        counts.insert(kind, written);
    }
    tx.commit().await.map_err(|e| format!("commit: {e}"))?;
    Ok(counts)
}

fn time(at: DateTime<Utc>) -> Value {
    Value::String(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// One importer line from a row of `kind`'s columns (see [`EXPORTED`]).
fn export_line(kind: &str, row: &tokio_postgres::Row) -> Result<String, tokio_postgres::Error> {
    let mut line = Map::new();
    line.insert("kind".into(), kind.into());
    line.insert("user_id".into(), row.try_get::<_, String>(0)?.into());
    line.insert("id".into(), row.try_get::<_, Uuid>(1)?.to_string().into());
    let mut put = |name: &str, value: Value| {
        if !value.is_null() {
            line.insert(name.to_owned(), value);
        }
    };
    match kind {
        "command_execution" => {
            put("command_name", row.try_get::<_, String>(2)?.into());
            put("command_args", row.try_get::<_, Value>(3)?);
            put("execution_time_ms", row.try_get::<_, f64>(4)?.into());
            put("status", row.try_get::<_, String>(5)?.into());
            put("error_message", row.try_get::<_, Option<String>>(6)?.into());
            put("context", row.try_get::<_, Value>(7)?);
            put("timestamp", time(row.try_get(8)?));
        }
        "agent_interaction" => {
            put("agent_name", row.try_get::<_, String>(2)?.into());
            put("interaction_type", row.try_get::<_, String>(3)?.into());
            put("input_tokens", row.try_get::<_, i64>(4)?.into());
            put("output_tokens", row.try_get::<_, i64>(5)?.into());
            put("processing_time_ms", row.try_get::<_, f64>(6)?.into());
            put("success", row.try_get::<_, bool>(7)?.into());
            put("metadata", row.try_get::<_, Value>(8)?);
            put("timestamp", time(row.try_get(9)?));
        }
        "user_session" => {
            put("session_start", time(row.try_get(2)?));
            put(
                "session_end",
                row.try_get::<_, Option<DateTime<Utc>>>(3)?.map_or(Value::Null, time),
            );
            put("commands_executed", row.try_get::<_, i32>(4)?.into());
            put("agents_used", row.try_get::<_, Vec<String>>(5)?.into());
            put("productivity_score", row.try_get::<_, Option<f64>>(6)?.into());
            put("context", row.try_get::<_, Value>(7)?);
            put("status", row.try_get::<_, String>(8)?.into());
        }
        _ => {
            put("metric_type", row.try_get::<_, String>(2)?.into());
            put("value", row.try_get::<_, f64>(3)?.into());
            put("unit", row.try_get::<_, String>(4)?.into());
            put("period_start", time(row.try_get(5)?));
            put("period_end", time(row.try_get(6)?));
            put("dimensions", row.try_get::<_, Value>(7)?);
        }
    }
    Ok(Value::Object(line).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_deletes_by_ctid_what_its_index_finds_from_where_the_last_ended_and_rechecks_the_condition() {
        let sql = chunk_sql("\"org_acme\"", Expiring::UserSessions);
        assert_eq!(
            sql,
            "WITH gone AS (DELETE FROM \"org_acme\".user_sessions WHERE ctid = ANY(ARRAY(SELECT ctid FROM \
             \"org_acme\".user_sessions WHERE session_start >= $3 AND session_start < $1 AND status <> 'active' \
             ORDER BY session_start LIMIT $2)) AND session_start < $1 AND status <> 'active' RETURNING \
             session_start) SELECT count(*), max(session_start) FROM gone"
        );
    }
}
