//! The Claude Code hook use case: keep the event, then write what it means.

use crate::domain::hooks::HookEvent;
use crate::domain::ids::Caller;
use crate::domain::sessions::{SessionChange, SessionEnd};
use crate::ports::store::{MetricStore, StoreError};

/// Keeps the event, then writes what it means; every step is idempotent, so a repeated event
/// changes nothing and a partly failed one can simply be sent again.
pub async fn record(store: &dyn MetricStore, caller: &Caller, event: &HookEvent) -> Result<(), StoreError> {
    let receipt = store.keep_hook_event(caller, &event.kept()).await?;
    store
        .start_session(caller, &event.session_start(receipt.received_at))
        .await?;
    if let Some(command) = event.command_execution(&receipt) {
        store.insert_command_execution(caller, &command).await?;
    }
    if let Some(agent) = event.agent_interaction(&receipt) {
        store.insert_agent_interaction(caller, &agent).await?;
    }
    let activity = event.activity();
    let change = if event.ends_session() {
        let end = SessionEnd {
            session_id: event.session_key(),
            productivity_score: None,
            activity,
        };
        store.end_session(caller, &end).await?
    } else {
        store.update_session(caller, event.session_key(), &activity).await?
    };
    if !matches!(change, SessionChange::Changed(_)) {
        // Ended already, another user's, or reaped: the event itself is kept.
        tracing::debug!(event = %event.event_name, "hook event left its session unchanged");
    }
    Ok(())
}
