//! Rate limiting with the generic cell rate algorithm (GCRA), in two budgets: each developer
//! (user) of an organization has one, and the organization has a ceiling over all of them. A
//! request is admitted only when both admit it; the user's budget is asked first, so a request
//! its own budget refuses never spends the organization's (one runaway client cannot use up its
//! colleagues' share).
//!
//! A budget may send `max_requests` per `window_ms` on average. An idle budget may send up to
//! `max_requests + burst_allowance` at once; after that, one request is admitted every
//! `window_ms / max_requests`. The only state is the *theoretical arrival time* (`tat`): the time
//! at which the bucket would be full again.
//!
//! [`gcra`] holds the arithmetic and [`lease`] what one container knows of a bucket (the tokens
//! it took ahead, and how many to take next); `DynamoRateLimiter` keeps each `tat` in DynamoDB
//! with conditional updates, never over-admitting across any number of Lambda instances;
//! `InMemoryRateLimiter` is for tests.
//!
//! This module holds the arithmetic and the values; the limiters are adapters
//! (`adapters::dynamodb`) and fakes.

pub mod gcra;
pub mod lease;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An organization's limits: the defaults, or an override stored for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_requests: u64,
    pub window_ms: u64,
    pub burst_allowance: u64,
}

/// Largest bucket we accept; keeps every product below in range.
const MAX_CAPACITY: u64 = 1_000_000_000;

/// Longest window we accept: a year.
const MAX_WINDOW_MS: u64 = 365 * 24 * 3_600_000;

/// Longest time a full bucket may take to refill (`tolerance_us`): a year. Larger values would
/// push `tat` arithmetic out of range or lock an organization out for good.
const MAX_TOLERANCE_US: u64 = MAX_WINDOW_MS * 1000;

impl Limits {
    /// Refuses limits whose arithmetic could overflow or that could never be met; every
    /// product below is computed checked here, so the other methods cannot overflow.
    pub fn check(&self) -> Result<(), String> {
        if self.max_requests == 0 || self.window_ms == 0 {
            return Err("max_requests and window_ms must be at least 1".into());
        }
        let capacity = self.max_requests.checked_add(self.burst_allowance);
        if capacity.is_none_or(|c| c > MAX_CAPACITY) || self.window_ms > MAX_WINDOW_MS {
            return Err(format!(
                "limits are too large: max_requests + burst_allowance at most {MAX_CAPACITY}, window_ms at most {MAX_WINDOW_MS}"
            ));
        }
        if self.window_ms * 1000 < self.max_requests {
            return Err("more than one request per microsecond is not supported".into());
        }
        let refill_us = (self.window_ms * 1000)
            .div_ceil(self.max_requests)
            .checked_mul(self.capacity());
        if refill_us.is_none_or(|us| us > MAX_TOLERANCE_US) {
            return Err(
                "an empty bucket would take more than a year to refill: lower burst_allowance or window_ms".into(),
            );
        }
        Ok(())
    }

    /// Requests an idle organization may send at once.
    pub fn capacity(&self) -> u64 {
        self.max_requests + self.burst_allowance
    }

    /// Microseconds between two requests at the sustained rate, rounded up so that rounding
    /// never admits more than the limit.
    pub fn interval_us(&self) -> i64 {
        (self.window_ms * 1000).div_ceil(self.max_requests) as i64
    }

    /// How far `tat` may run ahead of now: the bucket's size in time.
    pub fn tolerance_us(&self) -> i64 {
        self.interval_us() * self.capacity() as i64
    }
}

/// Which budget a [`RateStatus`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One developer's budget within the organization.
    User,
    /// The organization's ceiling over all its developers.
    Organization,
    /// The organization's batches accepted and not yet written (`performance.concurrent_requests`).
    BatchesInFlight,
}

impl crate::domain::validation::Choice for Scope {
    const ALL: &'static [(&'static str, Self)] = &[
        ("user", Scope::User),
        ("organization", Scope::Organization),
        ("batches_in_flight", Scope::BatchesInFlight),
    ];
}
crate::choice_serde!(Scope);

/// The two budgets every request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    pub organization: Limits,
    pub user: Limits,
}

/// What a response reports about the caller's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// The budget this status describes (see [`RateStatus::binding`]).
    pub scope: Scope,
    pub limit: u64,
    pub remaining: u64,
    /// When the bucket is full again (microseconds since the epoch).
    pub reset_at_us: i64,
    /// Set when the request was refused: how long until one would be admitted.
    pub retry_after_us: Option<i64>,
}

impl RateStatus {
    /// What we report when the store is unreachable and the policy admits anyway.
    pub fn unknown(limits: &Limits, now_us: i64) -> Self {
        Self {
            scope: Scope::Organization,
            limit: limits.capacity(),
            remaining: limits.capacity(),
            reset_at_us: now_us,
            retry_after_us: None,
        }
    }

    /// The same status, said of `scope`'s budget.
    pub fn of(self, scope: Scope) -> Self {
        Self { scope, ..self }
    }

    /// What the caller is told when both budgets were asked: a refusal if either refused (the
    /// user's first), else the budget with the fewer requests left.
    pub fn binding(user: RateStatus, organization: RateStatus) -> RateStatus {
        let user = user.of(Scope::User);
        let organization = organization.of(Scope::Organization);
        match (user.admitted(), organization.admitted()) {
            (false, _) => user,
            (true, false) => organization,
            (true, true) if user.remaining <= organization.remaining => user,
            (true, true) => organization,
        }
    }

    pub fn admitted(&self) -> bool {
        self.retry_after_us.is_none()
    }

    pub fn reset_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.reset_at_us).unwrap_or_default()
    }

    /// Seconds until the bucket is full, rounded up, as an epoch time for `X-RateLimit-Reset`.
    pub fn reset_epoch_seconds(&self) -> i64 {
        self.reset_at_us.div_euclid(1_000_000) + i64::from(self.reset_at_us.rem_euclid(1_000_000) > 0)
    }

    /// Whole seconds to wait, rounded up (never 0 for a refused request).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after_us.map(|us| (us.max(1) as u64).div_ceil(1_000_000))
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}
