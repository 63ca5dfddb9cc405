//! The live-update ports: where open connections are kept ([`Connections`]) and how a message
//! reaches one ([`Pusher`]), with the connection record they share.

use crate::domain::ids::{Caller, OrgId, Role, UserId};
use async_trait::async_trait;
use std::time::Duration;

/// API Gateway closes a WebSocket connection after two hours at most; the table's TTL
/// removes what a lost `$disconnect` left behind.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LiveError(String);

impl LiveError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An open WebSocket connection, bound to the organization of the token it opened with.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub org: OrgId,
    pub user: UserId,
    /// What the connection may see of other developers' updates.
    pub role: Role,
    /// Unix seconds after which the connection receives nothing and is closed: its token's
    /// `exp`, or two hours after it opened if that comes first (also the table's TTL).
    pub expires_at: i64,
}

impl Connection {
    /// A connection opened now, with no token expiry to honour (two hours).
    pub fn opened_now(id: &str, caller: &Caller) -> Self {
        Self::opened(id, caller, None)
    }

    /// A connection opened now by a token expiring at `token_expires_at` (Unix seconds).
    pub fn opened(id: &str, caller: &Caller, token_expires_at: Option<i64>) -> Self {
        let longest = chrono::Utc::now().timestamp() + CONNECTION_LIFETIME.as_secs() as i64;
        Self {
            id: id.to_owned(),
            org: caller.org.clone(),
            user: caller.user.clone(),
            role: caller.role,
            expires_at: token_expires_at.map_or(longest, |exp| exp.min(longest)),
        }
    }
}

/// A connection as the organization index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub expires_at: i64,
    /// Whose connection it is (`None` for a record written before roles: treated as a member
    /// who sees no one's updates whole).
    pub user: Option<String>,
    pub role: Role,
}

impl Listed {
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

/// Where open connections are kept.
#[async_trait]
pub trait Connections: Send + Sync {
    async fn add(&self, connection: &Connection) -> Result<(), LiveError>;
    async fn remove(&self, connection_id: &str) -> Result<(), LiveError>;
    /// The organization's connections, expired ones included (TTL deletes them only
    /// eventually): the caller skips them, and a delivery closes them.
    async fn of_org(&self, org: &OrgId) -> Result<Vec<Listed>, LiveError>;

    /// How many of the organization's connections have not expired, and how many of them are
    /// `user`'s (the two caps of a `$connect`).
    async fn open_count(&self, org: &OrgId, user: &UserId) -> Result<OpenConnections, LiveError> {
        let now = chrono::Utc::now().timestamp();
        let listed = self.of_org(org).await?;
        let open: Vec<&Listed> = listed.iter().filter(|c| !c.expired(now)).collect();
        Ok(OpenConnections {
            organization: open.len(),
            user: open.iter().filter(|c| c.user.as_deref() == Some(user.as_str())).count(),
        })
    }
}

/// Unexpired connections of an organization, and of one of its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenConnections {
    pub organization: usize,
    pub user: usize,
}

/// What became of one message sent to one connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Delivered,
    /// The connection is closed (API Gateway's `GoneException`, HTTP 410).
    Gone,
    Failed(String),
}

/// Sends a message to one connection, or closes it.
#[async_trait]
pub trait Pusher: Send + Sync {
    async fn post(&self, connection_id: &str, message: &str) -> Delivery;
    /// Closes the connection (`DeleteConnection`); [`Delivery::Gone`] when it was closed already.
    async fn close(&self, connection_id: &str) -> Delivery;
}
