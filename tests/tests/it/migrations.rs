//! The migrator on a real PostgreSQL: idempotent, safe when raced, and the specification's tables
//! and indexes in every tenant schema.

use integration_tests::{connect, fresh_database, services, with_database};
use shared::adapters::postgres::migrate::{migrate_public, provision_tenant};
use shared::domain::ids::OrgId;

#[tokio::test]
async fn public_migrations_apply_once_even_when_raced() {
    let url = fresh_database().await; // already migrated once
    let runs = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { migrate_public(&mut connect(&url).await).await.unwrap() })
    });
    for run in runs.collect::<Vec<_>>() {
        assert_eq!(run.await.unwrap(), 0);
    }
    let applied: i64 = connect(&url)
        .await
        .query_one("SELECT count(*) FROM public.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert!(applied >= 1);
}

#[tokio::test]
async fn a_fresh_database_gets_the_registry() {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    connect(&services().admin_url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut client = connect(&with_database(&services().admin_url, &name)).await;
    assert!(migrate_public(&mut client).await.unwrap() >= 1);
    assert_eq!(migrate_public(&mut client).await.unwrap(), 0);
    client
        .batch_execute("SELECT organization_id, schema_name, schema_version FROM public.tenants")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tenant_schema_has_the_specifications_tables_and_indexes() {
    let url = fresh_database().await;
    let mut client = connect(&url).await;
    let org = OrgId::parse("Mixed-Case_Org").unwrap();
    assert!(provision_tenant(&mut client, &org).await.unwrap());
    assert!(
        !provision_tenant(&mut client, &org).await.unwrap(),
        "second time: nothing to do"
    );
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'org_Mixed-Case_Org' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "agent_interactions",
            "alert_snapshots",
            "alert_state",
            "command_executions",
            "daily_aggregates",
            "daily_latency",
            "daily_usage",
            "hook_events",
            "hourly_aggregates",
            "hourly_latency",
            "hourly_usage",
            "otlp_events",
            "otlp_points",
            "otlp_series",
            "productivity_metrics",
            "user_sessions"
        ]
    );
    let indexes: Vec<String> = client
        .query("SELECT indexname FROM pg_indexes WHERE schemaname = 'org_Mixed-Case_Org' AND indexname LIKE 'idx_%' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "idx_agent_int_org_agent_time",
            "idx_agent_int_timestamp",
            "idx_cmd_exec_org_user_time",
            "idx_cmd_exec_timestamp",
            "idx_hook_events_received",
            "idx_hook_events_session",
            "idx_productivity_org_type_period",
            "idx_productivity_period_end",
            "idx_sessions_active",
            "idx_sessions_org_user_active",
            "idx_sessions_start"
        ]
    );
}

#[tokio::test]
async fn a_new_tenant_migration_upgrades_every_existing_tenant() {
    use shared::adapters::postgres::migrate::{Migration, TENANT, migrate_all_tenants_with, provision_tenant_with};
    let url = fresh_database().await;
    let mut client = connect(&url).await;
    for org in ["acme", "globex"] {
        provision_tenant(&mut client, &OrgId::parse(org).unwrap())
            .await
            .unwrap();
    }
    let next = TENANT.last().unwrap().version + 1;
    let mut upgraded: Vec<Migration> = TENANT
        .iter()
        .map(|m| Migration {
            version: m.version,
            name: m.name,
            sql: m.sql,
        })
        .collect();
    upgraded.push(Migration {
        version: next,
        name: "marker",
        sql: "CREATE TABLE IF NOT EXISTS {schema}.marker (x integer)",
    });

    assert_eq!(migrate_all_tenants_with(&mut client, &upgraded).await.unwrap(), 2);
    assert_eq!(
        migrate_all_tenants_with(&mut client, &upgraded).await.unwrap(),
        0,
        "idempotent"
    );
    assert!(
        provision_tenant_with(&mut client, &OrgId::parse("newcomer").unwrap(), &upgraded)
            .await
            .unwrap()
    );

    for org in ["acme", "globex", "newcomer"] {
        let version: i32 = client
            .query_one(
                "SELECT schema_version FROM public.tenants WHERE organization_id = $1",
                &[&org],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, next, "{org}");
        client
            .batch_execute(&format!("SELECT x FROM \"org_{org}\".marker"))
            .await
            .unwrap_or_else(|e| panic!("{org}: {e}"));
    }
}

#[tokio::test]
async fn the_migrate_function_reports_what_it_did() {
    let url = fresh_database().await;
    let database =
        shared::config::DatabaseConfig::from_env(&shared::config::Env::from_pairs([("DATABASE_URL", url.as_str())]))
            .unwrap();
    let mut client = connect(&url).await;
    provision_tenant(&mut client, &OrgId::parse("acme").unwrap())
        .await
        .unwrap();
    let migrator = migrate::Migrator { database };
    let event = lambda_runtime::LambdaEvent::new(
        serde_json::from_str(include_str!("../../../events/migrate.json")).unwrap(),
        lambda_runtime::Context::default(),
    );
    let report = migrator.handle(event).await.unwrap();
    assert_eq!(report.public_migrations_applied, 0, "already applied");
    assert_eq!(report.tenants_upgraded, 0, "already current");
    assert_eq!(
        report.tenant_schema_version,
        shared::adapters::postgres::migrate::latest_tenant_version()
    );
}
