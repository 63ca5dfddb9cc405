//! Generated hostile input against every parser a request or a queue message reaches: the body
//! gate, each metric's validation, the batch and the envelope, sanitising, token and API-key
//! checks. None may panic; refusals are 4xx that name a field. `FUZZ_CASES` sets the cases per
//! property (default 120 000; a tenth for the hook property: over 1.2 million inputs in all);
//! `make fuzz` raises it.

use http::HeaderMap;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Map, Value, json};
use shared::config::{AuthConfig, JwtKey};
use shared::domain::batch::{Envelope, Metrics, Source};
use shared::domain::hooks::{HookContent, HookEvent};
use shared::domain::ids::{Caller, OrgId, UserId};
use shared::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use shared::domain::sanitize::{REMOVED_TAGS, REMOVED_WITH_CONTENT, sanitize_text};
use shared::domain::sessions::{SessionActivity, SessionEnd, SessionImport, SessionStart};
use shared::domain::validation::FieldError;
use shared::http::api::json_body;
use shared::http::auth::Authenticator;
use shared::ports::store::{HookReceipt, TOOL_USE_EVENTS};

fn config() -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120_000);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// Every validator a request body can reach, by name, with the batch size of the defaults.
type Validator = fn(&Value) -> Result<(), Vec<FieldError>>;

fn validators() -> Vec<(&'static str, Validator)> {
    vec![
        ("command_execution", |v| CommandExecution::from_json(v, "").map(drop)),
        ("agent_interaction", |v| AgentInteraction::from_json(v, "").map(drop)),
        ("productivity_metric", |v| {
            ProductivityMetric::from_json(v, "").map(drop)
        }),
        ("user_session", |v| SessionImport::from_json(v, "").map(drop)),
        ("session_start", |v| SessionStart::from_json(v).map(drop)),
        ("session_activity", |v| SessionActivity::from_json(v).map(drop)),
        ("session_end", |v| SessionEnd::from_json(v).map(drop)),
        ("batch", |v| Metrics::from_request(v, 20).map(drop)),
    ]
}

/// A valid body of each kind, the starting point of targeted mutations.
fn valid(kind: &str) -> Value {
    match kind {
        "command_execution" => json!({"id": "6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f", "command_name": "build",
            "command_args": {"a": 1}, "execution_time_ms": 1250, "status": "error",
            "error_message": "exit 1", "context": {"k": "v"}, "timestamp": "2025-09-08T10:30:00Z"}),
        "agent_interaction" => json!({"agent_name": "coder", "interaction_type": "tool_call",
            "input_tokens": 10, "output_tokens": 20, "processing_time_ms": 30, "success": true,
            "metadata": {"model": "m"}, "timestamp": "2025-09-08T10:30:00Z"}),
        "productivity_metric" => json!({"metric_type": "efficiency_score", "value": 71, "unit": "index",
            "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z", "dimensions": {}}),
        "user_session" => json!({"session_start": "2025-09-08T09:00:00Z", "session_end": "2025-09-08T10:00:00Z",
            "commands_executed": 3, "agents_used": ["coder"], "productivity_score": 80, "context": {},
            "status": "completed"}),
        "session_start" => json!({"session_start": "2025-09-08T09:00:00Z", "context": {"ide": "vim"}}),
        "session_activity" => json!({"commands_executed": 3, "agents_used": ["a", "b"], "context": {"k": 1}}),
        "session_end" => json!({"session_id": "6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f", "productivity_score": 80,
            "commands_executed": 3, "agents_used": ["a"], "context": {}}),
        "batch" => json!({"command_executions": [valid("command_execution")],
            "agent_interactions": [valid("agent_interaction")], "user_sessions": [valid("user_session")],
            "productivity_metrics": [valid("productivity_metric")]}),
        other => panic!("no valid body for {other}"),
    }
}

/// Strings that break naive parsers: NaN-likes, huge and tiny numbers in text, markup,
/// control characters, invalid-looking dates, very long text.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just("NaN".to_owned()),
        Just("Infinity".to_owned()),
        Just("-Infinity".to_owned()),
        Just("1e999".to_owned()),
        Just("0x10".to_owned()),
        Just("\u{0}\u{1f}\u{7f}\u{feff}\u{202e}".to_owned()),
        Just("<script>alert(1)</script>".to_owned()),
        Just("<scr<b>ipt>alert(1)</script>".to_owned()),
        Just("2025-02-30T25:61:61Z".to_owned()),
        Just("+275760-09-13T00:00:00Z".to_owned()),
        Just("6f1c3a521d2e4b7a9c1f2a3b4c5d6e7f".to_owned()),
        Just("'; DROP TABLE command_executions; --".to_owned()),
        (0usize..20_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
        "[a-zA-Z0-9_-]{0,120}",
    ]
}

fn nasty_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(f64::MAX)),
        Just(json!(f64::MIN_POSITIVE)),
        Just(json!(-0.0)),
        Just(json!(9_007_199_254_740_993u64)),
        Just(json!(1e15)),
        (-2i64..400_000).prop_map(Value::from),
    ]
}

/// Any JSON value, nested up to 24 levels, with nasty leaves.
fn nasty_json() -> impl Strategy<Value = Value> {
    json_tree(24, 256)
}

/// A small JSON value: a batch carries many.
fn small_json() -> impl Strategy<Value = Value> {
    json_tree(4, 24)
}

fn json_tree(depth: u32, size: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        nasty_number(),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, size, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(nasty_string(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// `[[[[…]]]]` or `{"a":{"a":…}}` `depth` levels deep, as bytes.
fn deeply_nested(depth: usize, objects: bool) -> Vec<u8> {
    let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
    format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
    headers
}

/// Runs a body through the gate and every validator; whatever happens must be a clean refusal.
fn through_every_parser(bytes: &[u8]) -> Result<(), TestCaseError> {
    match json_body(&json_headers(), bytes, 1 << 20) {
        Ok(value) => {
            for (kind, validate) in validators() {
                if let Err(errors) = validate(&value) {
                    prop_assert!(!errors.is_empty(), "{kind}: a refusal names its fields");
                    prop_assert!(errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()));
                }
            }
        }
        Err(err) => prop_assert!(err.status().is_client_error(), "{err}"),
    }
    Ok(())
}

/// Whether every error names `field` (the only one changed in a valid body), or the field a
/// rule between two fields reports: `period_end` for the period, `value` for its type's range,
/// `session_end` for an imported session's end and status.
fn blamed_correctly(kind: &str, field: &str, errors: &[FieldError]) -> bool {
    let reported_for = |changed: &str| -> &[&str] {
        match (kind, changed) {
            ("productivity_metric", "period_start" | "period_end") => &["period_end"],
            ("productivity_metric", "metric_type") => &["value"],
            ("user_session", "session_start" | "session_end" | "status") => &["session_end"],
            _ => &[],
        }
    };
    errors.iter().all(|e| {
        e.field == field
            || e.field.starts_with(&format!("{field}["))
            || e.field.starts_with(&format!("{field}."))
            || reported_for(field).contains(&e.field.as_str())
    })
}

/// Every property any body may carry, as the schemas declare them.
fn is_known_field(name: &str) -> bool {
    [
        CommandExecution::FIELDS,
        AgentInteraction::FIELDS,
        ProductivityMetric::FIELDS,
        SessionStart::FIELDS,
        SessionEnd::FIELDS,
        SessionImport::FIELDS,
    ]
    .iter()
    .any(|fields| fields.contains(&name))
        || shared::domain::kind::Kind::ALL.iter().any(|kind| kind.plural() == name)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_including_malformed_utf8_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        through_every_parser(&bytes)?;
    }

    #[test]
    fn arbitrary_json_documents_are_refused_cleanly(value in nasty_json()) {
        through_every_parser(value.to_string().as_bytes())?;
        for (kind, validate) in validators() {
            if let Err(errors) = validate(&value) {
                prop_assert!(!errors.is_empty(), "{kind}");
            }
        }
    }

    #[test]
    fn damaged_valid_bodies_are_refused_cleanly(
        kind in prop::sample::select(vec!["command_execution", "agent_interaction", "productivity_metric",
                                          "user_session", "session_end", "batch"]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = valid(kind).to_string().into_bytes();
        for (at, byte, action) in edits {
            match action {
                0 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes[i] = byte; }
                1 => { let i = at.index(bytes.len() + 1); bytes.insert(i, byte); }
                _ if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes.remove(i); }
                _ => {}
            }
        }
        through_every_parser(&bytes)?;
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack(depth in 1usize..5_000, objects in any::<bool>()) {
        through_every_parser(&deeply_nested(depth, objects))?;
        let mut body = valid("command_execution");
        if let Ok(deep) = serde_json::from_slice::<Value>(&deeply_nested(depth.min(120), objects)) {
            body["context"] = json!({"deep": deep});
            let result = CommandExecution::from_json(&body, "");
            prop_assert_eq!(result.is_ok(), depth.min(120) < 16, "depth {}", depth);
        }
    }

    #[test]
    fn one_bad_field_is_refused_by_its_own_name(
        kind in prop::sample::select(vec!["command_execution", "agent_interaction", "productivity_metric",
                                          "user_session", "session_start", "session_activity", "session_end"]),
        field_pick in any::<prop::sample::Index>(),
        replacement in nasty_json(),
    ) {
        let mut body = valid(kind);
        let fields: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        let field = field_pick.get(&fields).clone();
        body[&field] = replacement;
        let validate = validators().into_iter().find(|(k, _)| *k == kind).unwrap().1;
        if let Err(errors) = validate(&body) {
            prop_assert!(blamed_correctly(kind, &field, &errors), "{kind}.{field}: {errors:?}");
        }
        // A value no field of any body accepts is always refused, and by this field's name.
        body[&field] = json!([[null]]);
        let errors = validate(&body).expect_err("a nested array of nulls is never valid");
        prop_assert!(blamed_correctly(kind, &field, &errors), "{kind}.{field}: {errors:?}");
    }

    #[test]
    fn unknown_fields_are_refused_by_name(
        kind in prop::sample::select(vec!["command_execution", "agent_interaction", "productivity_metric",
                                          "session_start", "session_end", "batch"]),
        name in "[a-z_]{1,20}|\\PC{1,40}",
        value in nasty_json(),
    ) {
        let mut body = valid(kind);
        prop_assume!(!is_known_field(&name));
        body[&name] = value;
        let validate = validators().into_iter().find(|(k, _)| *k == kind).unwrap().1;
        let errors = validate(&body).expect_err("an unknown field is refused");
        prop_assert!(errors.iter().any(|e| e.field == name && e.message.contains("Unknown field")), "{errors:?}");
    }

    #[test]
    fn batches_of_hostile_metrics_are_located_or_accepted(
        metrics in prop::collection::vec((0usize..4, small_json()), 0..30),
    ) {
        let kinds = ["command_executions", "agent_interactions", "user_sessions", "productivity_metrics"];
        let mut body = Map::new();
        for (kind, metric) in metrics {
            let list = body.entry(kinds[kind]).or_insert_with(|| json!([]));
            list.as_array_mut().unwrap().push(metric);
        }
        let body = Value::Object(body);
        match Metrics::from_request(&body, 20) {
            Err(errors) => prop_assert!(errors.iter().all(|e| e.field == "body" || kinds.iter().any(|k| e.field.starts_with(k))
                || e.field == "*"), "{errors:?}"),
            // Accepted: every metric sent is there, and the batch is within its bounds.
            Ok(accepted) => {
                let sent = kinds.iter().map(|k| body[*k].as_array().map_or(0, Vec::len)).sum::<usize>();
                prop_assert_eq!(accepted.total(), sent);
                prop_assert!((1..=20).contains(&sent));
            }
        }
    }

    #[test]
    fn queue_messages_are_parsed_or_refused_and_round_trip(
        mutation in prop_oneof![
            Just(None),
            (nasty_string(), nasty_json()).prop_map(Some),
        ],
        raw in prop_oneof![Just(None), any::<String>().prop_map(Some)],
    ) {
        let caller = Caller::member(OrgId::parse("acme").unwrap(), UserId::parse("alice").unwrap());
        let envelope = Envelope::new(&caller, Source::Import, Metrics::from_request(&valid("batch"), 20).unwrap());
        let mut message: Value = serde_json::from_str(&envelope.to_message().unwrap()).unwrap();
        if let Some((key, value)) = mutation {
            message[&key] = value;
        }
        let text = raw.unwrap_or_else(|| message.to_string());
        if let Ok(parsed) = Envelope::parse(&text) {
            let again = Envelope::parse(&parsed.to_message().unwrap()).expect("what was accepted is accepted again");
            prop_assert_eq!(again, parsed);
        }
    }

    #[test]
    fn sanitised_text_carries_no_markup_that_could_run(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(prop_oneof![
            prop::sample::select(vec!["<", ">", "/", "script", "SCRIPT", "<!--", "-->", "b",
                "style", " ", "on", "=", "\0", "iframe", "é", "<svg", "x", "\"", "'", "</"]),
            prop::sample::select(REMOVED_WITH_CONTENT.iter().chain(REMOVED_TAGS).copied().collect::<Vec<_>>()),
        ], 0..40).prop_map(|p| p.concat()),
    ]) {
        let clean = sanitize_text(&text);
        // HTML tag names are ASCII case-insensitive.
        let lower = clean.to_ascii_lowercase();
        prop_assert!(!clean.contains('\0'));
        prop_assert!(!lower.contains("<!--"), "{text:?} became {clean:?}");
        for (at, _) in lower.match_indices('<') {
            // An HTML tokenizer ends a tag name at whitespace, `/`, `>` or the end of the text.
            let rest = &lower[at + 1..];
            let name_and_rest = rest.strip_prefix('/').unwrap_or(rest);
            let name_len = name_and_rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
            let (name, after) = name_and_rest.split_at(name_len);
            let ends_the_name = after.chars().next().is_none_or(|c| c.is_ascii_whitespace() || c == '/' || c == '>');
            let removed = REMOVED_WITH_CONTENT.contains(&name) || REMOVED_TAGS.contains(&name);
            prop_assert!(!(removed && ends_the_name), "{text:?} became {clean:?}: <{name} at {at}");
        }
        prop_assert_eq!(sanitize_text(&clean), clean.clone(), "sanitising is idempotent");
    }

    #[test]
    fn arbitrary_and_damaged_tokens_are_refused(
        token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,64}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,100}",
            (any::<prop::sample::Index>(), "[A-Za-z0-9_.=+/-]").prop_map(|(at, c)| {
                let mut t = valid_token().into_bytes();
                let i = at.index(t.len());
                t[i] = c.as_bytes()[0];
                String::from_utf8(t).unwrap()
            }),
        ],
    ) {
        match authenticator().verify(&token) {
            Ok(caller) => prop_assert_eq!(caller.org.as_str(), "acme", "only an intact signature passes"),
            Err(err) => prop_assert!(token.len() < 16 || !err.to_string().contains(&token), "{err}"),
        }
    }

    #[test]
    fn only_the_exact_shape_of_an_api_key_is_read_as_one(
        token in prop_oneof![
            any::<String>().prop_map(|s| format!("mcsk_{s}")),
            "mcsk_[0-9a-fA-F_]{0,120}",
            (any::<prop::sample::Index>(), "[0-9a-zA-Z_]").prop_map(|(at, c)| {
                let mut key = format!("mcsk_{}_{}", "3f".repeat(16), "a9".repeat(32)).into_bytes();
                let i = at.index(key.len());
                key[i] = c.as_bytes()[0];
                String::from_utf8(key).unwrap()
            }),
        ],
    ) {
        static SHAPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(&format!("^{}$", shared::domain::api_keys::KEY_PATTERN)).unwrap()
        });
        let parsed = shared::domain::api_keys::PresentedKey::parse(&token);
        prop_assert_eq!(parsed.is_some(), SHAPE.is_match(&token), "{}", token);
        if let Some(key) = parsed {
            prop_assert!(!format!("{key:?}").contains(&token[38..]), "Debug shows no secret");
        }
    }
}

proptest! {
    // Redaction runs a dozen patterns over every string: a tenth of the cases keeps the run short.
    #![proptest_config(Config { cases: (config().cases / 10).max(1), ..config() })]

    #[test]
    fn hook_inputs_are_kept_bounded_and_redacted_or_refused_by_name(
        extra in nasty_json(),
        session in prop_oneof![nasty_string().prop_map(Value::String), nasty_json()],
        event in prop_oneof![
            prop::sample::select(shared::domain::hooks::KNOWN_EVENTS.to_vec()).prop_map(|e| json!(e)),
            nasty_json(),
        ],
        secret in "[A-Za-z0-9]{24,40}",
        redacted in any::<bool>(),
    ) {
        let content = if redacted { HookContent::Redacted } else { HookContent::Metrics };
        let mut body = match extra { Value::Object(map) => map, other => Map::from_iter([("x".to_owned(), other)]) };
        body.insert("session_id".into(), session);
        body.insert("hook_event_name".into(), event);
        body.insert("tool_input".into(), json!({"command": format!("export API_TOKEN={secret} && make")}));
        let user = shared::domain::ids::UserId::parse("alice").unwrap();
        match HookEvent::from_json(&Value::Object(body), &user, content) {
            Ok(hook) => {
                let kept = hook.payload.to_string();
                prop_assert!(!kept.contains(&secret), "secret kept: {kept:.200}");
                prop_assert!(kept.len() < 4_000_000, "bounded");
                let receipt = HookReceipt { received_at: chrono::Utc::now(), partner_received_at: None };
                // Derived metrics always pass our own validation (a failure would be logged and dropped).
                prop_assert_eq!(hook.command_execution(&receipt).is_some(), TOOL_USE_EVENTS.contains(&hook.event_name.as_str()));
                prop_assert_eq!(hook.agent_interaction(&receipt).is_some(), hook.event_name == "SubagentStop");
            }
            Err(errors) => prop_assert!(
                errors.iter().all(|e| ["session_id", "hook_event_name", "tool_use_id", "agent_id"].contains(&e.field.as_str())),
                "{errors:?}"
            ),
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: (config().cases / 10).max(1), ..config() })]

    #[test]
    fn secrets_in_command_lines_are_redacted_even_when_split_by_markup(
        template in prop::sample::select(vec![
            "export GITHUB_TOKEN={} && make", "mysql -u root -p{} app", "curl -u alice:{} https://x",
            "docker login -u bob -p {} ghcr.io", "aws configure set aws_secret_access_key {}",
            "npm config set //registry.npmjs.org/:_authToken {}", "DB_PASS={} ./run", "--password={}",
            "{\"refresh_tokens\": \"{}\"}", "clientSecret: {}", "Authorization: Bearer {}",
            "git clone https://bob:{}@example.com/x.git",
        ]),
        secret in "[A-Za-z0-9]{16,40}",
        split in prop_oneof![Just(""), Just("<b></b>"), Just("\0"), Just("<!-- x -->"), Just("<i>")],
        at in any::<prop::sample::Index>(),
    ) {
        let cut = at.index(secret.len() - 1) + 1;
        let hidden = format!("{}{split}{}", &secret[..cut], &secret[cut..]);
        let command = template.replace("{}", &hidden);
        let stored = shared::domain::sanitize::sanitize_text(&shared::domain::redact::redact_text(&command)).into_owned();
        prop_assert!(!stored.contains(&secret), "{command:?} stored as {stored:?}");
        prop_assert!(stored.contains(shared::domain::redact::REDACTED), "{stored:?}");
    }
}

const SECRET: &str = "property-test-secret-0123456789";

fn authenticator() -> &'static Authenticator {
    static AUTH: std::sync::OnceLock<Authenticator> = std::sync::OnceLock::new();
    AUTH.get_or_init(|| {
        Authenticator::new(&AuthConfig {
            key: JwtKey::Hs256 { secret: SECRET.into() },
            previous: None,
            issuer: None,
            audience: vec![],
            leeway_seconds: 0,
        })
        .unwrap()
    })
}

fn valid_token() -> String {
    let claims = json!({"org_id": "acme", "sub": "alice", "exp": 4_102_444_800u64});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// What an OTLP export leaves to store is always storable: finite counts within bounds, plausible
/// times, ids and labels without control characters.
fn otlp_kept_is_storable(export: &shared::domain::usage::UsageExport) -> Result<(), TestCaseError> {
    use shared::domain::otlp::MAX_POINT_VALUE;
    for point in &export.points {
        prop_assert!(point.value.is_finite() && (0.0..=MAX_POINT_VALUE).contains(&point.value));
        prop_assert!(point.start_ns <= i64::MAX as u64 && point.time_ns <= i64::MAX as u64);
        prop_assert!(!point.model.contains('\0') && !point.labels.to_string().contains("\\u0000"));
    }
    for event in &export.events {
        prop_assert!(event.time_ns <= i64::MAX as u64);
        prop_assert!(!event.attributes.to_string().contains("\\u0000"));
    }
    for (session, _) in export.sessions() {
        prop_assert!(!session.claude_session_id.chars().any(char::is_control));
    }
    Ok(())
}

/// Both OTLP requests read from `bytes` in `encoding`; what decodes must read without panicking
/// into something storable, and what does not is a 400 naming the body.
fn through_the_otlp_readers(encoding: shared::http::otlp::Encoding, bytes: &[u8]) -> Result<(), TestCaseError> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use shared::http::otlp::decode;
    let user = UserId::parse("alice").unwrap();
    let now = 1_796_187_700_000_000_000;
    match decode::<ExportMetricsServiceRequest>(encoding, bytes) {
        Ok(request) => otlp_kept_is_storable(&shared::domain::otlp::metrics::read(&request, &user, now).export)?,
        Err(err) => prop_assert_eq!(err.status().as_u16(), 400),
    }
    match decode::<ExportLogsServiceRequest>(encoding, bytes) {
        Ok(request) => {
            for content in [HookContent::Metrics, HookContent::Redacted] {
                otlp_kept_is_storable(&shared::domain::otlp::logs::read(&request, &user, content, now).export)?;
            }
        }
        Err(err) => prop_assert_eq!(err.status().as_u16(), 400),
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: (config().cases / 10).max(1), ..config() })]

    #[test]
    fn otlp_exports_damaged_or_arbitrary_are_read_into_storable_data_or_refused(
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        json in any::<bool>(),
        arbitrary in prop::collection::vec(any::<u8>(), 0..256),
        use_arbitrary in any::<bool>(),
    ) {
        use shared::http::otlp::Encoding;
        let (encoding, recorded): (Encoding, &[u8]) = match (json, use_arbitrary) {
            (_, true) => (if json { Encoding::Json } else { Encoding::Protobuf }, &arbitrary),
            (true, false) => (Encoding::Json, include_bytes!("../../events/otlp/logs.json")),
            (false, false) => (Encoding::Protobuf, include_bytes!("../../events/otlp/metrics.pb")),
        };
        let mut bytes = recorded.to_vec();
        if !bytes.is_empty() {
            for (at, byte) in &damage {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
        }
        through_the_otlp_readers(encoding, &bytes)?;
    }

    #[test]
    fn otlp_json_documents_of_any_shape_are_read_or_refused(value in nasty_json()) {
        let wrapped = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [value.clone()]}]}],
                             "resourceLogs": [{"scopeLogs": [{"logRecords": [value]}]}]});
        through_the_otlp_readers(shared::http::otlp::Encoding::Json, wrapped.to_string().as_bytes())?;
    }
}
