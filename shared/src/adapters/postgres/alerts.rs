//! The alerts port on PostgreSQL: snapshots and condition state in each tenant's schema
//! (migration 0006), next to the hourly aggregates they are computed from; raw metric rows are
//! never read.
//!
//! One run of an organization is one transaction under a per-organization advisory lock taken
//! with `pg_try_advisory_xact_lock` (an overlapping run skips the organization rather than
//! waiting). Messages owed are claimed for a hold (`sending_until`) inside that transaction and
//! delivered after it commits, so no connection or lock is held while a webhook answers.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio_postgres::types::Type;

use super::migrate::{provision_tenant, quote_ident};
use super::{Database, with_client};
use crate::config::{ConfigError, DatabaseConfig, Env};
use crate::domain::alerts::{
    AlertRules, Condition, ConditionState, HourCounters, Notice, Reading, Snapshot, Window, evaluate,
};
use crate::domain::ids::OrgId;
use crate::ports::alerts::{AlertStore, Evaluation};
use crate::ports::store::StoreError;

/// Advisory-lock namespace of the alert runs (first key; the second is the organization's hash).
const ALERT_LOCK: i32 = 0x616c_7274; // "alrt"
/// Snapshots older than this many windows are deleted by each run.
const KEEP_WINDOWS: i32 = 3;

pub struct PgAlerts {
    db: Database,
}

impl PgAlerts {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::new(Database::connect(&DatabaseConfig::from_env(env)?)?))
    }
}

/// PostgreSQL keeps microseconds: times compared with stored ones are cut to them first.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

fn schema(org: &OrgId) -> String {
    quote_ident(&org.schema_name())
}

async fn evaluate_on(
    client: &mut tokio_postgres::Client,
    org: &OrgId,
    rules: &AlertRules,
    now: DateTime<Utc>,
    window: Duration,
    hold: Duration,
) -> Result<Evaluation, tokio_postgres::Error> {
    provision_tenant(client, org).await?;
    let s = schema(org);
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
            &[&ALERT_LOCK, &org.as_str()],
        )
        .await?
        .get(0);
    if !locked {
        tracing::info!(org = %org, "another alert run holds this organization; skipped");
        return Ok(Evaluation {
            evidence: None,
            claimed: vec![],
        });
    }

    // The counters now: the current and previous hours, summed over users, kinds and names.
    let hours = Snapshot::hours_at(now).to_vec();
    let mut current = Snapshot {
        taken_at: now,
        hours: hours.iter().map(|h| (*h, HourCounters::default())).collect(),
    };
    let totals = tx
        .query_typed(
            &format!(
                "SELECT hour, sum(count)::bigint, sum(error_count)::bigint FROM {s}.hourly_aggregates \
                 WHERE hour = ANY($1) GROUP BY hour"
            ),
            &[(&hours, Type::TIMESTAMPTZ_ARRAY)],
        )
        .await?;
    for row in totals {
        let entry = current.hours.entry(row.get(0)).or_default();
        entry.count = row.get(1);
        entry.errors = row.get(2);
    }
    let buckets = tx
        .query_typed(
            &format!(
                "SELECT hour, bucket, sum(count)::bigint FROM {s}.hourly_latency \
                 WHERE hour = ANY($1) GROUP BY hour, bucket"
            ),
            &[(&hours, Type::TIMESTAMPTZ_ARRAY)],
        )
        .await?;
    for row in buckets {
        let bucket: i16 = row.get(1);
        if let Ok(bucket) = u16::try_from(bucket) {
            current
                .hours
                .entry(row.get(0))
                .or_default()
                .latency
                .insert(bucket, row.get(2));
        }
    }

    // The baseline: the snapshot of about one window ago.
    let older: Vec<Snapshot> = tx
        .query_typed(
            &format!(
                "SELECT counters FROM {s}.alert_snapshots WHERE taken_at >= $1 AND taken_at < $2 ORDER BY taken_at"
            ),
            &[(&(now - window * 2), Type::TIMESTAMPTZ), (&now, Type::TIMESTAMPTZ)],
        )
        .await?
        .iter()
        .filter_map(|row| serde_json::from_value(row.get(0)).ok())
        .collect();
    let evidence = Snapshot::baseline(&older, now, window).map(|old| evaluate(&Window::between(old, &current), rules));

    let counters = serde_json::to_value(&current).unwrap_or_default();
    tx.execute_typed(
        &format!(
            "INSERT INTO {s}.alert_snapshots (taken_at, counters) VALUES ($1, $2) \
             ON CONFLICT (taken_at) DO UPDATE SET counters = excluded.counters"
        ),
        &[(&now, Type::TIMESTAMPTZ), (&counters, Type::JSONB)],
    )
    .await?;
    tx.execute_typed(
        &format!("DELETE FROM {s}.alert_snapshots WHERE taken_at < $1"),
        &[(&(now - window * KEEP_WINDOWS), Type::TIMESTAMPTZ)],
    )
    .await?;

    // Each condition's state, moved on this run's evidence; what is owed and free is claimed.
    let names: Vec<&str> = Condition::ALL.iter().map(|c| c.as_str()).collect();
    tx.execute_typed(
        &format!("INSERT INTO {s}.alert_state (condition) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"),
        &[(&names, Type::TEXT_ARRAY)],
    )
    .await?;
    let rows = tx
        .query_typed(
            &format!(
                "SELECT condition, firing, delivered, changed_at, reading, sending_until \
                 FROM {s}.alert_state ORDER BY condition FOR UPDATE"
            ),
            &[],
        )
        .await?;
    let mut claimed = Vec::new();
    for row in rows {
        let Some(condition) = Condition::parse(row.get(0)) else {
            continue;
        };
        let reading: Option<serde_json::Value> = row.get(4);
        let state = ConditionState {
            firing: row.get(1),
            delivered: row.get(2),
            changed_at: row.get(3),
            reading: reading.and_then(|r| serde_json::from_value::<Reading>(r).ok()),
        };
        let mut held: Option<DateTime<Utc>> = row.get(5);
        let next = match evidence.as_ref().and_then(|e| e.iter().find(|(c, _)| *c == condition)) {
            Some((_, evidence)) => state.next(*evidence, now),
            None => state,
        };
        if next != state {
            let reading = serde_json::to_value(next.reading).unwrap_or_default();
            tx.execute_typed(
                &format!(
                    "UPDATE {s}.alert_state SET firing = $2, delivered = $3, changed_at = $4, reading = $5, \
                     sending_until = NULL, failed_attempts = 0, last_error = NULL, updated_at = now() \
                     WHERE condition = $1"
                ),
                &[
                    (&condition.as_str(), Type::TEXT),
                    (&next.firing, Type::BOOL),
                    (&next.delivered, Type::BOOL),
                    (&next.changed_at, Type::TIMESTAMPTZ),
                    (&reading, Type::JSONB),
                ],
            )
            .await?;
            held = None;
            tracing::info!(org = %org, condition = condition.as_str(), firing = next.firing, "alert changed");
        }
        if let Some(notice) = next.pending(condition)
            && held.is_none_or(|until| until <= now)
        {
            tx.execute_typed(
                &format!("UPDATE {s}.alert_state SET sending_until = $2 WHERE condition = $1"),
                &[(&condition.as_str(), Type::TEXT), (&(now + hold), Type::TIMESTAMPTZ)],
            )
            .await?;
            claimed.push(notice);
        }
    }
    tx.commit().await?;
    Ok(Evaluation { evidence, claimed })
}

#[async_trait]
impl AlertStore for PgAlerts {
    async fn organizations(&self) -> Result<Vec<OrgId>, StoreError> {
        super::registered_organizations(&self.db).await
    }

    async fn evaluate(
        &self,
        org: &OrgId,
        rules: &AlertRules,
        now: DateTime<Utc>,
        window: Duration,
        hold: Duration,
    ) -> Result<Evaluation, StoreError> {
        let now = micros(now);
        with_client!(&self.db, |client| {
            evaluate_on(&mut client, org, rules, now, window, hold).await
        })
    }

    async fn delivered(&self, org: &OrgId, notice: &Notice, at: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {}.alert_state SET delivered = true, sending_until = NULL, last_sent_at = $3, \
             failed_attempts = 0, last_error = NULL, updated_at = now() \
             WHERE condition = $1 AND changed_at = $2",
            schema(org)
        );
        let changed_at = micros(notice.changed_at);
        with_client!(&self.db, |client| {
            client
                .execute_typed(
                    &sql,
                    &[
                        (&notice.condition.as_str(), Type::TEXT),
                        (&changed_at, Type::TIMESTAMPTZ),
                        (&at, Type::TIMESTAMPTZ),
                    ],
                )
                .await
        })?;
        Ok(())
    }

    async fn delivery_failed(&self, org: &OrgId, notice: &Notice, error: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {}.alert_state SET sending_until = NULL, failed_attempts = failed_attempts + 1, \
             last_error = $3, updated_at = now() WHERE condition = $1 AND changed_at = $2",
            schema(org)
        );
        let changed_at = micros(notice.changed_at);
        let error: String = error.chars().take(1000).collect();
        with_client!(&self.db, |client| {
            client
                .execute_typed(
                    &sql,
                    &[
                        (&notice.condition.as_str(), Type::TEXT),
                        (&changed_at, Type::TIMESTAMPTZ),
                        (&error, Type::TEXT),
                    ],
                )
                .await
        })?;
        Ok(())
    }
}
