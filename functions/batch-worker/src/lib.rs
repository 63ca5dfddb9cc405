//! The batch worker: the batch queue's event source mapping hands it SQS messages (with
//! `ReportBatchItemFailures`). Each message is parsed and validated again (importers write to the
//! queue directly) and written in one transaction that skips ids already stored, so a
//! redelivered message writes nothing twice.
//!
//! - Written: not reported, SQS deletes it.
//! - Transient failure (database down): reported, SQS delivers it again after the visibility
//!   timeout, and after `maxReceiveCount` deliveries moves it to the dead-letter queue.
//! - Poison (an envelope that can never be written): forwarded at once to the dead-letter queue
//!   with a `failure_reason` attribute for the operator, then not reported, so it is deleted here.
//!
//! The organization's settings govern each message: its write may take at most
//! `performance.processing_timeout_ms` (past it, the message comes back, and being idempotent it
//! is written once), and once written (or dead-lettered) a batch from the batch route frees its
//! slot of `performance.concurrent_requests`.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::sqs::SqsDeadLetters;
use shared::app::Storage;
use shared::app::in_flight::InFlight;
use shared::app::lambda::FLUSH_BUDGET;
use shared::app::live::Broadcaster;
use shared::config::{ConfigError, DatabaseConfig, Env};
use shared::domain::batch::Envelope;
use shared::domain::ids::OrgId;
use shared::domain::kind::PerKind;
use shared::ports::queue::DeadLetters;
use shared::ports::settings::SettingsSource;
use shared::ports::store::MetricStore;
use std::time::Duration;
use tokio::task::JoinSet;

/// What this function builds once per container.
pub type State = Worker;

pub struct Worker {
    pub store: Arc<dyn MetricStore>,
    /// Live updates of what `store` writes, when configured (`store` publishes them).
    pub live: Option<Arc<Broadcaster>>,
    pub dead_letters: Arc<dyn DeadLetters>,
    /// Messages written at the same time (each needs a database connection).
    pub concurrency: usize,
    /// The organizations' settings (each message's processing timeout).
    pub settings: Arc<dyn SettingsSource>,
    /// The batch route's slots, freed once a batch is written.
    pub in_flight: Arc<InFlight>,
}

impl shared::app::FromEnv for Worker {
    /// The worker writes envelopes: it publishes what they add.
    const PUBLISHES_LIVE: bool = true;

    fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Worker::from_env(env, aws)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Metrics newly stored, and those whose id was stored already.
    Written {
        new: u64,
        duplicates: u64,
    },
    DeadLettered,
    Retry,
}

impl Worker {
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let database = DatabaseConfig::from_env(env)?;
        let dead_letter_url = env.required("DEAD_LETTER_QUEUE_URL")?;
        let storage = Storage::from_env(env, aws)?;
        Ok(Self {
            store: storage.store,
            live: storage.live,
            dead_letters: Arc::new(SqsDeadLetters::new(
                aws_sdk_sqs::Client::new(aws),
                dead_letter_url,
                database.timeout,
            )),
            concurrency: env.number_or("WORKER_CONCURRENCY", database.max_connections as u64, 1)? as usize,
            settings: Arc::new(shared::app::settings::Settings::from_env(env, aws)?),
            in_flight: Arc::new(InFlight::from_env(env, aws)?),
        })
    }

    /// Processes one SQS event; the response names only the messages to deliver again.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
        let started = std::time::Instant::now();
        let outcomes = self.process_all(event.payload.records).await;
        publish_metrics(&outcomes, started.elapsed());
        // Nobody waits on a queue invocation, so the pushes are finished here.
        if let Some(live) = &self.live {
            live.flush(FLUSH_BUDGET).await;
        }
        let mut response = SqsBatchResponse::default();
        for (message_id, outcome) in outcomes {
            if outcome != Outcome::Retry {
                continue;
            }
            match message_id.filter(|id| !id.is_empty()) {
                Some(id) => {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    response.batch_item_failures.push(failure);
                }
                // A failure that cannot be named would be deleted as a success: fail the whole
                // event instead (every write is idempotent, so a full redelivery is safe).
                None => {
                    return Err("a message without an id could not be written; retrying the whole batch".into());
                }
            }
        }
        Ok(response)
    }

    /// Each message's outcome, at most `concurrency` at a time, in the order received.
    pub async fn process_all(&self, records: Vec<SqsMessage>) -> Vec<(Option<String>, Outcome)> {
        let mut outcomes = vec![Outcome::Retry; records.len()];
        let ids: Vec<Option<String>> = records.iter().map(|r| r.message_id.clone()).collect();
        let mut running = JoinSet::new();
        for (index, record) in records.into_iter().enumerate() {
            if running.len() >= self.concurrency.max(1)
                && let Some(Ok((i, outcome))) = running.join_next().await
            {
                outcomes[i] = outcome;
            }
            let (store, dead_letters) = (self.store.clone(), self.dead_letters.clone());
            let (settings, in_flight) = (self.settings.clone(), self.in_flight.clone());
            running.spawn(async move {
                let parts = Parts {
                    store: store.as_ref(),
                    dead_letters: dead_letters.as_ref(),
                    settings: settings.as_ref(),
                    in_flight: &in_flight,
                };
                (index, governed(parts, record).await)
            });
        }
        while let Some(joined) = running.join_next().await {
            // A panicking task leaves its message at `Retry`.
            if let Ok((i, outcome)) = joined {
                outcomes[i] = outcome;
            }
        }
        ids.into_iter().zip(outcomes).collect()
    }
}

/// The invocation's outcome as CloudWatch metrics (EMF).
fn publish_metrics(outcomes: &[(Option<String>, Outcome)], elapsed: std::time::Duration) {
    let (mut written, mut duplicates, mut poison, mut failed) = (0, 0, 0, 0);
    for (_, outcome) in outcomes {
        match outcome {
            Outcome::Written { new, duplicates: d } => {
                written += new;
                duplicates += d;
            }
            Outcome::DeadLettered => poison += 1,
            Outcome::Retry => failed += 1,
        }
    }
    shared::telemetry::worker_metrics(written, duplicates, poison, failed, elapsed.as_secs_f64() * 1e3);
}

/// What [`governed`] works with.
pub struct Parts<'a> {
    pub store: &'a dyn MetricStore,
    pub dead_letters: &'a dyn DeadLetters,
    pub settings: &'a dyn SettingsSource,
    pub in_flight: &'a InFlight,
}

/// The fields of an envelope that say whose batch it is, read without the metrics.
#[derive(serde::Deserialize)]
struct Header {
    organization_id: String,
    batch_id: uuid::Uuid,
    source: String,
}

/// [`process`] within the organization's `processing_timeout_ms`, then the batch route's slot
/// freed once the batch is written or dead-lettered.
pub async fn governed(parts: Parts<'_>, record: SqsMessage) -> Outcome {
    let header = record
        .body
        .as_deref()
        .and_then(|body| serde_json::from_str::<Header>(body).ok());
    let whose = header.and_then(|h| Some((OrgId::parse(&h.organization_id).ok()?, h.batch_id, h.source == "api")));
    let Some((org, batch, from_the_route)) = whose else {
        // Not an envelope: `process` dead-letters it with the reason.
        return process(parts.store, parts.dead_letters, record).await;
    };
    let timeout = match parts.settings.effective(&org).await {
        Ok(effective) => effective.settings.performance.processing_timeout_ms,
        Err(_) => parts.settings.defaults().performance.processing_timeout_ms,
    };
    let message_id = record.message_id.clone().unwrap_or_default();
    let writing = process(parts.store, parts.dead_letters, record);
    let outcome = match tokio::time::timeout(Duration::from_millis(timeout), writing).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::warn!(message_id, org = %org, batch_id = %batch, timeout_ms = timeout, "batch not written within processing_timeout_ms; it will come back");
            Outcome::Retry
        }
    };
    if from_the_route && outcome != Outcome::Retry {
        parts.in_flight.release_batch(&org, batch).await;
    }
    outcome
}

/// Writes one message, or forwards it to the dead-letter queue if it can never be written.
pub async fn process(store: &dyn MetricStore, dead_letters: &dyn DeadLetters, record: SqsMessage) -> Outcome {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let body = record.body.as_deref().unwrap_or_default();
    let envelope = match Envelope::parse(body) {
        Ok(envelope) => envelope,
        Err(reason) => return dead_letter(dead_letters, message_id, body, &reason, Outcome::DeadLettered).await,
    };
    let new = match store.write_envelope(&envelope).await {
        Ok(new) => new.total(),
        // A permanent refusal comes back identical on every delivery: poison, at once.
        Err(err) if err.is_permanent() => {
            let reason = format!("the database refuses this envelope: {err}");
            return dead_letter(dead_letters, message_id, body, &reason, Outcome::DeadLettered).await;
        }
        Err(err) => {
            tracing::warn!(message_id, batch_id = %envelope.batch_id, error = %err, "batch not written; it will come back");
            return Outcome::Retry;
        }
    };
    let total = envelope.metrics.total() as u64;
    let written = Outcome::Written {
        new,
        duplicates: total - new,
    };
    tracing::info!(
        message_id,
        batch_id = %envelope.batch_id,
        org = %envelope.organization_id,
        source = ?envelope.source,
        metrics = total,
        duplicates = total - new,
        "batch written"
    );
    if new == total {
        return written;
    }
    // Skipped ids are usually a redelivery; those another user of the organization holds were
    // not written at all, and must not vanish silently.
    match store.ids_taken_by_others(&envelope).await {
        Ok(taken) if taken.iter().all(|(_, ids)| ids.is_empty()) => written,
        Ok(taken) => {
            let reason = taken_reason(&envelope, &taken);
            dead_letter(dead_letters, message_id, body, &reason, written).await
        }
        Err(err) => {
            tracing::warn!(message_id, error = %err, "could not check skipped ids; the message will come back");
            Outcome::Retry
        }
    }
}

/// Forwards the message to the dead-letter queue with its reason and answers `done`, or asks
/// for the message again when the dead-letter queue cannot take it.
async fn dead_letter(
    dead_letters: &dyn DeadLetters,
    message_id: &str,
    body: &str,
    reason: &str,
    done: Outcome,
) -> Outcome {
    tracing::error!(message_id, reason, "forwarding the message to the dead-letter queue");
    match dead_letters.forward(message_id, body, reason).await {
        Ok(()) => done,
        Err(err) => {
            tracing::error!(message_id, error = %err, "dead-letter queue unavailable; the message will come back");
            Outcome::Retry
        }
    }
}

/// Names the metrics that were not written because their id belongs to another user.
fn taken_reason(envelope: &Envelope, taken: &PerKind<Vec<uuid::Uuid>>) -> String {
    let ids = envelope.metrics.ids();
    let located: Vec<String> = ids
        .iter()
        .flat_map(|(kind, ids)| {
            let taken = &taken[kind];
            ids.iter()
                .enumerate()
                .filter(|(_, id)| id.is_some_and(|id| taken.contains(&id)))
                .map(move |(i, id)| format!("{}[{i}].id {}", kind.plural(), id.unwrap_or_default()))
        })
        .collect();
    format!(
        "not written: ids already used by another user of the organization ({}); the envelope's other metrics were written",
        located.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::batch::{Metrics, Source};
    use shared::domain::ids::{Caller, OrgId, UserId};
    use shared::fakes::queue::InMemoryDeadLetters;
    use shared::fakes::store::InMemoryStore;

    use super::*;

    const EVENT: &str = include_str!("../../../events/batch-worker.json");

    fn worker(store: InMemoryStore) -> (Worker, Arc<InMemoryStore>, Arc<InMemoryDeadLetters>) {
        let store = Arc::new(store);
        let dead_letters = Arc::new(InMemoryDeadLetters::default());
        (
            Worker {
                store: store.clone(),
                live: None,
                dead_letters: dead_letters.clone(),
                concurrency: 2,
                settings: Arc::new(shared::app::settings::Settings::new(
                    Arc::new(shared::fakes::settings::InMemorySettings::new()),
                    Default::default(),
                    std::time::Duration::ZERO,
                )),
                in_flight: Arc::new(InFlight::new(
                    Arc::new(shared::fakes::batch_slots::InMemoryBatchSlots::new()),
                    std::time::Duration::from_secs(300),
                )),
            },
            store,
            dead_letters,
        )
    }

    fn envelope(org: &str) -> String {
        let caller = Caller::member(OrgId::parse(org).unwrap(), UserId::parse("alice").unwrap());
        let body = json!({"command_executions": [{"command_name": "x", "execution_time_ms": 1, "status": "success"}]});
        Envelope::new(&caller, Source::Import, Metrics::from_request(&body, 20).unwrap())
            .to_message()
            .unwrap()
    }

    fn event(bodies: &[(&str, String)]) -> LambdaEvent<SqsEvent> {
        let mut event: SqsEvent = serde_json::from_str(EVENT).unwrap();
        let template = event.records[0].clone();
        event.records = bodies
            .iter()
            .map(|(id, body)| {
                let mut record = template.clone();
                record.message_id = Some((*id).to_owned());
                record.body = Some(body.clone());
                record
            })
            .collect();
        LambdaEvent::new(event, lambda_runtime::Context::default())
    }

    fn failed(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn the_fixture_is_written() {
        let (worker, store, _) = worker(InMemoryStore::new());
        let event = LambdaEvent::new(serde_json::from_str(EVENT).unwrap(), lambda_runtime::Context::default());
        let response = worker.handle(event).await.unwrap();
        assert!(failed(&response).is_empty());
        assert_eq!(store.command_executions(&OrgId::parse("demo").unwrap()).len(), 1);
        assert_eq!(store.agent_interactions(&OrgId::parse("demo").unwrap()).len(), 1);
        assert_eq!(store.productivity_metrics(&OrgId::parse("demo").unwrap()).len(), 1);
    }

    #[tokio::test]
    async fn a_poison_message_goes_to_the_dead_letters_alone() {
        let (worker, store, dead_letters) = worker(InMemoryStore::new());
        let response = worker
            .handle(event(&[
                ("m1", envelope("acme")),
                ("m2", "{\"version\":1}".into()),
                ("m3", envelope("globex")),
            ]))
            .await
            .unwrap();
        assert!(
            failed(&response).is_empty(),
            "the poison message is handled, not retried"
        );
        let letters = dead_letters.letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].0, "m2");
        assert!(letters[0].2.contains("batch_id"), "{}", letters[0].2);
        assert_eq!(store.command_executions(&OrgId::parse("acme").unwrap()).len(), 1);
        assert_eq!(store.command_executions(&OrgId::parse("globex").unwrap()).len(), 1);
    }

    #[tokio::test]
    async fn a_database_outage_reports_every_message() {
        let (worker, _, dead_letters) = worker(InMemoryStore::unavailable());
        let response = worker
            .handle(event(&[("m1", envelope("acme")), ("m2", envelope("acme"))]))
            .await
            .unwrap();
        assert_eq!(failed(&response), ["m1", "m2"]);
        assert!(dead_letters.letters().is_empty());
    }

    #[tokio::test]
    async fn a_redelivered_message_writes_nothing_twice() {
        let (worker, store, _) = worker(InMemoryStore::new());
        let message = envelope("acme");
        worker.handle(event(&[("m1", message.clone())])).await.unwrap();
        let outcomes = worker
            .process_all(event(&[("m1", message.clone()), ("m1", message)]).payload.records)
            .await;
        assert!(
            outcomes
                .iter()
                .all(|(_, o)| *o == Outcome::Written { new: 0, duplicates: 1 })
        );
        assert_eq!(store.command_executions(&OrgId::parse("acme").unwrap()).len(), 1);
    }

    #[tokio::test]
    async fn a_failure_without_a_message_id_fails_the_whole_event() {
        let (worker, _, _) = worker(InMemoryStore::unavailable());
        let mut event = event(&[("m1", envelope("acme"))]);
        event.payload.records[0].message_id = None;
        assert!(worker.handle(event).await.is_err());
    }
}
