//! Live updates over the local front's WebSocket API, with the functions' own pusher calling the
//! front's management API, and the connections table in moto.

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::StreamExt;
use integration_tests::{
    SECRET, TestApp, admin_token, create_secret, dynamo, free_port, fresh_connections_table, http,
    spec_command_example, token,
};
use serde_json::{Value, json};
use shared::adapters::dynamodb::connections::DynamoConnections;
use shared::domain::ids::{Caller, OrgId, Role, UserId};
use shared::ports::live::{Connection, Connections};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

type Socket = WebSocketStream<TcpStream>;

/// The bound: an update arrives within a second of the write.
const WITHIN: Duration = Duration::from_secs(1);

async fn open(addr: SocketAddr, query: &str) -> Result<Socket, tungstenite::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/live{query}");
    tokio_tungstenite::client_async(url, stream)
        .await
        .map(|(socket, _)| socket)
}

/// An admin's dashboard: it sees every developer's updates whole.
async fn viewer(addr: SocketAddr, org: &str) -> Socket {
    open(addr, &format!("?token={}", admin_token(org, "viewer")))
        .await
        .expect("handshake")
}

/// A member's dashboard.
async fn member(addr: SocketAddr, org: &str, user: &str) -> Socket {
    open(addr, &format!("?token={}", token(org, user)))
        .await
        .expect("handshake")
}

/// The next `metric_update`, or `None` when none comes within `wait`.
async fn next_update(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).expect("JSON message")),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn post(addr: SocketAddr, org: &str, path: &str, body: &Value) -> Value {
    let (status, _, answer) = http(
        addr,
        "POST",
        path,
        Some(&token(org, "alice")),
        "application/json",
        &body.to_string(),
    )
    .await;
    assert!(status == 201 || status == 202, "{path}: {status} {answer}");
    answer
}

async fn post_command(addr: SocketAddr, org: &str) -> Value {
    post(addr, org, "/api/v1/metrics/command-execution", &spec_command_example()).await
}

fn viewer_of(org: &str) -> Caller {
    Caller::member(OrgId::parse(org).unwrap(), UserId::parse("viewer").unwrap())
}

async fn connection_items(table: &str) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let scan = dynamo().await.scan().table_name(table).send().await.unwrap();
    scan.items.unwrap_or_default()
}

fn table_of(app: &TestApp) -> String {
    app.connections_table.clone().expect("a live test app")
}

async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_member_sees_its_own_updates_whole_and_of_colleagues_only_the_kind() {
    // GIVEN alice's and bob's dashboards (members) and an admin's, all of acme
    let (_app, addr) = TestApp::spawn_live(&[]).await;
    let mut alice = member(addr, "acme", "alice").await;
    let mut bob = member(addr, "acme", "bob").await;
    let mut admin = viewer(addr, "acme").await;

    // WHEN alice stores a command execution
    let stored = post_command(addr, "acme").await;

    // THEN alice and the admin see it whole, bob only that there is a new command execution
    for socket in [&mut alice, &mut admin] {
        let update = next_update(socket, WITHIN).await.expect("the whole update");
        assert_eq!(
            (update["user_id"].as_str(), &update["id"]),
            (Some("alice"), &stored["data"]["id"])
        );
    }
    let update = next_update(&mut bob, WITHIN).await.expect("bob's update");
    assert_eq!(
        update,
        json!({"type": "metric_update", "organization_id": "acme", "kind": "command_execution"}),
        "bob learns only that acme has a new command execution"
    );
}

#[tokio::test]
async fn each_organization_receives_only_its_own_updates_within_a_second() {
    // GIVEN a dashboard of acme and one of globex
    let (app, addr) = TestApp::spawn_live(&[]).await;
    let mut acme = viewer(addr, "acme").await;
    let mut globex = viewer(addr, "globex").await;

    // WHEN acme stores a command execution THEN acme's dashboard shows it, globex's does not
    let stored = post_command(addr, "acme").await;
    let update = next_update(&mut acme, WITHIN)
        .await
        .expect("acme's update within a second");
    assert_eq!(update["type"], "metric_update");
    assert_eq!(update["kind"], "command_execution");
    assert_eq!(update["organization_id"], "acme");
    assert_eq!(update["id"], stored["data"]["id"]);
    assert_eq!(update["metric"]["command_name"], "claude_code_generate");
    assert!(
        update["metric"].get("command_args").is_none(),
        "payloads stay out: {update}"
    );

    // WHEN globex stores an agent interaction THEN only globex's dashboard shows it
    let agent = json!({"agent_name": "code-reviewer", "interaction_type": "delegation", "input_tokens": 120,
                       "output_tokens": 480, "processing_time_ms": 900, "success": true});
    let stored = post(addr, "globex", "/api/v1/metrics/agent-interaction", &agent).await;
    let update = next_update(&mut globex, WITHIN)
        .await
        .expect("globex's update within a second");
    assert_eq!(update["kind"], "agent_interaction");
    assert_eq!(update["organization_id"], "globex");
    assert_eq!(update["id"], stored["data"]["id"]);
    assert_eq!(update["metric"]["output_tokens"], 480);

    // WHEN globex's batch is written by the worker THEN globex's dashboard hears of it once
    let batch = json!({"command_executions": [
        {"command_name": "lint", "execution_time_ms": 10, "status": "success"},
        {"command_name": "test", "execution_time_ms": 20, "status": "error"}]});
    post(addr, "globex", "/api/v1/metrics/batch", &batch).await;
    app.drain().await;
    let update = next_update(&mut globex, WITHIN).await.expect("globex's batch update");
    assert_eq!(update["kind"], "batch");
    assert_eq!(update["metric"]["new"]["command_executions"], 2);

    // THEN nothing else reached either dashboard
    assert_eq!(next_update(&mut acme, Duration::from_millis(500)).await, None);
    assert_eq!(next_update(&mut globex, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_handshake_without_a_valid_token_is_refused_and_nothing_is_kept() {
    let (app, addr) = TestApp::spawn_live(&[]).await;
    let forged = format!("?token={}x", token("acme", "viewer"));
    let other_secret = format!(
        "?token={}",
        local_front::token::mint("another-secret", "acme", "viewer", 1).unwrap()
    );
    for query in ["", "?token=", forged.as_str(), other_secret.as_str()] {
        match open(addr, query).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401, "{query}"),
            other => panic!(
                "{query}: expected a refused handshake, got {:?}",
                other.map(|_| "a socket")
            ),
        }
    }
    assert!(connection_items(&table_of(&app)).await.is_empty());
}

#[tokio::test]
async fn a_connection_is_kept_under_its_tokens_organization_until_it_closes() {
    let (app, addr) = TestApp::spawn_live(&[]).await;
    let table = table_of(&app);
    let mut socket = viewer(addr, "acme").await;

    let items = connection_items(&table).await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["org_id"], AttributeValue::S("acme".into()));
    assert_eq!(item["user_id"], AttributeValue::S("viewer".into()));
    let AttributeValue::N(expires_at) = &item["expires_at"] else {
        panic!("expires_at is a number: {item:?}")
    };
    let lifetime = expires_at.parse::<i64>().unwrap() - chrono::Utc::now().timestamp();
    assert!(
        (3500..=3600).contains(&lifetime),
        "its token's hour (within API Gateway's two): {lifetime}"
    );

    socket.close(None).await.unwrap();
    assert!(
        eventually(async || connection_items(&table).await.is_empty()).await,
        "$disconnect forgets the connection"
    );
}

#[tokio::test]
async fn a_connection_found_gone_is_forgotten_and_the_write_still_succeeds() {
    // GIVEN a connection the table remembers but API Gateway no longer has
    let (app, addr) = TestApp::spawn_live(&[]).await;
    let table = table_of(&app);
    let connections = DynamoConnections::new(
        &shared::app::aws_config().await,
        &shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        &table,
    )
    .unwrap();
    let acme = viewer_of("acme");
    connections
        .add(&Connection::opened_now("c3RhbGUtY29ubg==", &acme))
        .await
        .unwrap();
    // WHEN acme stores a metric
    post_command(addr, "acme").await;
    // THEN the write succeeded and the push forgot the gone connection
    assert_eq!(app.count("acme", "command_executions").await, 1);
    assert!(
        eventually(async || connection_items(&table).await.is_empty()).await,
        "the gone connection is removed"
    );
}

#[tokio::test]
async fn an_unreachable_management_api_never_fails_or_loses_a_write() {
    // GIVEN an open connection, but pushes go to a port where nothing listens
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (app, addr) = TestApp::spawn_live(&[("LIVE_UPDATES_ENDPOINT", nowhere.as_str())]).await;
    let mut socket = viewer(addr, "acme").await;
    // WHEN metrics are stored
    for _ in 0..3 {
        post_command(addr, "acme").await;
    }
    // THEN every write was acknowledged and stored; the push failed quietly and the
    // connection is kept (it is not known to be gone)
    assert_eq!(app.count("acme", "command_executions").await, 3);
    assert_eq!(next_update(&mut socket, Duration::from_millis(300)).await, None);
    assert_eq!(connection_items(&table_of(&app)).await.len(), 1);
}

#[tokio::test]
async fn the_connections_table_finds_an_organizations_open_connections() {
    let table = fresh_connections_table().await;
    let connections = DynamoConnections::new(
        &shared::app::aws_config().await,
        &shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        &table,
    )
    .unwrap();
    for (id, org) in [("a1", "acme"), ("a2", "acme"), ("g1", "globex")] {
        connections
            .add(&Connection::opened_now(id, &viewer_of(org)))
            .await
            .unwrap();
    }
    let mut expired = Connection::opened_now("a0", &viewer_of("acme"));
    expired.expires_at = chrono::Utc::now().timestamp() - 60;
    connections.add(&expired).await.unwrap();

    let acme = OrgId::parse("acme").unwrap();
    let mut found = connections.of_org(&acme).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(
        found
            .iter()
            .all(|c| c.user.as_deref() == Some("viewer") && c.role == Role::Member)
    );
    let now = chrono::Utc::now().timestamp();
    let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a0", "a1", "a2"], "expired ones are listed, for closing");
    let open: Vec<&str> = found
        .iter()
        .filter(|c| !c.expired(now))
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(open, ["a1", "a2"], "and told apart by their expiry");
    let viewer = viewer_of("acme").user;
    let open = connections.open_count(&acme, &viewer).await.unwrap();
    assert_eq!((open.organization, open.user), (2, 2));
    connections.remove("a1").await.unwrap();
    let open = connections.open_count(&acme, &viewer).await.unwrap();
    assert_eq!((open.organization, open.user), (1, 1));

    let ttl = dynamo()
        .await
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name.as_deref(), Some("expires_at"));
}

#[tokio::test]
async fn a_deployed_writer_answers_and_its_extension_pushes_after_each_invocation() {
    // GIVEN the command-execution binary as deployed, under a Lambda Runtime and Extensions API
    // that also plays the management API, and a dashboard of the fixture's organization
    let app = TestApp::spawn().await;
    let table = fresh_connections_table().await;
    DynamoConnections::new(
        &shared::app::aws_config().await,
        &shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        &table,
    )
    .unwrap()
    .add(&Connection::opened_now("ZGFzaGJvYXJk", &viewer_of("demo")))
    .await
    .unwrap();
    // Its secrets come from Secrets Manager, by ARN, as deployed. The fixture is signed with
    // the public development secret, which only the local stage accepts.
    let database = shared::config::DatabaseConfig::from_env(&shared::config::Env::from_pairs([(
        "DATABASE_URL",
        app.database_url.as_str(),
    )]))
    .unwrap();
    let login = create_secret(&json!({"username": "postgres", "password": "unused"}).to_string()).await;
    let key = create_secret(shared::config::LOCAL_DEV_SECRET).await;
    let lambda = local_front::runtime_api::RuntimeApi::default();
    let addr = lambda.start().await;
    let _function = tokio::process::Command::new(env!("CARGO_BIN_EXE_live-command-execution"))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "command-execution")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("STAGE", shared::config::LOCAL_STAGE)
        .env("DATABASE_SECRET_ARN", &login)
        .env("DATABASE_HOST", "127.0.0.1")
        .env("DATABASE_PORT", database.connection.get_ports()[0].to_string())
        .env("DATABASE_NAME", database.connection.get_dbname().unwrap())
        .env("DATABASE_SSL_MODE", "disable")
        .env("JWT_KEY_SECRET_ARN", &key)
        .env("RATE_LIMIT_TABLE_NAME", &app.table)
        .env("API_KEYS_TABLE_NAME", &app.keys_table)
        .env("CONNECTIONS_TABLE_NAME", &table)
        .env("LIVE_UPDATES_ENDPOINT", format!("http://{addr}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the function");
    // WHEN Lambda invokes it twice with the fixture
    let fixture = integration_tests::event("command-execution").to_owned();
    lambda.push(fixture.clone());
    lambda.push(fixture);
    tokio::time::timeout(Duration::from_secs(60), lambda.wait_for(2))
        .await
        .expect("both invocations answered");
    // THEN both were answered 201 and stored, and after each the extension ran the push
    assert!(lambda.errors().is_empty(), "{:?}", lambda.errors());
    for answer in lambda.answers() {
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["statusCode"], 201, "{answer}");
    }
    assert_eq!(app.count("demo", "command_executions").await, 2);
    assert!(
        eventually(async || lambda.extension_done() == 2 && lambda.pushes() == 2).await,
        "extension flushes {} and pushes {}",
        lambda.extension_done(),
        lambda.pushes()
    );
}

/// A token of `org` that expires `seconds` from now.
fn token_expiring_in(org: &str, seconds: i64) -> (String, i64) {
    let exp = chrono::Utc::now().timestamp() + seconds;
    let claims = json!({"sub": "viewer", "org_id": org, "exp": exp});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    (token, exp)
}

/// Whether the server closes `socket` within `wait` (a close frame or the end of the stream),
/// with no text message before it.
async fn closed_without_messages(socket: &mut Socket, wait: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Err("still open".into()),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) => return Ok(()),
            Ok(Some(Ok(Message::Text(text)))) => return Err(format!("received {text}")),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn refused_status(opened: Result<Socket, tungstenite::Error>) -> u16 {
    match opened {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected a refused handshake, got {other}"),
        Ok(_) => panic!("expected a refused handshake, got a socket"),
    }
}

#[tokio::test]
async fn a_connection_ends_when_its_token_expires() {
    // GIVEN a dashboard whose token expires in three seconds, and one with a longer token
    let (app, addr) = TestApp::spawn_live(&[]).await;
    let table = table_of(&app);
    let (short_token, exp) = token_expiring_in("acme", 3);
    let mut short = open(addr, &format!("?token={short_token}")).await.expect("handshake");
    let mut long = viewer(addr, "acme").await;
    // THEN the short one is kept until its token's exp, not for two hours
    let expiries: Vec<i64> = connection_items(&table)
        .await
        .iter()
        .map(|item| match &item["expires_at"] {
            AttributeValue::N(n) => n.parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(expiries.contains(&exp), "{expiries:?} holds the token's exp {exp}");

    // WHEN the token has expired and acme stores a metric
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(4)).await;
    assert!(chrono::Utc::now().timestamp() > exp);
    post_command(addr, "acme").await;

    // THEN the live dashboard gets the update, the expired one gets nothing and is closed,
    // and the table forgets it
    assert!(
        next_update(&mut long, WITHIN).await.is_some(),
        "the unexpired dashboard is served"
    );
    closed_without_messages(&mut short, Duration::from_secs(3))
        .await
        .expect("the expired connection is closed without a message");
    assert!(
        eventually(async || connection_items(&table).await.len() == 1).await,
        "the expired connection is removed"
    );
}

#[tokio::test]
async fn connect_is_rate_limited_with_the_http_routes_budget_and_keeps_nothing_when_refused() {
    // GIVEN an organization limit of three requests a minute
    let (app, addr) = TestApp::spawn_live(&[("RATE_LIMIT_MAX_REQUESTS", "3")]).await;
    let table = table_of(&app);
    // WHEN acme opens two dashboards and sends one metric, then opens a third dashboard
    let _first = viewer(addr, "acme").await;
    let _second = viewer(addr, "acme").await;
    post_command(addr, "acme").await;
    let refused = open(addr, &format!("?token={}", token("acme", "viewer"))).await;
    // THEN the third handshake is refused with 429 and nothing is kept for it
    assert_eq!(refused_status(refused), 429);
    assert_eq!(connection_items(&table).await.len(), 2);
    // ...while another organization has its own budget
    let _globex = viewer(addr, "globex").await;
    assert_eq!(connection_items(&table).await.len(), 3);
}

#[tokio::test]
async fn an_organization_at_its_connection_cap_is_refused_until_one_closes() {
    // GIVEN a cap of two open connections per organization
    let (app, addr) = TestApp::spawn_live(&[("LIVE_MAX_CONNECTIONS_PER_ORG", "2")]).await;
    let table = table_of(&app);
    let mut first = viewer(addr, "acme").await;
    let _second = viewer(addr, "acme").await;
    // WHEN acme opens a third THEN it is refused with 429, and nothing is kept
    let refused = open(addr, &format!("?token={}", token("acme", "viewer"))).await;
    assert_eq!(refused_status(refused), 429);
    assert_eq!(connection_items(&table).await.len(), 2);
    // Another organization is not counted against acme's cap
    let _globex = viewer(addr, "globex").await;
    // WHEN one of acme's dashboards closes THEN acme may open another
    first.close(None).await.unwrap();
    assert!(
        eventually(async || connection_items(&table).await.len() == 2).await,
        "$disconnect forgets the closed one"
    );
    let _third = viewer(addr, "acme").await;
    assert_eq!(connection_items(&table).await.len(), 3);
}

#[tokio::test]
async fn a_user_at_their_connection_cap_is_refused_while_colleagues_still_connect() {
    // GIVEN a cap of two open connections per user, and mallory holding two
    let (app, addr) = TestApp::spawn_live(&[("LIVE_MAX_CONNECTIONS_PER_USER", "2")]).await;
    let table = table_of(&app);
    let _first = member(addr, "acme", "mallory").await;
    let _second = member(addr, "acme", "mallory").await;
    // WHEN mallory opens a third THEN it is refused with 429, and nothing is kept for it
    let refused = open(addr, &format!("?token={}", token("acme", "mallory"))).await;
    assert_eq!(refused_status(refused), 429);
    assert_eq!(connection_items(&table).await.len(), 2);
    // AND a colleague, and the organization's admin, still connect
    let _colleague = member(addr, "acme", "bob").await;
    let _admin = viewer(addr, "acme").await;
    assert_eq!(connection_items(&table).await.len(), 4);
}

#[tokio::test]
async fn members_at_their_caps_leave_the_last_tenth_of_the_organizations_connections_to_its_admins() {
    // GIVEN an organization capped at ten connections and its users at three, and three
    // members holding nine
    let (app, addr) = TestApp::spawn_live(&[
        ("LIVE_MAX_CONNECTIONS_PER_ORG", "10"),
        ("LIVE_MAX_CONNECTIONS_PER_USER", "3"),
    ])
    .await;
    let table = table_of(&app);
    let mut held = Vec::new();
    for user in ["ann", "ben", "cat"] {
        for _ in 0..3 {
            held.push(member(addr, "acme", user).await);
        }
    }
    // WHEN a fourth member connects THEN it is refused with 429, and nothing is kept for it
    let refused = open(addr, &format!("?token={}", token("acme", "dan"))).await;
    assert_eq!(refused_status(refused), 429);
    assert_eq!(connection_items(&table).await.len(), 9);
    // AND the organization's admin still connects, taking the tenth and last
    let _admin = viewer(addr, "acme").await;
    let full = open(addr, &format!("?token={}", admin_token("acme", "boss"))).await;
    assert_eq!(refused_status(full), 429);
    assert_eq!(connection_items(&table).await.len(), 10);
}

#[tokio::test]
async fn an_otlp_export_pushes_one_usage_update_to_its_organization_and_a_retry_none() {
    // GIVEN a dashboard of acme and one of globex
    let (_app, addr) = TestApp::spawn_live(&[]).await;
    let mut acme = viewer(addr, "acme").await;
    let mut globex = viewer(addr, "globex").await;
    // WHEN acme's developer exports Claude Code's recorded metrics, then again (a retry)
    let export = include_str!("../../../events/otlp/metrics.json");
    for _ in 0..2 {
        let (status, _, body) = http(
            addr,
            "POST",
            "/otlp/v1/metrics",
            Some(&token("acme", "alice")),
            "application/json",
            export,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // THEN acme's dashboard hears of the usage once, without labels or session ids
    let update = next_update(&mut acme, WITHIN)
        .await
        .expect("acme's usage update within a second");
    assert_eq!(
        (update["kind"].as_str(), update["user_id"].as_str()),
        (Some("usage"), Some("alice"))
    );
    assert_eq!(update["metric"]["usage"]["input_tokens"], 240);
    assert!(
        !update.to_string().contains("628c2061"),
        "no session or label is pushed: {update}"
    );
    assert_eq!(
        next_update(&mut acme, Duration::from_millis(500)).await,
        None,
        "the retry says nothing"
    );
    assert_eq!(next_update(&mut globex, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_connections_table_made_before_roles_gets_the_viewers_index() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType,
    };
    // GIVEN a table as the local stack made it before roles: only the `by-organization` index
    let table = format!("old-connections-{}", uuid::Uuid::new_v4().simple());
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |name: &str| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(KeyType::Hash)
            .build()
            .unwrap()
    };
    let old_index = GlobalSecondaryIndex::builder()
        .index_name("by-organization")
        .key_schema(key("org_id"))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes("expires_at")
                .build(),
        )
        .build()
        .unwrap();
    let dynamo = dynamo().await;
    dynamo
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("connection_id"))
        .attribute_definitions(attribute("org_id"))
        .key_schema(key("connection_id"))
        .global_secondary_indexes(old_index)
        .send()
        .await
        .unwrap();
    // WHEN the local stack provisions it again
    local_front::provision::ensure_connections_table(&dynamo, &table)
        .await
        .unwrap();
    // THEN an organization's connections are found with who may see what
    let connections = DynamoConnections::new(
        &shared::app::aws_config().await,
        &shared::config::DynamoDbConfig::from_env(&shared::config::Env::process()),
        &table,
    )
    .unwrap();
    connections
        .add(&Connection::opened_now("c1", &viewer_of("acme")))
        .await
        .unwrap();
    let found = connections.of_org(&OrgId::parse("acme").unwrap()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].user.as_deref(), found[0].role),
        (Some("viewer"), Role::Member)
    );
}
