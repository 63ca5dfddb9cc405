//! An in-memory data lifecycle and retention settings, recording what they were asked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::ids::{OrgId, UserId};
use crate::domain::lifecycle::{ERASED, Erased, Expired, Expiring, Retention};
use crate::ports::lifecycle::{DataLifecycle, RetentionSettings, RetentionUnavailable};
use crate::ports::store::StoreError;

/// Organizations with a number of expired rows each (counted as `command_executions`); a pass
/// deletes them all unless its deadline has passed.
#[derive(Default)]
pub struct InMemoryLifecycle {
    pub organizations: Vec<OrgId>,
    /// Expired rows left per organization.
    pub expired: Mutex<HashMap<OrgId, u64>>,
    /// `(organization, retention)` of every `delete_expired` call, in order.
    pub passes: Mutex<Vec<(OrgId, Retention)>>,
    /// Every erasure asked for.
    pub erasures: Mutex<Vec<(OrgId, UserId)>>,
    /// Every call fails as a database outage.
    pub unavailable: bool,
}

impl InMemoryLifecycle {
    pub fn with(organizations: &[(&str, u64)]) -> Self {
        let parsed: Vec<(OrgId, u64)> = organizations
            .iter()
            .map(|(org, rows)| (OrgId::parse(org).expect("org id"), *rows))
            .collect();
        Self {
            organizations: parsed.iter().map(|(org, _)| org.clone()).collect(),
            expired: Mutex::new(parsed.into_iter().collect()),
            ..Self::default()
        }
    }

    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    fn outage(&self) -> Result<(), StoreError> {
        if self.unavailable {
            Err(StoreError::Unavailable("in-memory outage".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl DataLifecycle for InMemoryLifecycle {
    async fn organizations(&self) -> Result<Vec<OrgId>, StoreError> {
        self.outage()?;
        Ok(self.organizations.clone())
    }

    async fn delete_expired(
        &self,
        org: &OrgId,
        retention: &Retention,
        _now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Expired, StoreError> {
        self.outage()?;
        self.passes.lock().unwrap().push((org.clone(), *retention));
        let mut expired = Expired::default();
        if Instant::now() >= deadline {
            return Ok(expired);
        }
        let rows = self.expired.lock().unwrap().insert(org.clone(), 0).unwrap_or(0);
        if rows > 0 {
            expired.deleted.insert(Expiring::CommandExecutions, rows);
        }
        expired.complete = true;
        Ok(expired)
    }

    async fn erase_user(&self, org: &OrgId, user: &UserId) -> Result<Erased, StoreError> {
        self.outage()?;
        self.erasures.lock().unwrap().push((org.clone(), user.clone()));
        Ok(ERASED.iter().map(|table| (*table, 0)).collect())
    }
}

/// Retention settings per organization; an organization missing from the map cannot be read.
pub struct FixedRetention(pub HashMap<OrgId, Retention>);

#[async_trait]
impl RetentionSettings for FixedRetention {
    async fn retention(&self, org: &OrgId) -> Result<Retention, RetentionUnavailable> {
        self.0
            .get(org)
            .copied()
            .ok_or_else(|| RetentionUnavailable(format!("no settings for {org}")))
    }
}
