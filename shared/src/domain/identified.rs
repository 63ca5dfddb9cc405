//! Records whose id is assigned. A client may send its own `id` (so a retry writes nothing
//! twice) or none; once the service has kept it or assigned one, the id is required by type:
//! stores take an [`Identified`] record and never meet one without an id.

use std::ops::Deref;

use uuid::Uuid;

/// A record with its assigned id (also set in the record itself, as it is serialised).
#[derive(Debug, Clone, PartialEq)]
pub struct Identified<T> {
    pub id: Uuid,
    pub record: T,
}

impl<T> Deref for Identified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.record
    }
}

/// A record that may carry a client id.
pub trait Identify: Sized {
    /// Where the record keeps its optional id.
    fn id_slot(&mut self) -> &mut Option<Uuid>;

    /// Keeps the client's id, or assigns a time-ordered one.
    fn identified(mut self) -> Identified<Self> {
        let id = *self.id_slot().get_or_insert_with(Uuid::now_v7);
        Identified { id, record: self }
    }

    /// The record with its id set (batches serialise ids inside the records).
    fn with_id(self) -> Self {
        self.identified().record
    }
}

/// `Identify` for record types with an `id: Option<Uuid>` field.
macro_rules! identify_by_field {
    ($($ty:ty),* $(,)?) => {$(
        impl Identify for $ty {
            fn id_slot(&mut self) -> &mut Option<Uuid> {
                &mut self.id
            }
        }
    )*};
}

identify_by_field!(
    crate::domain::metrics::CommandExecution,
    crate::domain::metrics::AgentInteraction,
    crate::domain::metrics::ProductivityMetric,
    crate::domain::sessions::SessionStart,
    crate::domain::sessions::SessionImport,
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::metrics::CommandExecution;

    #[test]
    fn a_client_id_is_kept_and_a_missing_one_assigned_and_then_required() {
        let body = json!({"command_name": "x", "execution_time_ms": 1, "status": "success"});
        let assigned = CommandExecution::from_json(&body, "").unwrap().identified();
        assert_eq!(assigned.record.id, Some(assigned.id));
        let mut with_client_id = body.clone();
        let id = Uuid::new_v4();
        with_client_id["id"] = json!(id);
        assert_eq!(
            CommandExecution::from_json(&with_client_id, "")
                .unwrap()
                .identified()
                .id,
            id
        );
    }
}
