//! The migrator, invoked by operators after a deploy (`sam remote invoke MigrateFunction`): applies
//! `migrations/public` to the public schema and brings every tenant schema to the newest
//! `migrations/tenant` migration. Idempotent and safe to run while the service is live (advisory
//! locks; each tenant in its own transaction). The local stack and the tests run the same code.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use shared::adapters::postgres::connect_one;
use shared::adapters::postgres::migrate::{MigrationReport, migrate_database};
use shared::config::{ConfigError, DatabaseConfig, Env};

/// What this function builds once per container.
pub type State = Migrator;

pub struct Migrator {
    pub database: DatabaseConfig,
}

impl Migrator {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
        })
    }

    pub async fn run(&self) -> Result<MigrationReport, String> {
        let mut client = connect_one(&self.database).await?;
        let report = migrate_database(&mut client)
            .await
            .map_err(|e| format!("migration failed: {e}"))?;
        tracing::info!(
            public_migrations_applied = report.public_migrations_applied,
            tenants_upgraded = report.tenants_upgraded,
            tenant_schema_version = report.tenant_schema_version,
            "migrations applied"
        );
        Ok(report)
    }

    /// Any event (e.g. `{}`); answers the report.
    pub async fn handle(&self, _event: LambdaEvent<Value>) -> Result<MigrationReport, Error> {
        Ok(self.run().await?)
    }
}
impl shared::app::FromEnv for Migrator {
    fn from_env(env: &Env, _aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Migrator::from_env(env)
    }
}
