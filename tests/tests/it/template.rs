//! template.yaml, the function crates and the local front agree: every route points at a
//! function crate that exists, every function crate is deployed with a route or an event source
//! (or is explicitly operator-invoked), and the local front serves exactly the template's routes
//! and schedules.

use std::collections::BTreeSet;
use std::path::Path;

use integration_tests::TestApp;
use local_front::TEMPLATE;
use local_front::routes::{function_binary, functions, template_routes, template_schedules};
use serde_yaml::Value;

/// Functions without an event source, run by operators (`sam remote invoke`).
const OPERATOR_INVOKED: &[&str] = &["migrate"];

fn template() -> Value {
    serde_yaml::from_str(TEMPLATE).unwrap()
}

fn crate_names() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").exists())
        .map(|path| {
            let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap();
            let name = manifest
                .lines()
                .find_map(|line| line.strip_prefix("name = "))
                .unwrap_or_else(|| panic!("{} has no package name", path.display()));
            name.trim_matches('"').to_owned()
        })
        .collect()
}

fn event_types(resource: &Value) -> Vec<String> {
    resource
        .get("Properties")
        .and_then(|p| p.get("Events"))
        .and_then(Value::as_mapping)
        .map(|events| {
            events
                .values()
                .filter_map(|e| e.get("Type").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_template_function_is_a_crate_and_every_crate_is_deployed() {
    let doc = template();
    let mut deployed = BTreeSet::new();
    for (name, resource) in functions(&doc).unwrap() {
        let binary = function_binary(resource).unwrap_or_else(|| panic!("{name}: no BuildProperties.Binary"));
        assert_eq!(
            resource
                .get("Metadata")
                .and_then(|m| m.get("BuildMethod"))
                .and_then(Value::as_str),
            Some("makefile"),
            "{name}: `sam build` copies what the Makefile's one cargo run built"
        );
        let events = event_types(resource);
        if websocket_targets(&doc).contains(&name) {
            assert!(events.is_empty(), "{name} is invoked by the WebSocket API only");
        } else if OPERATOR_INVOKED.contains(&binary.as_str()) {
            assert!(events.is_empty(), "{name} is operator-invoked and must not be routed");
        } else {
            assert!(!events.is_empty(), "{name} ({binary}) has no route or event source");
            for kind in &events {
                assert!(
                    ["HttpApi", "Schedule", "SQS"].contains(&kind.as_str()),
                    "{name}: unexpected event {kind}"
                );
            }
        }
        assert!(deployed.insert(binary.clone()), "{binary} deployed twice");
    }
    assert_eq!(
        deployed,
        crate_names(),
        "template functions and functions/ crates differ"
    );
}

/// What `make build-<logical_id>` would run, as `sam build` calls it: from another folder, with
/// the Makefile named and `ARTIFACTS_DIR` set (`--dry-run`: nothing is built).
fn sam_build_commands(logical_id: &str) -> Vec<String> {
    let makefile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Makefile");
    let output = std::process::Command::new("make")
        .current_dir(std::env::temp_dir())
        .arg("--dry-run")
        .arg("--makefile")
        .arg(&makefile)
        .arg(format!("build-{logical_id}"))
        .env("ARTIFACTS_DIR", "/artifacts")
        .output()
        .expect("make");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "make build-{logical_id}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

#[test]
fn sam_build_builds_every_function_in_one_cargo_run_and_copies_each_its_own_binary() {
    let doc = template();
    let crates = crate_names();
    for (name, resource) in functions(&doc).unwrap() {
        let binary = function_binary(resource).unwrap();
        let commands = sam_build_commands(&name);
        let builds = commands.iter().filter(|c| c.contains("cargo lambda build")).count();
        assert_eq!(builds, 1, "{name}: {commands:?}");
        let words: Vec<&str> = commands.iter().flat_map(|c| c.split_whitespace()).collect();
        let packages: BTreeSet<String> = words
            .windows(2)
            .filter(|pair| pair[0] == "--package")
            .map(|pair| pair[1].to_owned())
            .collect();
        assert_eq!(packages, crates, "{name}: the one cargo run builds every function");
        let copies: Vec<&String> = commands.iter().filter(|c| c.starts_with("cp ")).collect();
        assert_eq!(copies.len(), 1, "{name}: {commands:?}");
        assert!(
            copies[0].ends_with(&format!("/lambda/{binary}/bootstrap\" \"/artifacts/bootstrap\"")),
            "{name} must get {binary}'s bootstrap: {}",
            copies[0]
        );
    }
}

/// The resources of one type.
fn resources<'a>(doc: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap(), r))
        .collect()
}

/// A property as YAML text (intrinsic functions such as `!Sub` included).
fn text(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap()
}

/// The functions a WebSocket API integration invokes, by logical id.
fn websocket_targets(doc: &Value) -> BTreeSet<String> {
    let functions: Vec<String> = functions(doc)
        .unwrap()
        .into_iter()
        .map(|(name, _)| name.to_owned())
        .collect();
    resources(doc, "AWS::ApiGatewayV2::Integration")
        .into_iter()
        .flat_map(|(_, integration)| {
            let uri = text(&integration["Properties"]["IntegrationUri"]);
            functions
                .iter()
                .filter(|f| uri.contains(&format!("${{{f}.Arn}}")))
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_websocket_api_sends_connect_and_disconnect_to_the_live_connection_function() {
    let doc = template();
    let apis = resources(&doc, "AWS::ApiGatewayV2::Api");
    assert_eq!(apis.len(), 1);
    let (api, properties) = (apis[0].0, &apis[0].1["Properties"]);
    assert_eq!(properties["ProtocolType"].as_str(), Some("WEBSOCKET"));

    let routes = resources(&doc, "AWS::ApiGatewayV2::Route");
    let keys: BTreeSet<&str> = routes
        .iter()
        .map(|(_, r)| r["Properties"]["RouteKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["$connect", "$disconnect"]),
        "no $default: clients only listen"
    );
    let integrations = resources(&doc, "AWS::ApiGatewayV2::Integration");
    for (name, route) in &routes {
        let target = text(&route["Properties"]["Target"]);
        let (integration, _) = integrations
            .iter()
            .find(|(i, _)| target.contains(&format!("integrations/${{{i}}}")))
            .unwrap_or_else(|| panic!("{name} targets no integration: {target}"));
        assert!(text(&route["Properties"]["ApiId"]).contains(api), "{name}");
        assert!(!integration.is_empty());
    }
    let targets = websocket_targets(&doc);
    assert_eq!(targets, BTreeSet::from(["LiveConnectionFunction".to_owned()]));
    let binary = function_binary(&doc["Resources"]["LiveConnectionFunction"]);
    assert_eq!(binary.as_deref(), Some("live-connection"));

    // API Gateway may invoke it, and the table it keeps connections in expires them.
    let permissions = resources(&doc, "AWS::Lambda::Permission");
    assert!(permissions.iter().any(|(_, p)| {
        text(&p["Properties"]["FunctionName"]).contains("LiveConnectionFunction")
            && p["Properties"]["Principal"].as_str() == Some("apigateway.amazonaws.com")
    }));
    let table = &doc["Resources"]["LiveConnectionsTable"]["Properties"];
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("expires_at")
    );
    assert_eq!(
        table["GlobalSecondaryIndexes"][0]["IndexName"].as_str(),
        Some(shared::adapters::dynamodb::connections::ORG_INDEX)
    );
}

#[test]
fn every_function_that_stores_metrics_may_push_live_updates_and_no_other() {
    let doc = template();
    for (name, resource) in functions(&doc).unwrap() {
        let binary = function_binary(resource).unwrap();
        let policies = text(&resource["Properties"]["Policies"]);
        let may_push = policies.contains("execute-api:ManageConnections");
        // What each function's own `State` says (`FromEnv::PUBLISHES_LIVE`), not a list kept here.
        let publishes = local_front::live_writers().contains(&binary.as_str());
        assert_eq!(may_push, publishes, "{name}: {policies}");
        // Only the publishers are told where the management API is (so no other function builds
        // a broadcaster or registers the Lambda extension).
        let environment = &resource["Properties"]["Environment"]["Variables"];
        assert_eq!(
            environment.get("LIVE_UPDATES_ENDPOINT").is_some(),
            publishes,
            "{name}: LIVE_UPDATES_ENDPOINT"
        );
        assert_eq!(
            environment.get("CONNECTIONS_TABLE_NAME").is_some(),
            publishes || binary == "live-connection",
            "{name}: CONNECTIONS_TABLE_NAME"
        );
        if may_push {
            assert!(policies.contains("dynamodb:Query"), "{name} finds connections");
            assert!(
                policies.contains("/POST/@connections/*") && policies.contains("/DELETE/@connections/*"),
                "{name} pushes, and closes connections past their token's expiry"
            );
        }
    }
    let declared: BTreeSet<String> = local_front::functions()
        .iter()
        .map(|function| function.name.to_string())
        .collect();
    assert_eq!(declared, crate_names(), "every function crate's State is read");
    let globals = &doc["Globals"]["Function"]["Environment"]["Variables"];
    assert!(globals.get("LIVE_UPDATES_ENDPOINT").is_none() && globals.get("CONNECTIONS_TABLE_NAME").is_none());
    // $connect is rate limited and capped: the limiter's table and the organization index.
    let connect = text(&doc["Resources"]["LiveConnectionFunction"]["Properties"]["Policies"]);
    assert!(
        connect.contains("RateLimitTable") && connect.contains("dynamodb:UpdateItem"),
        "{connect}"
    );
    assert!(
        connect.contains("index/org-viewers") && connect.contains("dynamodb:Query"),
        "{connect}"
    );
    let connect_env = &doc["Resources"]["LiveConnectionFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        text(&connect_env["LIVE_MAX_CONNECTIONS_PER_ORG"]).trim(),
        "!Ref LiveMaxConnectionsPerOrg"
    );
    assert_eq!(
        text(&connect_env["LIVE_MAX_CONNECTIONS_PER_USER"]).trim(),
        "!Ref LiveMaxConnectionsPerUser"
    );
}

#[test]
fn every_route_is_unique() {
    let routes = template_routes(TEMPLATE).unwrap();
    let keys: BTreeSet<String> = routes.iter().map(|r| r.key()).collect();
    assert_eq!(keys.len(), routes.len(), "a route is declared twice");
    // The API's own routes, OTLP's (exporters append `/v1/metrics` and `/v1/logs` to the
    // configured endpoint `<ApiUrl>/otlp`), and the dashboard's page and files.
    let outside_the_api = ["/otlp/v1/metrics", "/otlp/v1/logs", "/dashboard", "/dashboard/{asset}"];
    assert!(
        routes
            .iter()
            .all(|r| r.path.starts_with("/api/v1/") || outside_the_api.contains(&r.path.as_str()))
    );
}

#[tokio::test]
async fn the_local_front_serves_exactly_the_templates_routes_and_schedules() {
    let given = TestApp::spawn().await;
    let gateway = local_front::gateway::Gateway::new(TEMPLATE, local_front::handlers(&given.stack)).unwrap();
    let served: BTreeSet<String> = gateway.route_keys().into_iter().collect();
    let declared: BTreeSet<String> = template_routes(TEMPLATE).unwrap().iter().map(|r| r.key()).collect();
    assert_eq!(served, declared);

    let scheduler = local_front::scheduler::Scheduler::new(TEMPLATE, local_front::jobs(&given.stack)).unwrap();
    assert_eq!(scheduler.describe().len(), template_schedules(TEMPLATE).unwrap().len());

    // The one queue consumer of the template is the worker the local poller feeds.
    let consumers: Vec<String> = functions(&template())
        .unwrap()
        .into_iter()
        .filter(|(_, r)| event_types(r).contains(&"SQS".to_owned()))
        .filter_map(|(_, r)| function_binary(r))
        .collect();
    assert_eq!(consumers, ["batch-worker"]);
}

/// The functions that open PostgreSQL (an `App`, `Health`, the worker, the reaper, `migrate`);
/// `batch` only queues and `live-connection` only keeps connections in DynamoDB.
const DATABASE_USERS: &[&str] = &[
    "command-execution",
    "agent-interaction",
    "productivity",
    "session-start",
    "session-update",
    "session-end",
    "metrics-summary",
    "claude-code-hook",
    "otlp-metrics",
    "otlp-logs",
    "health",
    "batch-worker",
    "session-reaper",
    "alerts",
    "migrate",
    "retention",
    "user-erase",
];

/// The functions that check a JWT or an API key: every HTTP route but `health`, and the
/// WebSocket `$connect`.
const AUTHENTICATING: &[&str] = &[
    "command-execution",
    "agent-interaction",
    "productivity",
    "session-start",
    "session-update",
    "session-end",
    "metrics-summary",
    "claude-code-hook",
    "otlp-metrics",
    "otlp-logs",
    "batch",
    "live-connection",
    "api-key-create",
    "api-key-list",
    "api-key-revoke",
    "settings-get",
    "settings-put",
    "settings-patch",
    "user-erase",
];

/// Each environment variable of the template (Globals, then every function), as text.
fn environment_variables(doc: &Value) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    let mut add = |owner: &str, variables: &Value| {
        for (name, value) in variables.as_mapping().into_iter().flatten() {
            all.push((owner.to_owned(), name.as_str().unwrap().to_owned(), text(value)));
        }
    };
    add("Globals", &doc["Globals"]["Function"]["Environment"]["Variables"]);
    for (name, resource) in functions(doc).unwrap() {
        add(&name, &resource["Properties"]["Environment"]["Variables"]);
    }
    all
}

#[test]
fn no_secret_is_written_in_any_environment_variable() {
    let doc = template();
    let variables = environment_variables(&doc);
    assert!(variables.len() > 20, "the environment was read");
    for (owner, name, value) in &variables {
        assert!(
            !value.contains("resolve:secretsmanager"),
            "{owner}: {name} resolves a secret into the environment: {value}"
        );
        assert!(
            ![
                "DATABASE_PASSWORD",
                "DATABASE_USER",
                "DATABASE_URL",
                "JWT_SECRET",
                "JWT_PUBLIC_KEY",
                "JWT_PREVIOUS_SECRET",
                "JWT_PREVIOUS_PUBLIC_KEY"
            ]
            .contains(&name.as_str()),
            "{owner}: {name} would carry a secret"
        );
    }
    // Deployed stages are known by STAGE (which refuses the public development secret), and
    // `local` is not a stage the template can deploy.
    let stage = &doc["Globals"]["Function"]["Environment"]["Variables"]["STAGE"];
    assert_eq!(text(stage).trim(), "!Ref Stage");
    let allowed: Vec<&str> = doc["Parameters"]["Stage"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!allowed.contains(&shared::config::LOCAL_STAGE), "{allowed:?}");
}

#[test]
fn each_function_may_read_exactly_the_secrets_it_uses() {
    use shared::adapters::secrets::{DATABASE_SECRET_ARN, JWT_KEY_SECRET_ARN, JWT_PREVIOUS_KEY_SECRET_ARN};
    let doc = template();
    let arn_parameters = [
        (DATABASE_SECRET_ARN, "DatabaseSecretArn"),
        (JWT_KEY_SECRET_ARN, "JwtKeySecretArn"),
        (JWT_PREVIOUS_KEY_SECRET_ARN, "JwtPreviousKeySecretArn"),
    ];
    let mut checked = 0;
    for (name, resource) in functions(&doc).unwrap() {
        let binary = function_binary(resource).unwrap();
        // What the function's environment names...
        let env = &resource["Properties"]["Environment"]["Variables"];
        let named: BTreeSet<&str> = arn_parameters
            .iter()
            .filter(|(variable, _)| !env[*variable].is_null())
            .map(|(variable, _)| *variable)
            .collect();
        // ...is what the code needs...
        let mut needed = BTreeSet::new();
        if DATABASE_USERS.contains(&binary.as_str()) {
            needed.insert(DATABASE_SECRET_ARN);
        }
        if AUTHENTICATING.contains(&binary.as_str()) {
            needed.extend([JWT_KEY_SECRET_ARN, JWT_PREVIOUS_KEY_SECRET_ARN]);
        }
        assert_eq!(named, needed, "{name} ({binary}): secret ARNs in its environment");
        for (variable, parameter) in arn_parameters {
            if named.contains(variable) {
                assert_eq!(
                    text(&env[variable]).trim(),
                    format!("!Ref {parameter}"),
                    "{name}: {variable}"
                );
            }
        }
        // ...and exactly what IAM lets it read.
        let statements: Vec<&Value> = resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|policy| policy["Statement"].as_sequence())
            .flatten()
            .collect();
        let mut granted = BTreeSet::new();
        for statement in &statements {
            let action = text(&statement["Action"]);
            if !action.contains("secretsmanager") {
                continue;
            }
            assert_eq!(action.trim(), "secretsmanager:GetSecretValue", "{name}: only reads");
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            let resources = statement["Resource"].as_sequence().expect("a list of ARNs");
            for arn in resources {
                let arn = text(arn);
                let (variable, _) = arn_parameters
                    .iter()
                    .find(|(_, parameter)| arn.contains(&format!("!Ref {parameter}")))
                    .unwrap_or_else(|| panic!("{name}: GetSecretValue on {arn}"));
                assert!(!arn.contains('*'), "{name}: {arn}");
                granted.insert(*variable);
            }
        }
        assert_eq!(
            granted, needed,
            "{name} ({binary}): secretsmanager:GetSecretValue grants"
        );
        checked += 1;
    }
    assert_eq!(checked, crate_names().len());
    for crate_name in DATABASE_USERS.iter().chain(AUTHENTICATING) {
        assert!(
            crate_names().contains(*crate_name),
            "{crate_name} is not a function crate"
        );
    }
}

/// The policy statements of a function.
fn statements(resource: &Value) -> Vec<&Value> {
    resource["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|policy| policy["Statement"].as_sequence())
        .flatten()
        .collect()
}

/// `action on table|index` for each action a function is allowed on the API keys table.
fn api_key_grants(resource: &Value) -> BTreeSet<String> {
    let mut grants = BTreeSet::new();
    for statement in statements(resource) {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"));
        let listed = |value: &Value| -> Vec<String> {
            match value.as_sequence() {
                Some(items) => items.iter().map(text).collect(),
                None => vec![text(value)],
            }
        };
        for target in listed(&statement["Resource"]) {
            let on = match target {
                t if t.contains("ApiKeysTable.Arn}/index/by-organization") => "index",
                t if t.contains("ApiKeysTable") => {
                    assert!(!t.contains('*'), "{t}");
                    "table"
                }
                _ => continue,
            };
            for action in listed(&statement["Action"]) {
                grants.insert(format!("{} on {on}", action.trim()));
            }
        }
    }
    grants
}

#[test]
fn each_function_may_use_the_api_keys_table_as_its_state_says_and_no_more() {
    use shared::app::KeyAccess;
    let doc = template();
    let by_name: std::collections::BTreeMap<&str, KeyAccess> = local_front::functions()
        .iter()
        .map(|function| (function.name, function.api_keys))
        .collect();
    let mut managers = BTreeSet::new();
    for (name, resource) in functions(&doc).unwrap() {
        let binary = function_binary(resource).unwrap();
        // What the function's own `State` says (`FromEnv::API_KEYS`), not a list kept here.
        let access = by_name[binary.as_str()];
        assert_eq!(
            access != KeyAccess::None,
            AUTHENTICATING.contains(&binary.as_str()),
            "{name}: every function that authenticates accepts API keys"
        );
        let mut expected: BTreeSet<String> = BTreeSet::new();
        if access != KeyAccess::None {
            expected.insert("dynamodb:GetItem on table".into());
        }
        if access == KeyAccess::Manage {
            managers.insert(binary.clone());
            // Least privilege: each key route may do exactly its own change.
            expected.insert(
                match binary.as_str() {
                    "api-key-create" => "dynamodb:PutItem on table",
                    "api-key-list" => "dynamodb:Query on index",
                    "api-key-revoke" => "dynamodb:UpdateItem on table",
                    other => panic!("{other} manages keys but is not a key route"),
                }
                .into(),
            );
        }
        assert_eq!(api_key_grants(resource), expected, "{name} ({binary})");
    }
    assert_eq!(managers.len(), 3, "{managers:?}");
    let globals = &doc["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(text(&globals["API_KEYS_TABLE_NAME"]).trim(), "!Ref ApiKeysTable");

    // The table: keys by id; the organization index by creation time, without the hashes.
    let table = &doc["Resources"]["ApiKeysTable"]["Properties"];
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(table["KeySchema"][0]["AttributeName"].as_str(), Some("key_id"));
    let index = &table["GlobalSecondaryIndexes"][0];
    assert_eq!(
        index["IndexName"].as_str(),
        Some(shared::adapters::dynamodb::api_keys::ORG_INDEX)
    );
    let keys: Vec<(&str, &str)> = index["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| (k["AttributeName"].as_str().unwrap(), k["KeyType"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, [("org_id", "HASH"), ("created_at", "RANGE")]);
    assert!(!text(&index["Projection"]).contains("secret_hash"));
    assert_eq!(index["Projection"]["ProjectionType"].as_str(), Some("INCLUDE"));
}

#[test]
fn the_anonymous_health_route_has_its_own_small_budget() {
    let doc = template();
    let settings = &doc["Resources"]["HttpApi"]["Properties"]["RouteSettings"]["GET /api/v1/health"];
    assert!(
        settings["ThrottlingRateLimit"].as_u64().is_some_and(|rate| rate <= 20),
        "{settings:?}"
    );
    let health = &doc["Resources"]["HealthFunction"]["Properties"];
    assert!(health["ReservedConcurrentExecutions"].as_u64().is_some_and(|n| n <= 5));
}

#[test]
fn a_refused_hook_event_raises_an_alarm() {
    let doc = template();
    let alarms = resources(&doc, "AWS::CloudWatch::Alarm");
    let watching_refusals: Vec<&Value> = alarms
        .iter()
        .map(|(_, alarm)| &alarm["Properties"])
        .filter(|alarm| alarm["MetricName"] == "RateLimited")
        .collect();
    let hook_route = text(&Value::from(claude_code_hook::ROUTE));
    let hook = watching_refusals
        .iter()
        .find(|alarm| text(&alarm["Dimensions"]).contains(hook_route.trim()))
        .expect("an alarm on the hook route's refusals");
    assert_eq!(hook["Namespace"], shared::telemetry::METRICS_NAMESPACE);
    assert_eq!(
        (hook["Statistic"].as_str(), hook["Threshold"].as_u64()),
        (Some("Sum"), Some(0))
    );
    assert_eq!(hook["ComparisonOperator"], "GreaterThanThreshold");
    // The metric is the one each refused request's log line carries.
    let record = shared::telemetry::request_record(shared::telemetry::RequestOutcome {
        request_id: None,
        route: claude_code_hook::ROUTE,
        org: Some("acme"),
        user: Some("alice"),
        status: 429,
        latency_ms: 1.0,
        database_ms: None,
        error: Some("rate limited (user)".into()),
    });
    let line = serde_json::to_value(&record).unwrap();
    assert_eq!(
        (line["RateLimited"].as_u64(), line["Route"].as_str()),
        (Some(1), Some(claude_code_hook::ROUTE))
    );
}

/// The stage-wide alarm (no `Route` dimension) whose metric, or one of whose metric-math inputs,
/// is `metric` of our namespace.
fn alarm_on<'a>(doc: &'a Value, metric: &str) -> &'a Value {
    resources(doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, alarm)| &alarm["Properties"])
        .find(|alarm| {
            let ours = |m: &Value| m["MetricName"] == metric && m["Namespace"] == shared::telemetry::METRICS_NAMESPACE;
            (ours(alarm) && !text(&alarm["Dimensions"]).contains("Route"))
                || alarm["Metrics"]
                    .as_sequence()
                    .is_some_and(|metrics| metrics.iter().any(|m| ours(&m["MetricStat"]["Metric"])))
        })
        .unwrap_or_else(|| panic!("no alarm on {metric}"))
}

/// A parameter's default.
fn default_of(doc: &Value, parameter: &str) -> f64 {
    doc["Parameters"][parameter]["Default"]
        .as_f64()
        .or_else(|| doc["Parameters"][parameter]["Default"].as_u64().map(|v| v as f64))
        .unwrap_or_else(|| panic!("parameter {parameter} has no number default"))
}

#[test]
fn the_specifications_monitoring_thresholds_are_alarms_on_metrics_the_service_emits() {
    let doc = template();
    // (metric, statistic, threshold parameter, the specification's value)
    for (metric, statistic, parameter, value) in [
        ("Latency", "Average", "AverageLatencyThresholdMs", 10.0),
        ("DatabaseLatency", "Average", "DatabaseLatencyThresholdMs", 100.0),
        ("PeakMemory", "Maximum", "MemoryThresholdMb", 64.0),
    ] {
        let alarm = alarm_on(&doc, metric);
        assert_eq!(alarm["Statistic"].as_str(), Some(statistic), "{metric}");
        assert_eq!(alarm["Period"].as_u64(), Some(300), "{metric}: five minutes");
        assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
        assert_eq!(text(&alarm["Threshold"]).trim(), format!("!Ref {parameter}"));
        assert_eq!(default_of(&doc, parameter), value, "{parameter}");
    }
    // More than 10% of requests rate limited: RateLimited / Requests, both of our namespace.
    let limited = alarm_on(&doc, "RateLimited");
    assert!(text(&limited["Metrics"]).contains("100 * limited / requests"));
    assert_eq!(text(&limited["Threshold"]).trim(), "!Ref RateLimitedPercent");
    assert_eq!(default_of(&doc, "RateLimitedPercent"), 10.0);
    // More than 1% errors: the 5xx share of API Gateway's requests.
    let errors = &doc["Resources"]["ApiServerErrorRateAlarm"]["Properties"];
    assert_eq!(text(&errors["Threshold"]).trim(), "!Ref ServerErrorRatePercent");
    assert_eq!(default_of(&doc, "ServerErrorRatePercent"), 1.0);

    // Every metric these alarms read is one a request's log line carries (with database work).
    let record = shared::telemetry::request_record(shared::telemetry::RequestOutcome {
        request_id: None,
        route: "POST /api/v1/metrics/command-execution",
        org: Some("acme"),
        user: Some("alice"),
        status: 201,
        latency_ms: 1.0,
        database_ms: Some(0.5),
        error: None,
    });
    let line = serde_json::to_value(&record).unwrap();
    let emitted: BTreeSet<String> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap().to_owned())
        .collect();
    for metric in ["Latency", "DatabaseLatency", "PeakMemory", "RateLimited", "Requests"] {
        assert!(emitted.contains(metric), "{metric} is not emitted: {emitted:?}");
        assert!(line[metric].is_number(), "{metric} has a value");
    }
}

#[tokio::test]
async fn a_request_on_the_real_database_logs_its_database_time_and_peak_memory() {
    let logs = integration_tests::logs();
    let given = TestApp::spawn().await;
    let org = format!("dbtime{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({"command_name": "build", "execution_time_ms": 5, "status": "success"});
    let response = command_execution::handle(
        &given.app,
        integration_tests::request("command-execution", &org, "alice", &body),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["org"] == org.as_str() && l["Route"].is_string())
        .expect("the request's log line");
    assert!(line["DatabaseLatency"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
    assert!(line["PeakMemory"].as_f64().is_some_and(|mb| mb > 1.0), "{line}");
}

#[test]
fn the_alerts_function_runs_every_minute_and_only_the_local_stack_allows_loopback_webhooks() {
    let doc = template();
    let alerts = &doc["Resources"]["AlertsFunction"];
    assert_eq!(function_binary(alerts).as_deref(), Some("alerts"));
    let schedules = template_schedules(TEMPLATE).unwrap();
    let schedule = schedules.iter().find(|s| s.binary == "alerts").expect("a schedule");
    assert_eq!(schedule.every, std::time::Duration::from_secs(60));
    assert!(text(&doc["Resources"]["AlertsLogs"]["Properties"]["LogGroupName"]).contains("-alerts"));
    assert_eq!(
        alerts["Properties"]["Environment"]["Variables"]["WEBHOOK_ALLOW_LOOPBACK"],
        "false"
    );
    for (name, resource) in functions(&doc).unwrap() {
        let allow = &resource["Properties"]["Environment"]["Variables"]["WEBHOOK_ALLOW_LOOPBACK"];
        assert!(allow.is_null() || allow == "false", "{name} allows loopback webhooks");
    }
    assert!(doc["Globals"]["Function"]["Environment"]["Variables"]["WEBHOOK_ALLOW_LOOPBACK"].is_null());
}
