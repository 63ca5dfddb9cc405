//! PostgreSQL: a bounded pool built once per container, schema-per-tenant storage, migrations.
//!
//! Statements on the request path are sent with `query_typed` (parse, bind and execute in one
//! round trip, unnamed, no session state), so they also work behind RDS Proxy or PgBouncer in
//! transaction mode. Tenant schema names are quoted and every value is a bind parameter.

pub mod alerts;
mod envelope;
pub mod lifecycle;
pub mod migrate;
mod sql;
mod store;
mod usage;

use std::time::Duration;

use deadpool_postgres::{Manager, Object, Pool, PoolError, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use store::PgStore;

use crate::config::{ConfigError, DatabaseConfig};
use crate::ports::store::StoreError;

#[derive(Clone)]
pub struct Database {
    pool: Pool,
    timeout: Duration,
}

impl Database {
    /// Builds the pool; connections are opened on first use, so a cold start does not fail
    /// (or wait) when the database is briefly unreachable.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, ConfigError> {
        let mut pg = config.connection.clone();
        pg.connect_timeout(config.timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("metrics-collection");
        }
        // The server gives up on a statement within the same budget as the client.
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        options.push_str(&format!(" -c statement_timeout={}", config.timeout.as_millis()));
        pg.options(options.trim());
        let pool = Pool::builder(Manager::new(pg, tls(config)?))
            .max_size(config.max_connections)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| ConfigError::new("DATABASE_MAX_CONNECTIONS", e.to_string()))?;
        Ok(Self {
            pool,
            timeout: config.timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A pooled connection, within the configured budget.
    pub async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Bounds `work` by the configured time budget; past it the database counts as unavailable.
    /// The time it took counts towards the request's `DatabaseLatency` metric.
    pub async fn within_budget<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer within {:?}", self.timeout))));
        crate::telemetry::add_database_time(started.elapsed().as_secs_f64() * 1e3);
        result
    }

    /// Whether the database answers a trivial query (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_client!(self, |client| client.batch_execute("SELECT 1").await)
    }
}

/// Runs `$work` (an expression using `$client`, a pooled connection) within the database's time
/// budget. A connection that turns out to be dead (a frozen Lambda container wakes up with stale
/// sockets) is replaced and `$work` evaluated once more, so it must be idempotent.
///
/// A macro rather than a function taking an async closure: such closures borrowing the
/// connection cannot yet be proven `Send` for every lifetime, which the Lambda runtime needs.
macro_rules! with_client {
    ($db:expr, |$client:ident| $work:expr) => {{
        let db: &$crate::adapters::postgres::Database = $db;
        db.within_budget(async {
            #[allow(unused_mut)]
            let mut $client = db.client().await?;
            match $work {
                Err(err) if $crate::adapters::postgres::is_connection_error(&err) => {
                    tracing::warn!(error = %err, "database connection lost; retrying once");
                    drop($client);
                    #[allow(unused_mut)]
                    let mut $client = db.client().await?;
                    $work.map_err($crate::adapters::postgres::classify)
                }
                other => other.map_err($crate::adapters::postgres::classify),
            }
        })
        .await
    }};
}
pub(crate) use with_client;

/// Every organization in the registry, in id order (the reaper, retention and alerts walk
/// them); a row whose id no longer parses is logged and skipped.
pub(crate) async fn registered_organizations(db: &Database) -> Result<Vec<crate::domain::ids::OrgId>, StoreError> {
    let rows = with_client!(db, |client| {
        client
            .query_typed(
                "SELECT organization_id FROM public.tenants ORDER BY organization_id",
                &[],
            )
            .await
    })?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let raw: &str = row.get(0);
            crate::domain::ids::OrgId::parse(raw)
                .inspect_err(|_| tracing::error!(organization_id = raw, "skipping tenant with an invalid id"))
                .ok()
        })
        .collect())
}

/// TLS for PostgreSQL: the public roots (enough for RDS Proxy and most managed services) plus
/// the configured CA certificates (e.g. the RDS bundle). Whether TLS is used follows `sslmode`.
pub fn tls(config: &DatabaseConfig) -> Result<MakeRustlsConnect, ConfigError> {
    let tls = crate::adapters::tls::client_config(config.ca_certificates.as_deref(), "DATABASE_CA_CERT")?;
    Ok(MakeRustlsConnect::new(tls))
}

/// One connection outside the pool (for migrations); its driver runs in the background.
pub async fn connect_one(config: &DatabaseConfig) -> Result<tokio_postgres::Client, String> {
    let tls = tls(config).map_err(|e| e.to_string())?;
    let (client, connection) = config
        .connection
        .connect(tls)
        .await
        .map_err(|e| format!("connect to PostgreSQL: {e}"))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "migration connection closed");
        }
    });
    Ok(client)
}

/// An error of the connection rather than of the statement.
pub(crate) fn is_connection_error(err: &tokio_postgres::Error) -> bool {
    err.is_closed() || err.code().is_none_or(|code| code.code().starts_with("08"))
}

/// Outages (connection, resources, shutdown, statement timeout, serialization) are worth a
/// retry and become 503; data the server refuses (data exceptions, class 22, and constraint
/// violations, class 23) can never be written and is [`StoreError::Rejected`]; anything else
/// reported by the server is a bug and becomes 500.
pub fn classify(err: tokio_postgres::Error) -> StoreError {
    let detail = err.to_string();
    let Some(code) = err.code() else {
        return StoreError::Unavailable(detail);
    };
    let code = code.code();
    let transient = ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class))
        || matches!(code, "40001" | "40P01" | "55P03");
    if transient {
        StoreError::Unavailable(format!("{code}: {detail}"))
    } else if code.starts_with("22") || code.starts_with("23") {
        let db = err.as_db_error();
        StoreError::Rejected {
            field: db.and_then(refused_field),
            reason: format!("{code}: {}", db.map_or(detail.as_str(), |db| db.message())),
        }
    } else {
        StoreError::Internal(format!("{code}: {detail}"))
    }
}

/// The column a refusal is about: named by the server, or by the constraint's default name
/// (`<table>_<column>_check`).
fn refused_field(db: &tokio_postgres::error::DbError) -> Option<String> {
    if let Some(column) = db.column() {
        return Some(column.to_owned());
    }
    let constraint = db.constraint()?;
    let table = db.table().unwrap_or_default();
    constraint
        .strip_prefix(table)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.strip_suffix("_check"))
        .map(str::to_owned)
}

fn pool_error(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(err) => classify(err),
        other => StoreError::Unavailable(other.to_string()),
    }
}
