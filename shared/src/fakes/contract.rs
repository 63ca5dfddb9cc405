//! The store contract: what every `MetricStore` must do, as one suite that runs against the
//! in-memory fake (`shared` unit tests) and against PostgreSQL (`tests/tests/it/contract.rs`), so
//! handlers tested on the fake behave the same on the real store.
//!
//! Each case takes the store and an organization of its own, and panics naming what differs.

use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::batch::{Envelope, Metrics, Source};
use crate::domain::hooks::KeptHookEvent;
use crate::domain::identified::{Identified, Identify};
use crate::domain::ids::{Caller, OrgId, UserId};
use crate::domain::kind::{Kind, PerKind};
use crate::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use crate::domain::sessions::{SessionActivity, SessionChange, SessionEnd, SessionStart, SessionStatus};
use crate::domain::summary::{GroupBy, SummaryQuery};
use crate::ports::store::{MetricStore, StoreError};

/// Every case of the contract, each in an organization of its own (`org_prefix` + a suffix).
pub async fn every_case(store: &dyn MetricStore, org_prefix: &str) {
    let org = |case: &str| format!("{org_prefix}{case}");
    ids_are_idempotent_for_their_user_and_taken_for_others(store, &org("ids")).await;
    sessions_follow_their_lifecycle(store, &org("sessions")).await;
    a_session_context_stays_bounded(store, &org("context")).await;
    envelopes_count_what_is_new_and_name_what_others_hold(store, &org("envelopes")).await;
    hook_events_are_kept_once_and_counted_per_user(store, &org("hooks")).await;
    aggregates_count_what_was_stored(store, &org("aggregates")).await;
    sessions_are_summarised_by_their_start(store, &org("session-figures")).await;
    usage_counts_each_point_once_and_joins_the_session(store, &org("usage")).await;
}

fn caller(org: &str, user: &str) -> Caller {
    Caller::member(OrgId::parse(org).expect("org"), UserId::parse(user).expect("user"))
}

fn command(id: Uuid, name: &str) -> Identified<CommandExecution> {
    CommandExecution::from_json(
        &json!({"id": id, "command_name": name, "execution_time_ms": 120.5, "status": "success"}),
        "",
    )
    .expect("command")
    .identified()
}

fn agent(id: Uuid) -> Identified<AgentInteraction> {
    AgentInteraction::from_json(
        &json!({"id": id, "agent_name": "coder", "interaction_type": "response", "input_tokens": 10,
                "output_tokens": 20, "processing_time_ms": 30, "success": true}),
        "",
    )
    .expect("agent")
    .identified()
}

fn productivity(id: Uuid) -> Identified<ProductivityMetric> {
    ProductivityMetric::from_json(
        &json!({"id": id, "metric_type": "efficiency_score", "value": 71, "unit": "index",
                "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"}),
        "",
    )
    .expect("productivity")
    .identified()
}

fn start(id: Uuid) -> Identified<SessionStart> {
    SessionStart {
        id: Some(id),
        session_start: None,
        context: json!({}),
    }
    .identified()
}

fn taken(outcome: Result<crate::ports::store::Stored, StoreError>, what: &str) {
    assert!(
        matches!(outcome, Err(StoreError::IdTaken)),
        "{what}: another user's id must be taken"
    );
}

pub async fn ids_are_idempotent_for_their_user_and_taken_for_others(store: &dyn MetricStore, org: &str) {
    let (alice, bob) = (caller(org, "alice"), caller(org, "bob"));
    let id = Uuid::new_v4();
    let first = store
        .insert_command_execution(&alice, &command(id, "build"))
        .await
        .expect("insert");
    assert!(first.new, "a new id is written");
    let again = store
        .insert_command_execution(&alice, &command(id, "other"))
        .await
        .expect("repeat");
    assert_eq!(
        (again.id, again.created_at, again.new),
        (first.id, first.created_at, false)
    );
    taken(
        store.insert_command_execution(&bob, &command(id, "build")).await,
        "command",
    );

    let id = Uuid::new_v4();
    store.insert_agent_interaction(&alice, &agent(id)).await.expect("agent");
    taken(store.insert_agent_interaction(&bob, &agent(id)).await, "agent");
    let id = Uuid::new_v4();
    store
        .insert_productivity_metric(&alice, &productivity(id))
        .await
        .expect("productivity");
    taken(
        store.insert_productivity_metric(&bob, &productivity(id)).await,
        "productivity",
    );
    let id = Uuid::new_v4();
    store.start_session(&alice, &start(id)).await.expect("session");
    assert!(!store.start_session(&alice, &start(id)).await.expect("again").new);
    taken(store.start_session(&bob, &start(id)).await, "session");

    // Ids are unique per kind: the same id may name records of two kinds.
    let shared_id = Uuid::new_v4();
    store
        .insert_command_execution(&alice, &command(shared_id, "x"))
        .await
        .expect("command");
    assert!(
        store
            .insert_agent_interaction(&bob, &agent(shared_id))
            .await
            .expect("agent")
            .new
    );
}

pub async fn sessions_follow_their_lifecycle(store: &dyn MetricStore, org: &str) {
    let (alice, bob) = (caller(org, "alice"), caller(org, "bob"));
    let id = Uuid::new_v4();
    store.start_session(&alice, &start(id)).await.expect("start");
    let activity = |commands: i64, agents: &[&str], context: Value| SessionActivity {
        commands_executed: Some(commands),
        agents_used: Some(agents.iter().map(|a| a.to_string()).collect()),
        context: Some(context),
        tool_uses_of: None,
    };
    store
        .update_session(&alice, id, &activity(3, &["coder", "reviewer"], json!({"a": 1})))
        .await
        .expect("update");
    let SessionChange::Changed(record) = store
        .update_session(&alice, id, &activity(2, &["reviewer", "tester"], json!({"b": 2})))
        .await
        .expect("update")
    else {
        panic!("an active session takes updates");
    };
    assert_eq!(record.commands_executed, 3, "the running total never goes down");
    assert_eq!(record.agents_used, ["coder", "reviewer", "tester"]);
    assert_eq!(record.context, json!({"a": 1, "b": 2}));
    assert_eq!(
        store
            .update_session(&bob, id, &SessionActivity::default())
            .await
            .expect("bob"),
        SessionChange::OtherUser
    );
    assert_eq!(
        store
            .update_session(&alice, Uuid::new_v4(), &SessionActivity::default())
            .await
            .expect("unknown"),
        SessionChange::NotFound
    );
    let end = SessionEnd {
        session_id: id,
        productivity_score: Some(80.0),
        activity: SessionActivity::default(),
    };
    let SessionChange::Changed(ended) = store.end_session(&alice, &end).await.expect("end") else {
        panic!("an active session ends");
    };
    assert_eq!(ended.status, SessionStatus::Completed);
    assert!(ended.session_end.is_some() && ended.total_duration_ms.is_some_and(|ms| ms >= 0));
    assert_eq!(ended.productivity_score, Some(80.0));
    assert_eq!(
        store.end_session(&alice, &end).await.expect("again"),
        SessionChange::Refused(SessionStatus::Completed)
    );
    assert_eq!(
        store
            .update_session(&alice, id, &SessionActivity::default())
            .await
            .expect("late"),
        SessionChange::Refused(SessionStatus::Completed)
    );
}

pub async fn a_session_context_stays_bounded(store: &dyn MetricStore, org: &str) {
    let alice = caller(org, "alice");
    let id = Uuid::new_v4();
    store.start_session(&alice, &start(id)).await.expect("start");
    let keys = |from: usize, n: usize| -> Value {
        Value::Object((from..from + n).map(|i| (format!("k{i}"), json!(i))).collect())
    };
    let with_context = |context: Value| SessionActivity {
        context: Some(context),
        ..SessionActivity::default()
    };
    let full = store
        .update_session(&alice, id, &with_context(keys(0, 50)))
        .await
        .expect("50 keys");
    assert!(matches!(full, SessionChange::Changed(_)), "50 keys fit");
    assert_eq!(
        store
            .update_session(&alice, id, &with_context(keys(50, 1)))
            .await
            .expect("51"),
        SessionChange::ContextFull
    );
    let heartbeat = store
        .update_session(&alice, id, &SessionActivity::default())
        .await
        .expect("beat");
    assert!(
        matches!(heartbeat, SessionChange::Changed(_)),
        "a full session still takes heartbeats"
    );
    let changed = store
        .update_session(&alice, id, &with_context(json!({"k0": "x"})))
        .await
        .expect("change");
    assert!(
        matches!(changed, SessionChange::Changed(_)),
        "an existing key may change"
    );
}

fn envelope(org: &str, user: &str, metrics: Value) -> Envelope {
    let metrics = Metrics::from_request(&metrics, 1000).expect("metrics").with_ids();
    Envelope::new(&caller(org, user), Source::Import, metrics)
}

pub async fn envelopes_count_what_is_new_and_name_what_others_hold(store: &dyn MetricStore, org: &str) {
    let alice_id = Uuid::new_v4();
    store
        .insert_command_execution(&caller(org, "alice"), &command(alice_id, "build"))
        .await
        .expect("alice");
    let batch = envelope(
        org,
        "bob",
        json!({
            "command_executions": [
                {"command_name": "test", "execution_time_ms": 1, "status": "success"},
                {"id": alice_id, "command_name": "lint", "execution_time_ms": 2, "status": "error"}
            ],
            "user_sessions": [{"session_start": "2025-09-08T09:00:00Z", "session_end": "2025-09-08T10:00:00Z"}],
            "productivity_metrics": [{"metric_type": "error_rate", "value": 3, "unit": "percent",
                "period_start": "2025-09-08T09:00:00Z", "period_end": "2025-09-08T10:00:00Z"}]
        }),
    );
    let new = store.write_envelope(&batch).await.expect("write");
    let expected = PerKind {
        command_executions: 1,
        agent_interactions: 0,
        user_sessions: 1,
        productivity_metrics: 1,
    };
    assert_eq!(new, expected, "only new records count");
    assert_eq!(
        store.write_envelope(&batch).await.expect("again").total(),
        0,
        "a redelivery adds nothing"
    );
    let others = store.ids_taken_by_others(&batch).await.expect("taken");
    assert_eq!(others[Kind::CommandExecution], [alice_id]);
    assert_eq!(others.iter().map(|(_, ids)| ids.len()).sum::<usize>(), 1);

    // An imported session is a session like a started one.
    let imported = batch.metrics.user_sessions[0].id.expect("id");
    let bob = caller(org, "bob");
    assert!(!store.start_session(&bob, &start(imported)).await.expect("restart").new);
    taken(
        store.start_session(&caller(org, "carol"), &start(imported)).await,
        "imported session",
    );
}

pub async fn hook_events_are_kept_once_and_counted_per_user(store: &dyn MetricStore, org: &str) {
    let (alice, bob) = (caller(org, "alice"), caller(org, "bob"));
    let payload = json!({"hook_event_name": "PostToolUse"});
    let event = |id: Uuid, name: &'static str, partner: Option<Uuid>| KeptHookEvent {
        id,
        session_id: "claude-session",
        event_name: name,
        correlation_id: Some("tool-1"),
        payload: &payload,
        partner,
    };
    // GIVEN alice's tool use (its PreToolUse, its PostToolUse twice) and bob's of the same Claude id
    let pre = Uuid::new_v4();
    let opened = store
        .keep_hook_event(&alice, &event(pre, "PreToolUse", None))
        .await
        .expect("pre");
    let post = Uuid::new_v4();
    let first = store
        .keep_hook_event(&alice, &event(post, "PostToolUse", Some(pre)))
        .await
        .expect("post");
    assert_eq!(first.partner_received_at, Some(opened.received_at));
    let repeated = store
        .keep_hook_event(&alice, &event(post, "PostToolUse", Some(pre)))
        .await
        .expect("repeat");
    assert_eq!(repeated.received_at, first.received_at, "a repeat keeps the first time");
    store
        .keep_hook_event(&bob, &event(Uuid::new_v4(), "PostToolUse", None))
        .await
        .expect("bob");
    // WHEN each writes a session counting the Claude session's tool uses
    let counted = |commands: Option<i64>| SessionActivity {
        commands_executed: commands,
        tool_uses_of: Some("claude-session".into()),
        ..SessionActivity::default()
    };
    let commands_of = |change: SessionChange| match change {
        SessionChange::Changed(record) => record.commands_executed,
        other => panic!("an active session takes updates, got {other:?}"),
    };
    let (alices, bobs) = (Uuid::new_v4(), Uuid::new_v4());
    store.start_session(&alice, &start(alices)).await.expect("start");
    store.start_session(&bob, &start(bobs)).await.expect("start");
    let update = |who, id, commands| async move { store.update_session(who, id, &counted(commands)).await };
    // THEN a tool use counts once, a PreToolUse not at all, and each user only their own
    assert_eq!(commands_of(update(&alice, alices, None).await.expect("alice")), 1);
    assert_eq!(
        commands_of(update(&bob, bobs, None).await.expect("bob")),
        1,
        "bob's session of the same Claude id counts his tool uses only"
    );
    // AND a count never lowers a larger total
    assert_eq!(commands_of(update(&alice, alices, Some(5)).await.expect("alice")), 5);
    assert_eq!(commands_of(update(&alice, alices, None).await.expect("alice")), 5);
}

pub async fn aggregates_count_what_was_stored(store: &dyn MetricStore, org: &str) {
    let (alice, bob) = (caller(org, "alice"), caller(org, "bob"));
    for name in ["build", "build", "test"] {
        store
            .insert_command_execution(&alice, &command(Uuid::new_v4(), name))
            .await
            .expect("alice");
    }
    store
        .insert_command_execution(&bob, &command(Uuid::new_v4(), "build"))
        .await
        .expect("bob");
    store
        .insert_agent_interaction(&bob, &agent(Uuid::new_v4()))
        .await
        .expect("agent");
    let now = Utc::now();
    let query = SummaryQuery::parse([("group_by", "user")], now).expect("query");
    assert_eq!(query.group_by, GroupBy::User);
    let rows = store.aggregates(&alice, &query).await.expect("aggregates");
    let count = |key: &str, kind: &str| {
        rows.iter()
            .filter(|row| row.key == key && row.kind == kind)
            .map(|row| row.count)
            .sum::<i64>()
    };
    assert_eq!(count("alice", "command"), 3);
    assert_eq!(count("bob", "command"), 1);
    assert_eq!(count("bob", "agent"), 1);
    let tokens: i64 = rows
        .iter()
        .filter(|row| row.key == "bob")
        .map(|row| row.tokens_in)
        .sum();
    assert_eq!(tokens, 10);
}

/// Sessions count in the span holding their start (`[since, until)`), in the span's total and,
/// grouped by user or hour, in their group; the total follows the `user` filter.
pub async fn sessions_are_summarised_by_their_start(store: &dyn MetricStore, org: &str) {
    use crate::domain::summary::{SESSION_ROW, SESSION_TOTAL_ROW, SessionFigures};
    let (alice, bob) = (caller(org, "alice"), caller(org, "bob"));
    let start = async |who: &Caller, at: &str| {
        let session = SessionStart::from_json(&json!({"session_start": at}))
            .expect("start")
            .identified();
        store.start_session(who, &session).await.expect("session start");
        session.id
    };
    // GIVEN sessions started at both edges of 10:00-12:00 and just outside it, one of them ended
    let first = start(&alice, "2026-11-20T10:00:00Z").await;
    start(&alice, "2026-11-20T11:59:59.999Z").await;
    start(&alice, "2026-11-20T12:00:00Z").await;
    start(&alice, "2026-11-20T09:59:59.999Z").await;
    start(&bob, "2026-11-20T11:00:00Z").await;
    let end = SessionEnd::from_json(&json!({"session_id": first})).expect("end");
    store.end_session(&alice, &end).await.expect("end");
    let query = |group_by: &str, user: Option<&Caller>| {
        let span = [("since", "2026-11-20T10:00:00Z"), ("until", "2026-11-20T12:00:00Z")];
        let mut query =
            SummaryQuery::parse(span.into_iter().chain([("group_by", group_by)]), Utc::now()).expect("query");
        query.user = user.map(|who| who.user.clone());
        query
    };
    let figures = async |query: SummaryQuery, key: &str, kind: &str| -> Option<SessionFigures> {
        let rows = store.aggregates(&alice, &query).await.expect("aggregates");
        rows.iter().find(|r| r.key == key && r.kind == kind).map(|r| r.sessions)
    };
    // WHEN grouped by user THEN the total has the three started inside, the groups their users'
    let total = figures(query("user", None), "", SESSION_TOTAL_ROW)
        .await
        .expect("total");
    let (started, active, completed, abandoned, timed) = (3, 2, 1, 0, 1);
    assert_eq!(
        (
            total.started,
            total.active,
            total.completed,
            total.abandoned,
            total.timed
        ),
        (started, active, completed, abandoned, timed),
        "{total:?}"
    );
    assert!(
        total.duration_ms > 0,
        "the ended one lasted from 2026-11-20 to now: {total:?}"
    );
    let alices = figures(query("user", None), "alice", SESSION_ROW).await.expect("alice");
    assert_eq!((alices.started, alices.completed, alices.timed), (2, 1, 1));
    assert_eq!(alices.duration_ms, total.duration_ms);
    let bobs = figures(query("user", None), "bob", SESSION_ROW).await.expect("bob");
    assert_eq!((bobs.started, bobs.active), (1, 1));
    // AND by hour, each in the hour of its start
    let hour =
        |key: &'static str| async move { figures(query("hour", None), key, SESSION_ROW).await.map(|f| f.started) };
    assert_eq!(hour("2026-11-20T10:00:00Z").await, Some(1));
    assert_eq!(hour("2026-11-20T11:00:00Z").await, Some(2));
    // AND by command only the total, which a user filter narrows to that user's sessions
    let rows = store
        .aggregates(&alice, &query("command", None))
        .await
        .expect("aggregates");
    assert!(rows.iter().all(|r| r.kind != SESSION_ROW), "{rows:?}");
    let bobs_total = figures(query("command", Some(&bob)), "", SESSION_TOTAL_ROW)
        .await
        .expect("bob's total");
    assert_eq!((bobs_total.started, bobs_total.timed), (1, 0));
}

/// An OTLP export as Claude Code sends it (`events/otlp/`), its cumulative variant, and retries.
pub async fn usage_counts_each_point_once_and_joins_the_session(store: &dyn MetricStore, org: &str) {
    use crate::domain::otlp::{logs, metrics};
    use crate::domain::usage::UsageField;
    let alice = caller(org, "alice");
    let recorded: opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest =
        serde_json::from_str(include_str!("../../../events/otlp/metrics.json")).expect("recording");
    let events: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest =
        serde_json::from_str(include_str!("../../../events/otlp/logs.json")).expect("recording");
    let now = 1_796_187_700_000_000_000;
    let mut export = metrics::read(&recorded, &alice.user, now).export;
    export.events = logs::read(&events, &alice.user, Default::default(), now).export.events;
    // GIVEN a cumulative series whose second total repeats the first plus 10
    let mut running = export.points[0].clone();
    running.cumulative = true;
    running.id = Uuid::new_v4();
    running.series = Uuid::new_v4();
    running.metric = "claude_code.commit.count".into();
    running.field = Some(UsageField::Commits);
    let mut later = running.clone();
    later.id = Uuid::new_v4();
    later.time_ns += 1_000_000_000;
    later.value += 10.0;
    export.points.push(running);
    // WHEN the export is written, then again (a retry), then the next total
    let first = store.write_usage(&alice, &export).await.expect("export");
    let again = store.write_usage(&alice, &export).await.expect("retry");
    let next = crate::domain::usage::UsageExport {
        points: vec![later],
        events: vec![],
    };
    let third = store.write_usage(&alice, &next).await.expect("next total");
    // THEN the first counts everything, the retry nothing, the next total its increase
    assert_eq!((first.points, first.events), (8, 5), "{first:?}");
    assert_eq!(first.usage.get(UsageField::InputTokens), 240.0);
    assert_eq!(first.usage.get(UsageField::ApiRequests), 2.0);
    assert_eq!((again.points, again.events), (0, 0));
    assert!(again.usage.is_zero());
    assert_eq!(third.usage.get(UsageField::Commits), 10.0);
    // AND the summary's usage, by user and by model, says the same
    let span = [("since", "2026-12-02T00:00:00Z"), ("until", "2026-12-03T00:00:00Z")];
    let by = |group_by: &'static str| {
        SummaryQuery::parse(span.into_iter().chain([("group_by", group_by)]), Utc::now()).expect("query")
    };
    let rows = store.aggregates(&alice, &by("user")).await.expect("aggregates");
    let usage = &rows
        .iter()
        .find(|r| r.key == "alice" && r.kind == "usage")
        .expect("usage")
        .usage;
    assert_eq!(usage.get(UsageField::InputTokens), 240.0);
    assert_eq!(usage.get(UsageField::Commits), 1.0 + 10.0);
    assert_eq!(usage.get(UsageField::ApiRequests), 2.0);
    let rows = store.aggregates(&alice, &by("model")).await.expect("aggregates");
    let model = &rows.iter().find(|r| r.key == "claude-opus-5-5").expect("model").usage;
    assert_eq!(model.get(UsageField::OutputTokens), usage.get(UsageField::OutputTokens));
    assert!(
        rows.iter().any(|r| r.key == crate::domain::summary::NO_MODEL_KEY),
        "{rows:?}"
    );
    // AND with bob's copy of the export stored too, a `user` filter gives one developer's usage
    // per model, and the organization's is the sum
    let bob = caller(org, "bob");
    let bobs = metrics::read(&recorded, &bob.user, now).export;
    store.write_usage(&bob, &bobs).await.expect("bob's export");
    let input_of_the_model = |rows: Vec<crate::domain::summary::AggregateRow>| {
        rows.iter()
            .find(|r| r.key == "claude-opus-5-5")
            .map(|r| r.usage.get(UsageField::InputTokens))
    };
    let mut alices = by("model");
    alices.user = Some(alice.user.clone());
    let rows = store.aggregates(&alice, &alices).await.expect("aggregates");
    assert_eq!(input_of_the_model(rows), Some(240.0));
    let rows = store.aggregates(&alice, &by("model")).await.expect("aggregates");
    assert_eq!(input_of_the_model(rows), Some(480.0));
    // AND the session named by the export is started once, as the hooks would have started it
    let session = crate::domain::hooks::session_key(&alice.user, "628c2061-0941-40c6-896f-63efa727f5fc");
    let change = store
        .update_session(&alice, session, &SessionActivity::default())
        .await
        .expect("session");
    assert!(matches!(change, SessionChange::Changed(_)), "{change:?}");
}
