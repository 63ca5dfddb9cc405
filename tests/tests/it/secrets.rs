//! Secrets read from Secrets Manager (moto) when a function starts: the environment carries only
//! their ARNs, and a secret that cannot be read stops the start naming its variable.

use integration_tests::{SECRET, TestApp, answer, command_execution_request, create_secret, fresh_database, services};
use serde_json::json;
use shared::App;
use shared::adapters::secrets::{DATABASE_SECRET_ARN, JWT_KEY_SECRET_ARN, JWT_PREVIOUS_KEY_SECRET_ARN};
use shared::config::{DatabaseConfig, Env};

/// The parts of the test database's URL, as a stage gives them (`DATABASE_HOST`, ...).
fn database_parts(url: &str) -> Vec<(String, String)> {
    let config = DatabaseConfig::from_env(&Env::from_pairs([("DATABASE_URL", url)])).unwrap();
    let host = match &config.connection.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("a TCP host: {other:?}"),
    };
    vec![
        ("DATABASE_HOST".into(), host),
        ("DATABASE_PORT".into(), config.connection.get_ports()[0].to_string()),
        (
            "DATABASE_NAME".into(),
            config.connection.get_dbname().unwrap().to_owned(),
        ),
        ("DATABASE_SSL_MODE".into(), "disable".into()),
    ]
}

async fn stage_env(database_url: &str, extra: &[(&str, &str)]) -> Env {
    let table = integration_tests::fresh_table().await;
    let mut vars = database_parts(database_url);
    vars.push(("RATE_LIMIT_TABLE_NAME".into(), table));
    vars.push((
        "API_KEYS_TABLE_NAME".into(),
        integration_tests::fresh_api_keys_table().await,
    ));
    vars.push(("STAGE".into(), "dev".into()));
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

#[tokio::test]
async fn a_function_started_from_secret_arns_reads_its_database_login_and_token_key() {
    // GIVEN the database login and the token key in Secrets Manager, and an environment that
    // names only their ARNs (as template.yaml deploys it)
    services();
    let database_url = fresh_database().await;
    let login = create_secret(&json!({"username": "postgres", "password": "unused-by-trust-auth"}).to_string()).await;
    let key = create_secret(SECRET).await;
    let env = stage_env(
        &database_url,
        &[(DATABASE_SECRET_ARN, &login), (JWT_KEY_SECRET_ARN, &key)],
    )
    .await;
    // WHEN the function starts
    let aws = shared::app::aws_config().await;
    let env = shared::adapters::secrets::resolve(env, &aws)
        .await
        .expect("secrets read");
    let app = App::from_env(&env, &aws).expect("state built from the secrets");
    // THEN a token signed with the secret's key stores a metric through the secret's login
    let body = json!({"command_name": "from_secrets", "execution_time_ms": 5, "status": "success"});
    let stored = answer(
        command_execution::handle(&app, command_execution_request("acme", &body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stored.status, 201, "{}", stored.body);
    let rows: i64 = integration_tests::connect(&database_url)
        .await
        .query_one("SELECT count(*) FROM \"org_acme\".command_executions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // ...and a token signed with the public development secret is refused.
    let mut req = command_execution_request("acme", &body);
    let dev_token = local_front::token::mint(shared::config::LOCAL_DEV_SECRET, "acme", "alice", 1).unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {dev_token}").parse().unwrap());
    assert_eq!(
        answer(command_execution::handle(&app, req).await.unwrap()).await.status,
        401
    );
}

#[tokio::test]
async fn the_login_really_comes_from_the_secret() {
    // GIVEN a database secret naming a role the server does not have
    let database_url = fresh_database().await;
    let login = create_secret(&json!({"username": "no_such_role", "password": "x"}).to_string()).await;
    let key = create_secret(SECRET).await;
    let env = stage_env(
        &database_url,
        &[(DATABASE_SECRET_ARN, &login), (JWT_KEY_SECRET_ARN, &key)],
    )
    .await;
    let aws = shared::app::aws_config().await;
    let app = App::from_env(&shared::adapters::secrets::resolve(env, &aws).await.unwrap(), &aws).unwrap();
    // WHEN a metric is sent THEN the database refuses that login: a 5xx naming nothing internal
    let body = json!({"command_name": "x", "execution_time_ms": 5, "status": "success"});
    let refused = answer(
        command_execution::handle(&app, command_execution_request("acme", &body))
            .await
            .unwrap(),
    )
    .await;
    assert!((500..=503).contains(&refused.status), "{}", refused.body);
    assert!(!refused.body.to_string().contains("no_such_role"), "{}", refused.body);
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_stops_the_start_naming_its_variable() {
    services();
    let aws = shared::app::aws_config().await;
    let database_url = fresh_database().await;
    let key = create_secret(SECRET).await;
    // A secret that does not exist (moto answers ResourceNotFoundException).
    let missing = format!("{key}-gone");
    for (variable, arn) in [
        (JWT_KEY_SECRET_ARN, missing.as_str()),
        (DATABASE_SECRET_ARN, missing.as_str()),
    ] {
        let mut extra = vec![(variable, arn)];
        if variable != JWT_KEY_SECRET_ARN {
            extra.push((JWT_KEY_SECRET_ARN, key.as_str()));
        }
        let env = stage_env(&database_url, &extra).await;
        let err = match shared::adapters::secrets::resolve(env, &aws).await {
            Ok(_) => panic!("{variable}: a missing secret must stop the start"),
            Err(err) => err,
        };
        assert_eq!(err.variable, variable, "{err}");
        assert!(err.problem.contains("GetSecretValue"), "{err}");
        assert!(!err.to_string().contains(SECRET), "no secret text: {err}");
    }
    // The previous key of a rotation too.
    let env = stage_env(
        &database_url,
        &[
            (JWT_KEY_SECRET_ARN, key.as_str()),
            (JWT_PREVIOUS_KEY_SECRET_ARN, missing.as_str()),
        ],
    )
    .await;
    let err = shared::adapters::secrets::resolve(env, &aws)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.variable, JWT_PREVIOUS_KEY_SECRET_ARN);
}

#[tokio::test]
async fn a_deployed_stage_refuses_the_public_development_secret_even_from_secrets_manager() {
    let database_url = fresh_database().await;
    let public = create_secret(shared::config::LOCAL_DEV_SECRET).await;
    let login = create_secret(&json!({"username": "postgres", "password": "x"}).to_string()).await;
    let env = stage_env(
        &database_url,
        &[(DATABASE_SECRET_ARN, &login), (JWT_KEY_SECRET_ARN, &public)],
    )
    .await;
    let aws = shared::app::aws_config().await;
    let env = shared::adapters::secrets::resolve(env, &aws).await.unwrap();
    let err = match App::from_env(&env, &aws) {
        Ok(_) => panic!("the dev stage must refuse the public secret"),
        Err(err) => err,
    };
    assert_eq!(err.variable, JWT_KEY_SECRET_ARN);
    assert!(!err.to_string().contains(shared::config::LOCAL_DEV_SECRET), "{err}");
    // The local stack and the tests keep working with plain variables and no ARN.
    let _ = TestApp::spawn().await;
}
