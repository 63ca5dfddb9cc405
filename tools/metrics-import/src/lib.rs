//! Batch imports for operators: NDJSON in (one metric per line, with its `kind`), checked here
//! with the service's own rules, grouped into batch envelopes (`source: "import"`), and sent
//! straight to the batch queue with `SendMessageBatch`.
//!
//! A line is `{"kind": "command_execution" | "agent_interaction" | "user_session" |
//! "productivity_metric", "user_id"?: "...", ...the metric's fields}`. `user_id` defaults to the
//! importer's `--user`. Historical `timestamp`s are kept. A line without an `id` gets one derived
//! from the organization, the user and the line itself (UUID v5), so importing a file twice
//! writes nothing twice.
//!
//! [`export`] writes an organization's data in the same line format (`metrics-import export`).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde_json::Value;
use shared::domain::batch::{Envelope, MAX_ENVELOPE_BYTES, MAX_ENVELOPE_METRICS, Metrics, Source};
use shared::domain::ids::{Caller, OrgId, UserId};
use shared::domain::kind::{Kind, PerKind};
use shared::domain::metrics::{AgentInteraction, CommandExecution, ProductivityMetric};
use shared::domain::sessions::SessionImport;
use shared::domain::validation::FieldError;
use uuid::Uuid;

/// Namespace of the ids derived from import lines.
pub const ID_NAMESPACE: Uuid = uuid::uuid!("5b0c2f4e-8f43-4c8e-9a55-6d2f3c1e7a90");
/// Default metrics per envelope.
pub const DEFAULT_PER_ENVELOPE: usize = 500;
/// SQS limits of one `SendMessageBatch` call.
const MAX_BATCH_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Room left in a message for the envelope's own fields.
const ENVELOPE_OVERHEAD: usize = 4096;
const SEND_ATTEMPTS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub errors: Vec<FieldError>,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reasons: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        write!(f, "line {}: {}", self.line, reasons.join("; "))
    }
}

/// What a file turns into: envelopes to send and the lines that were refused.
#[derive(Debug, Default)]
pub struct Plan {
    pub envelopes: Vec<Envelope>,
    pub invalid: Vec<LineError>,
    pub lines: usize,
    /// Valid metrics per kind.
    pub counts: PerKind<usize>,
    /// Lines identical to an earlier line (same id, same text): they would store nothing new.
    pub repeated: Vec<usize>,
}

impl Plan {
    pub fn metrics(&self) -> usize {
        self.counts.total()
    }
}

/// Reads NDJSON and plans envelopes of at most `per_envelope` metrics (and one SQS message) each.
pub fn plan(input: impl BufRead, org: &OrgId, default_user: &UserId, per_envelope: usize) -> std::io::Result<Plan> {
    let per_envelope = per_envelope.clamp(1, MAX_ENVELOPE_METRICS);
    let mut plan = Plan::default();
    // Each user's envelopes so far, with the serialized size of their metrics.
    let mut by_user: BTreeMap<String, Vec<(Metrics, usize)>> = BTreeMap::new();
    // The first line of each (kind, id), and a hash of its text.
    let mut seen: HashMap<(Kind, Uuid), (usize, Uuid)> = HashMap::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let number = index + 1;
        plan.lines = number;
        if line.trim().is_empty() {
            continue;
        }
        let (user, metric) = match read_line(&line, org, default_user) {
            Ok(parsed) => parsed,
            Err(errors) => {
                plan.invalid.push(LineError { line: number, errors });
                continue;
            }
        };
        // One id per metric of a kind: an envelope repeating one would be refused whole.
        let text_hash = Uuid::new_v5(&ID_NAMESPACE, line.as_bytes());
        match seen.entry(metric.key()) {
            Entry::Vacant(first) => {
                first.insert((number, text_hash));
            }
            Entry::Occupied(first) if first.get().1 == text_hash => {
                plan.repeated.push(number);
                continue;
            }
            Entry::Occupied(first) => {
                let message = format!("Repeats the id of line {} with other content", first.get().0);
                plan.invalid.push(LineError {
                    line: number,
                    errors: vec![FieldError::new("id", message)],
                });
                continue;
            }
        }
        let size = metric.size();
        let chunks = by_user.entry(user.as_str().to_owned()).or_default();
        if chunks
            .last()
            .is_none_or(|(m, bytes)| m.total() >= per_envelope || bytes + size > MESSAGE_BUDGET)
        {
            chunks.push((Metrics::default(), 0));
        }
        if let Some((current, bytes)) = chunks.last_mut() {
            *bytes += size;
            metric.add_to(current, &mut plan.counts);
        }
    }
    for (user, chunks) in by_user {
        let caller = Caller::member(org.clone(), UserId::parse(&user).map_err(std::io::Error::other)?);
        plan.envelopes.extend(
            chunks
                .into_iter()
                .map(|(metrics, _)| Envelope::new(&caller, Source::Import, metrics)),
        );
    }
    Ok(plan)
}

/// Bytes of metrics one envelope may carry, leaving room for the envelope's own fields.
const MESSAGE_BUDGET: usize = MAX_ENVELOPE_BYTES - ENVELOPE_OVERHEAD;

/// One valid line.
enum LineMetric {
    Command(CommandExecution),
    Agent(AgentInteraction),
    Session(SessionImport),
    Productivity(ProductivityMetric),
}

impl LineMetric {
    /// Bytes it adds to an envelope (a separator included).
    fn size(&self) -> usize {
        let serialized = match self {
            LineMetric::Command(m) => serde_json::to_vec(m),
            LineMetric::Agent(m) => serde_json::to_vec(m),
            LineMetric::Session(m) => serde_json::to_vec(m),
            LineMetric::Productivity(m) => serde_json::to_vec(m),
        };
        serialized.map_or(MESSAGE_BUDGET, |v| v.len() + 1)
    }

    /// Its kind and id (always set by `read_line`).
    fn key(&self) -> (Kind, Uuid) {
        let id = match self {
            LineMetric::Command(m) => m.id,
            LineMetric::Agent(m) => m.id,
            LineMetric::Session(m) => m.id,
            LineMetric::Productivity(m) => m.id,
        };
        (self.kind(), id.unwrap_or_default())
    }

    fn kind(&self) -> Kind {
        match self {
            LineMetric::Command(_) => Kind::CommandExecution,
            LineMetric::Agent(_) => Kind::AgentInteraction,
            LineMetric::Session(_) => Kind::UserSession,
            LineMetric::Productivity(_) => Kind::ProductivityMetric,
        }
    }

    fn add_to(self, metrics: &mut Metrics, counts: &mut PerKind<usize>) {
        counts[self.kind()] += 1;
        match self {
            LineMetric::Command(m) => {
                metrics.command_executions.push(m);
            }
            LineMetric::Agent(m) => {
                metrics.agent_interactions.push(m);
            }
            LineMetric::Session(m) => {
                metrics.user_sessions.push(m);
            }
            LineMetric::Productivity(m) => {
                metrics.productivity_metrics.push(m);
            }
        }
    }
}

fn read_line(line: &str, org: &OrgId, default_user: &UserId) -> Result<(UserId, LineMetric), Vec<FieldError>> {
    let mut value: Value =
        serde_json::from_str(line).map_err(|e| vec![FieldError::new("line", format!("Malformed JSON: {e}"))])?;
    let Some(object) = value.as_object_mut() else {
        return Err(vec![FieldError::new("line", "Must be a JSON object")]);
    };
    let kind = object.remove("kind");
    let user = match object.remove("user_id") {
        None | Some(Value::Null) => Ok(default_user.clone()),
        Some(Value::String(raw)) => UserId::parse(&raw).map_err(|problem| FieldError::new("user_id", problem)),
        Some(_) => Err(FieldError::new("user_id", "Must be a string")),
    };
    let kind = kind.as_ref().and_then(Value::as_str).and_then(Kind::from_singular);
    let user = user.map_err(|e| vec![e])?;
    let derived = Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{org}\n{user}\n{}\n{}", kind.map_or("", Kind::singular), line.trim()).as_bytes(),
    );
    let metric = match kind {
        Some(Kind::CommandExecution) => LineMetric::Command(with_id(
            CommandExecution::from_json(&value, "")?,
            |m| &mut m.id,
            derived,
        )),
        Some(Kind::AgentInteraction) => LineMetric::Agent(with_id(
            AgentInteraction::from_json(&value, "")?,
            |m| &mut m.id,
            derived,
        )),
        Some(Kind::UserSession) => {
            LineMetric::Session(with_id(SessionImport::from_json(&value, "")?, |m| &mut m.id, derived))
        }
        Some(Kind::ProductivityMetric) => LineMetric::Productivity(with_id(
            ProductivityMetric::from_json(&value, "")?,
            |m| &mut m.id,
            derived,
        )),
        None => {
            let names: Vec<&str> = Kind::ALL.iter().map(|kind| kind.singular()).collect();
            return Err(vec![FieldError::new(
                "kind",
                format!("Must be one of: {}", names.join(", ")),
            )]);
        }
    };
    Ok((user, metric))
}

fn with_id<T>(mut metric: T, id: fn(&mut T) -> &mut Option<Uuid>, derived: Uuid) -> T {
    id(&mut metric).get_or_insert(derived);
    metric
}

/// Writes the organization's metrics and sessions to `writer` as lines this importer reads
/// (see `shared::adapters::postgres::lifecycle::export_organization`): streamed through a
/// cursor, never the whole organization in memory. Lines carry their `id`, so importing an
/// export twice writes nothing twice. Returns the lines written per kind.
pub async fn export(
    database: &shared::config::DatabaseConfig,
    org: &OrgId,
    writer: &mut (dyn std::io::Write + Send),
) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut client = shared::adapters::postgres::connect_one(database).await?;
    let mut out = |line: &str| {
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")
    };
    let counts = shared::adapters::postgres::lifecycle::export_organization(&mut client, org, &mut out).await?;
    writer.flush().map_err(|e| format!("write: {e}"))?;
    Ok(counts)
}

/// How a send went.
#[derive(Debug, Default)]
pub struct SendReport {
    pub sent_envelopes: usize,
    pub sent_metrics: usize,
    /// (batch id, reason) of envelopes that could not be queued.
    pub failed: Vec<(Uuid, String)>,
}

/// Sends the envelopes with `SendMessageBatch` (at most 10 messages and 1 MiB per call),
/// retrying failed entries; `progress(sent_metrics)` is called after each call.
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    envelopes: &[Envelope],
    mut progress: impl FnMut(usize),
) -> SendReport {
    let mut report = SendReport::default();
    let mut messages = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        match envelope.to_message() {
            Ok(message) => messages.push((envelope, message)),
            Err(_) => report
                .failed
                .push((envelope.batch_id, "larger than one SQS message".into())),
        }
    }
    for group in groups(&messages) {
        let mut pending: Vec<usize> = group;
        for attempt in 1..=SEND_ATTEMPTS {
            let failures = send_group(sqs, queue_url, &messages, &pending).await;
            for index in pending.iter().filter(|i| !failures.iter().any(|(f, _)| f == *i)) {
                report.sent_envelopes += 1;
                report.sent_metrics += messages[*index].0.metrics.total();
            }
            if failures.is_empty() {
                break;
            }
            if attempt == SEND_ATTEMPTS {
                report
                    .failed
                    .extend(failures.into_iter().map(|(i, reason)| (messages[i].0.batch_id, reason)));
                break;
            }
            pending = failures.into_iter().map(|(i, _)| i).collect();
            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64)).await;
        }
        progress(report.sent_metrics);
    }
    report
}

/// Indexes of messages, grouped within SQS's per-call limits.
fn groups(messages: &[(&Envelope, String)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (index, (_, message)) in messages.iter().enumerate() {
        let size = message.len() + 256;
        match groups.last_mut() {
            Some(group) if group.len() < MAX_BATCH_ENTRIES && bytes + size <= MAX_BATCH_BYTES => {
                group.push(index);
                bytes += size;
            }
            _ => {
                groups.push(vec![index]);
                bytes = size;
            }
        }
    }
    groups
}

/// Sends some messages in one call; returns the ones that failed, with why.
async fn send_group(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[(&Envelope, String)],
    indexes: &[usize],
) -> Vec<(usize, String)> {
    let entries: Vec<SendMessageBatchRequestEntry> = indexes
        .iter()
        .filter_map(|&i| {
            let (envelope, message) = &messages[i];
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(message)
                .set_message_attributes(Some(shared::adapters::sqs::envelope_attributes(envelope)))
                .build()
                .ok()
        })
        .collect();
    match sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(output) => output
            .failed
            .iter()
            .filter_map(|f| Some((f.id.parse().ok()?, f.message.clone().unwrap_or_else(|| f.code.clone()))))
            .collect(),
        Err(err) => {
            let reason = aws_sdk_sqs::error::DisplayErrorContext(err).to_string();
            indexes.iter().map(|&i| (i, reason.clone())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> OrgId {
        OrgId::parse("acme").unwrap()
    }

    fn importer() -> UserId {
        UserId::parse("importer").unwrap()
    }

    const FILE: &str = r#"{"kind":"command_execution","user_id":"alice","command_name":"build","execution_time_ms":1200,"status":"success","timestamp":"2024-01-02T03:04:05Z"}
{"kind":"agent_interaction","agent_name":"coder","interaction_type":"response","input_tokens":10,"output_tokens":20,"processing_time_ms":30,"success":true}

{"kind":"user_session","user_id":"alice","session_start":"2024-01-02T03:00:00Z","session_end":"2024-01-02T04:00:00Z"}
{"kind":"productivity_metric","metric_type":"error_rate","value":3.5,"unit":"percent","period_start":"2024-01-01T00:00:00Z","period_end":"2024-01-02T00:00:00Z"}
{"kind":"nonsense"}
{"kind":"command_execution","command_name":"bad name","execution_time_ms":-1,"status":"success"}
not json
"#;

    #[test]
    fn lines_become_envelopes_per_user_and_invalid_lines_are_named() {
        let plan = plan(FILE.as_bytes(), &org(), &importer(), 100).unwrap();
        assert_eq!(plan.lines, 8);
        assert_eq!(plan.counts, PerKind::from_fn(|_| 1));
        assert_eq!(plan.envelopes.len(), 2, "one envelope for alice, one for the importer");
        assert!(plan.envelopes.iter().all(|e| e.source == Source::Import));
        let lines: Vec<usize> = plan.invalid.iter().map(|e| e.line).collect();
        assert_eq!(lines, [6, 7, 8]);
        assert!(plan.invalid[1].to_string().contains("command_name"));
        let alice = plan.envelopes.iter().find(|e| e.user_id.as_str() == "alice").unwrap();
        assert_eq!(
            alice.metrics.command_executions[0].timestamp.unwrap().to_rfc3339(),
            "2024-01-02T03:04:05+00:00",
            "historical timestamps are kept"
        );
    }

    #[test]
    fn ids_are_derived_from_the_line_so_a_second_import_writes_nothing_new() {
        let first = plan(FILE.as_bytes(), &org(), &importer(), 100).unwrap();
        let second = plan(FILE.as_bytes(), &org(), &importer(), 100).unwrap();
        let ids = |p: &Plan| {
            p.envelopes
                .iter()
                .flat_map(|e| {
                    e.metrics
                        .ids()
                        .iter()
                        .flat_map(|(_, ids)| ids.clone())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&first), ids(&second));
        assert!(ids(&first).iter().all(Option::is_some));
        let other_org = plan(FILE.as_bytes(), &OrgId::parse("globex").unwrap(), &importer(), 100).unwrap();
        assert_ne!(ids(&first), ids(&other_org));
    }

    #[test]
    fn a_repeated_line_is_skipped_and_a_reused_id_with_other_content_is_invalid() {
        let id = Uuid::new_v4();
        let line = |name: &str| {
            format!(
                r#"{{"kind":"command_execution","id":"{id}","command_name":"{name}","execution_time_ms":1,"status":"success"}}"#
            )
        };
        let plain = r#"{"kind":"command_execution","command_name":"x","execution_time_ms":1,"status":"success"}"#;
        let file = [line("a"), plain.to_owned(), line("a"), plain.to_owned(), line("b")].join("\n");
        let plan = plan(file.as_bytes(), &org(), &importer(), 100).unwrap();
        assert_eq!(plan.counts.total(), 2);
        assert_eq!(plan.counts[Kind::CommandExecution], 2);
        assert_eq!(plan.repeated, [3, 4]);
        assert_eq!(plan.invalid.len(), 1);
        assert_eq!(plan.invalid[0].line, 5);
        assert!(plan.invalid[0].to_string().contains("Repeats the id of line 1"));
        // What is sent is a valid envelope: no id twice.
        for envelope in &plan.envelopes {
            let message = envelope.to_message().unwrap();
            assert!(Envelope::parse(&message).is_ok());
        }
    }

    #[test]
    fn envelopes_hold_at_most_the_chosen_number_of_metrics() {
        let line = r#"{"kind":"command_execution","command_name":"x","execution_time_ms":1,"status":"success","context":{"n":"#;
        let file: String = (0..25).map(|i| format!("{line}{i}}}}}\n")).collect();
        let plan = plan(file.as_bytes(), &org(), &importer(), 10).unwrap();
        let sizes: Vec<usize> = plan.envelopes.iter().map(|e| e.metrics.total()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert!(plan.invalid.is_empty());
    }

    #[test]
    fn large_metrics_are_split_to_fit_one_message() {
        let big = "x".repeat(9_000);
        let file: String = (0..300)
            .map(|i| {
                format!(
                    r#"{{"kind":"command_execution","command_name":"x","execution_time_ms":{i},"status":"error","error_message":"{big}"}}"#
                ) + "\n"
            })
            .collect();
        let plan = plan(file.as_bytes(), &org(), &importer(), 1000).unwrap();
        assert!(plan.envelopes.len() >= 3);
        assert!(plan.envelopes.iter().all(|e| e.to_message().is_ok()));
        assert_eq!(plan.envelopes.iter().map(|e| e.metrics.total()).sum::<usize>(), 300);
    }
}
