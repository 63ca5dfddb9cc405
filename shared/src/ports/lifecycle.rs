//! The data lifecycle port: the organizations there are, deleting what their retention has
//! expired in bounded chunks, and erasing one user's data; and where an organization's
//! retention is read from.

use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::ids::{OrgId, UserId};
use crate::domain::lifecycle::{Erased, Expired, Retention};
use crate::ports::store::StoreError;

#[async_trait]
pub trait DataLifecycle: Send + Sync {
    /// Every registered organization.
    async fn organizations(&self) -> Result<Vec<OrgId>, StoreError>;

    /// Deletes the organization's rows older than `retention` allows at `now`, kind by kind,
    /// in chunks of a bounded number of rows (each its own short statement), until none is
    /// left or `deadline` has passed. Never deletes an active session.
    async fn delete_expired(
        &self,
        org: &OrgId,
        retention: &Retention,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Expired, StoreError>;

    /// Removes every row of `user` in the organization (metrics, sessions, hook events, OTLP
    /// data, their aggregates) in one transaction; other users' rows are untouched.
    async fn erase_user(&self, org: &OrgId, user: &UserId) -> Result<Erased, StoreError>;
}

/// An organization's retention could not be read: retention skips the organization rather
/// than delete by defaults it may have overridden.
#[derive(Debug, thiserror::Error)]
#[error("retention settings unavailable: {0}")]
pub struct RetentionUnavailable(pub String);

#[async_trait]
pub trait RetentionSettings: Send + Sync {
    async fn retention(&self, org: &OrgId) -> Result<Retention, RetentionUnavailable>;
}
