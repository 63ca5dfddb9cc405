//! Per-developer API keys over HTTP against the real services: the local front, the keys table
//! in moto and PostgreSQL. A key is created by an admin, acts as its user exactly like a JWT,
//! is listed without its secret, and is refused once revoked (within the cache TTL) or expired;
//! organizations never see or touch each other's keys; members manage none.

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{TestApp, admin_token, dynamo, free_port, http, spec_command_example, token};
use serde_json::{Value, json};
use sha2::Digest;

const KEYS: &str = "/api/v1/keys";
const COMMAND: &str = "/api/v1/metrics/command-execution";

/// A served stack whose containers trust a key they read for `cache_ms`.
async fn served(cache_ms: &str) -> (TestApp, SocketAddr) {
    let given = TestApp::spawn_with(&[("API_KEY_CACHE_MS", cache_ms)]).await;
    let addr = given.serve_http().await;
    (given, addr)
}

async fn call(addr: SocketAddr, method: &str, path: &str, bearer: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = http(addr, method, path, Some(bearer), "application/json", &body.to_string()).await;
    (status, body)
}

/// A new key made by `admin`: its text and id.
async fn create_key(addr: SocketAddr, admin: &str, body: Value) -> (String, String) {
    let (status, answer) = call(addr, "POST", KEYS, admin, &body).await;
    assert_eq!(status, 201, "{answer}");
    let data = &answer["data"];
    (
        data["key"].as_str().unwrap().to_owned(),
        data["id"].as_str().unwrap().to_owned(),
    )
}

async fn post_command(addr: SocketAddr, bearer: &str) -> (u16, Value) {
    call(addr, "POST", COMMAND, bearer, &spec_command_example()).await
}

async fn revoke(addr: SocketAddr, admin: &str, id: &str) -> (u16, Value) {
    call(addr, "DELETE", &format!("{KEYS}/{id}"), admin, &Value::Null).await
}

/// SHA-256 in lowercase hex, computed here rather than by the service.
fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn stored_user(given: &TestApp, org: &str, id: &Value) -> String {
    let id: uuid::Uuid = id.as_str().unwrap().parse().unwrap();
    let sql = format!("SELECT user_id FROM \"org_{org}\".command_executions WHERE id = $1");
    given.db().await.query_one(&sql, &[&id]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_key_writes_metrics_as_its_user_exactly_like_a_jwt() {
    // GIVEN a key an admin of acme made for alice
    let (given, addr) = served("30000").await;
    let (key, _) = create_key(addr, &admin_token("acme", "root"), json!({"user_id": "alice"})).await;
    assert!(key.starts_with("mcsk_") && key.len() == 5 + 32 + 1 + 64, "{key}");

    // WHEN alice sends a metric with the key, and another with her JWT
    let (status, by_key) = post_command(addr, &key).await;
    assert_eq!(status, 201, "{by_key}");
    let (status, by_jwt) = post_command(addr, &token("acme", "alice")).await;
    assert_eq!(status, 201, "{by_jwt}");

    // THEN both are stored in acme's schema as alice's, and the answers have the same shape
    assert_eq!(stored_user(&given, "acme", &by_key["data"]["id"]).await, "alice");
    assert_eq!(stored_user(&given, "acme", &by_jwt["data"]["id"]).await, "alice");
    assert_eq!(by_key["rate_limit"]["limit"], by_jwt["rate_limit"]["limit"]);
    let (status, _) = call(addr, "GET", "/api/v1/metrics/summary", &key, &Value::Null).await;
    assert_eq!(status, 200, "every route takes the key");
}

#[tokio::test]
async fn only_the_hash_is_stored_and_a_list_never_shows_a_secret_or_a_hash() {
    // GIVEN two keys of acme
    let (given, addr) = served("30000").await;
    let admin = admin_token("acme", "root");
    let (first, first_id) = create_key(addr, &admin, json!({"user_id": "alice", "name": "laptop"})).await;
    let (second, _) = create_key(addr, &admin, json!({"user_id": "bob", "role": "admin"})).await;

    // WHEN an admin lists them
    let (status, listed) = call(addr, "GET", KEYS, &admin, &Value::Null).await;

    // THEN both are there, newest first, without secret or hash
    assert_eq!(status, 200, "{listed}");
    let keys = listed["data"]["keys"].as_array().unwrap();
    let users: Vec<&str> = keys.iter().map(|k| k["user_id"].as_str().unwrap()).collect();
    assert_eq!(users, ["bob", "alice"]);
    assert_eq!(keys[1]["name"], "laptop");
    assert_eq!(keys[1]["status"], "active");
    let text = listed.to_string();
    for key in [&first, &second] {
        let secret = &key[38..];
        let hash = sha256_hex(secret);
        assert!(!text.contains(secret) && !text.contains(&hash), "{text}");
    }

    // AND the table holds the hash of the secret, never the secret itself
    let item = dynamo()
        .await
        .get_item()
        .table_name(&given.keys_table)
        .key("key_id", AttributeValue::S(first_id))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expected = sha256_hex(&first[38..]);
    assert_eq!(item["secret_hash"], AttributeValue::S(expected));
    assert!(!format!("{item:?}").contains(&first[38..]));
}

#[tokio::test]
async fn a_revoked_key_is_refused_everywhere_once_the_cache_ttl_has_passed() {
    // GIVEN containers that trust a key they read for half a second, and a key in use on two
    // routes (two containers' caches)
    let (_given, addr) = served("500").await;
    let admin = admin_token("acme", "root");
    let (key, id) = create_key(addr, &admin, json!({"user_id": "alice"})).await;
    assert_eq!(post_command(addr, &key).await.0, 201);
    let summary = "/api/v1/metrics/summary";
    assert_eq!(call(addr, "GET", summary, &key, &Value::Null).await.0, 200);

    // WHEN an admin revokes it
    let (status, revoked) = revoke(addr, &admin, &id).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["data"]["status"], "revoked");
    assert!(revoked["data"]["revoked_at"].is_string());

    // THEN once the TTL has passed, every route refuses it, saying so to its holder
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, refused) = post_command(addr, &key).await;
    assert_eq!((status, refused["message"].as_str()), (401, Some("API key revoked")));
    assert_eq!(call(addr, "GET", summary, &key, &Value::Null).await.0, 401);
    // AND revoking it again changes nothing
    let (status, again) = revoke(addr, &admin, &id).await;
    assert_eq!(
        (status, &again["data"]["revoked_at"]),
        (200, &revoked["data"]["revoked_at"])
    );
}

#[tokio::test]
async fn a_revoked_admin_key_is_refused_at_once_where_keys_settings_and_users_are_managed() {
    // GIVEN containers that trust a key for 30 s, and an admin key used on every governance
    // route (each container has it cached)
    let (_given, addr) = served("30000").await;
    let root = admin_token("acme", "root");
    let (leaked, id) = create_key(addr, &root, json!({"user_id": "ops", "role": "admin"})).await;
    let settings = "/api/v1/organization/settings";
    let erase = "/api/v1/organization/users/nobody";
    assert_eq!(call(addr, "GET", KEYS, &leaked, &Value::Null).await.0, 200);
    assert_eq!(call(addr, "GET", settings, &leaked, &Value::Null).await.0, 200);
    assert_eq!(call(addr, "DELETE", erase, &leaked, &Value::Null).await.0, 200);
    assert_eq!(post_command(addr, &leaked).await.0, 201);

    // WHEN the key is revoked
    assert_eq!(revoke(addr, &root, &id).await.0, 200);

    // THEN it can no longer make itself a replacement, change settings or erase, even though a
    // metric route may still trust it until its cache expires
    let replacement = json!({"user_id": "ops2", "role": "admin"});
    for (method, path, body) in [
        ("POST", KEYS, replacement),
        ("GET", KEYS, Value::Null),
        ("PATCH", settings, json!({"data_retention": null})),
        ("GET", settings, Value::Null),
        ("DELETE", erase, Value::Null),
    ] {
        let (status, answer) = call(addr, method, path, &leaked, &body).await;
        assert_eq!(
            (status, answer["message"].as_str()),
            (401, Some("API key revoked")),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn an_expired_key_is_refused_even_while_cached() {
    // GIVEN a key that expires in a second, used once (so it is cached for 30 s)
    let (_given, addr) = served("30000").await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let body = json!({"user_id": "alice", "expires_at": expires_at.to_rfc3339()});
    let (key, _) = create_key(addr, &admin_token("acme", "root"), body).await;
    assert_eq!(post_command(addr, &key).await.0, 201);

    // WHEN it has expired THEN it is refused at once
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(1600)).await;
    let (status, refused) = post_command(addr, &key).await;
    assert_eq!((status, refused["message"].as_str()), (401, Some("API key expired")));

    // AND an expiry in the past is refused when the key is made
    let past = json!({"user_id": "alice", "expires_at": "2020-01-01T00:00:00Z"});
    let (status, body) = call(addr, "POST", KEYS, &admin_token("acme", "root"), &past).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (400, Some("expires_at")));
}

#[tokio::test]
async fn a_key_of_another_organization_is_never_listed_or_revoked_and_acts_only_in_its_own() {
    // GIVEN a key of acme
    let (given, addr) = served("30000").await;
    let (acme_key, acme_id) = create_key(addr, &admin_token("acme", "root"), json!({"user_id": "alice"})).await;
    let globex = admin_token("globex", "root");
    let (globex_key, _) = create_key(addr, &globex, json!({"user_id": "gina", "role": "admin"})).await;

    // WHEN globex's admins (by token and by key) list keys and try to revoke acme's
    let (_, listed) = call(addr, "GET", KEYS, &globex_key, &Value::Null).await;
    let (other, refused) = revoke(addr, &globex, &acme_id).await;
    let (unknown, missing) = revoke(addr, &globex_key, &"5".repeat(32)).await;

    // THEN acme's key is not listed, and revoking it is the same 404 as an unknown id
    assert!(!listed.to_string().contains(&acme_id), "{listed}");
    assert_eq!(listed["data"]["keys"].as_array().unwrap().len(), 1);
    assert_eq!((other, unknown), (404, 404));
    assert_eq!(refused["message"], missing["message"]);
    // AND acme's key still works, and only in acme
    let (status, stored) = post_command(addr, &acme_key).await;
    assert_eq!(status, 201);
    assert_eq!(stored_user(&given, "acme", &stored["data"]["id"]).await, "alice");
    assert_eq!(given.count("acme", "command_executions").await, 1);
}

#[tokio::test]
async fn a_wrong_secret_and_a_made_up_key_get_the_same_401_and_a_wrong_shape_is_named() {
    let (_given, addr) = served("30000").await;
    let (key, id) = create_key(addr, &admin_token("acme", "root"), json!({"user_id": "alice"})).await;
    let wrong_secret = format!("mcsk_{id}_{}", "0".repeat(64));
    assert_ne!(wrong_secret, key);
    let made_up = format!("mcsk_{}_{}", "a".repeat(32), "b".repeat(64));

    let (status, wrong) = post_command(addr, &wrong_secret).await;
    assert_eq!((status, wrong["message"].as_str()), (401, Some("Invalid API key")));
    let (status, unknown) = post_command(addr, &made_up).await;
    assert_eq!((status, &unknown["message"]), (401, &wrong["message"]), "one answer");
    for malformed in [
        format!("{key}0"),
        format!("mcsk_{}", key[5..].to_uppercase()),
        "mcsk_".to_owned(),
    ] {
        let (status, body) = post_command(addr, &malformed).await;
        assert_eq!(status, 401, "{malformed}");
        assert!(
            body["message"].as_str().unwrap().starts_with("Malformed API key"),
            "{body}"
        );
    }
    // The right key still works after all that.
    assert_eq!(post_command(addr, &key).await.0, 201);
}

#[tokio::test]
async fn members_are_forbidden_on_every_key_route_and_an_admin_key_manages_keys() {
    let (_given, addr) = served("30000").await;
    let (member_key, id) = create_key(addr, &admin_token("acme", "root"), json!({"user_id": "alice"})).await;
    let (admin_key, _) = create_key(
        addr,
        &admin_token("acme", "root"),
        json!({"user_id": "ops", "role": "admin"}),
    )
    .await;
    for member in [token("acme", "alice"), member_key.clone()] {
        let answers = [
            call(addr, "POST", KEYS, &member, &json!({"user_id": "alice"})).await,
            call(addr, "GET", KEYS, &member, &Value::Null).await,
            revoke(addr, &member, &id).await,
        ];
        for (status, body) in answers {
            assert_eq!(status, 403, "{body}");
            assert!(body["message"].as_str().unwrap().starts_with("Forbidden: "), "{body}");
        }
    }
    // The admin key creates, lists and revokes, as its user.
    let (_, made) = create_key(addr, &admin_key, json!({"user_id": "bob"})).await;
    let (status, listed) = call(addr, "GET", KEYS, &admin_key, &Value::Null).await;
    assert_eq!(status, 200);
    let by_ops = listed["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == made.as_str());
    assert_eq!(by_ops.unwrap()["created_by"], "ops");
    assert_eq!(revoke(addr, &admin_key, &made).await.0, 200);
}

#[tokio::test]
async fn keys_and_secrets_never_reach_the_logs() {
    // GIVEN a key created, used, tried with a wrong secret, listed and revoked
    let captured = integration_tests::logs();
    let (_given, addr) = served("0").await;
    let admin = admin_token("keylogs", "root");
    let (key, id) = create_key(addr, &admin, json!({"user_id": "alice"})).await;
    assert_eq!(post_command(addr, &key).await.0, 201);
    post_command(addr, &format!("mcsk_{id}_{}", "1".repeat(64))).await;
    call(addr, "GET", KEYS, &admin, &Value::Null).await;
    assert_eq!(revoke(addr, &admin, &id).await.0, 200);
    assert_eq!(post_command(addr, &key).await.0, 401);

    // THEN the logs name the key by its id, and never hold the key, its secret or its hash
    let logs = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
    assert!(
        logs.contains("API key created") && logs.contains("API key revoked"),
        "logged"
    );
    assert!(logs.contains(&id), "the id is how operators find a key");
    let secret = &key[38..];
    assert!(!logs.contains(secret), "a secret reached the logs");
    assert!(!logs.contains(&sha256_hex(secret)), "a hash reached the logs");
}

#[tokio::test]
async fn an_unreachable_key_table_is_a_503_not_a_refusal() {
    let dead = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{}", free_port()))
        .load()
        .await;
    let database_url = integration_tests::fresh_database().await;
    let given = TestApp::spawn_with_aws(&database_url, &[("RATE_LIMIT_TIMEOUT_MS", "300")], &dead).await;
    let addr = given.serve_http().await;
    let key = format!("mcsk_{}_{}", "a".repeat(32), "b".repeat(64));
    let (status, body) = post_command(addr, &key).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (503, Some("API keys temporarily unavailable"))
    );
    assert!(body["retry_after"].is_u64());
}

#[tokio::test]
async fn a_websocket_connects_with_a_key_and_lives_no_longer_than_it() {
    // GIVEN a key of acme that expires in an hour
    let (app, addr) = TestApp::spawn_live(&[]).await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp();
    let at = chrono::DateTime::from_timestamp(expires_at, 0).unwrap().to_rfc3339();
    let (key, _) = create_key(
        addr,
        &admin_token("acme", "root"),
        json!({"user_id": "viewer", "expires_at": at}),
    )
    .await;

    // WHEN a dashboard opens the live socket with it THEN the handshake succeeds, and the
    // connection is kept until the key's expiry (not two hours)
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/live?token={key}");
    let opened = tokio_tungstenite::client_async(url, stream).await;
    assert!(opened.is_ok(), "{:?}", opened.err());
    let table = app.connections_table.clone().unwrap();
    let items = dynamo()
        .await
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["expires_at"], AttributeValue::N(expires_at.to_string()));
    assert_eq!(items[0]["user_id"], AttributeValue::S("viewer".into()));

    // AND a made-up key is refused
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let made_up = format!("mcsk_{}_{}", "c".repeat(32), "d".repeat(64));
    let refused = tokio_tungstenite::client_async(format!("ws://{addr}/live?token={made_up}"), stream).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401 handshake, got {:?}", other.map(|_| ())),
    }
}
