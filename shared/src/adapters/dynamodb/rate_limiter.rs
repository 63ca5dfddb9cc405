//! GCRA state in DynamoDB: one item per budget — the organization's ceiling (`pk = org#<id>`)
//! and each of its developers (`pk = user#<org>#<user>`), attribute `tat` in microseconds —
//! changed only by conditional `UpdateItem`s, so concurrent Lambda instances never admit more
//! than either limit.
//!
//! A request is counted against the developer's budget, then the organization's: a flooding
//! client is refused by its own budget without spending its colleagues' share. When this
//! container last saw the developer's bucket with room to spare (a tenth of it or more), both
//! updates go out at once (one round trip of latency); a developer's refusal then costs the
//! organization one token, and each container can be wrong that way at most once per tenth of a
//! window before it has seen the bucket again (under-admission, never over-admission).
//!
//! Per bucket, two conditional updates cover every case; which to try first is guessed from the
//! last `tat` this container saw, so the common case is one update:
//! - *active* bucket (`now <= tat <= max_tat`): `SET tat = tat + :inc`;
//! - *idle* bucket (no `tat`, or `tat < now`): `SET tat = :now + :inc`.
//!
//! A failed condition returns the old item (`ReturnValuesOnConditionCheckFailure = ALL_OLD`),
//! which either proves the request must be refused (no further call) or says which update to
//! try instead.
//!
//! Which budgets apply is the caller's business: the organization's settings (see
//! `adapters::dynamodb::settings`, in the same table under `pk = limits#<id>`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::{DynamoError, DynamoHttp, UpdateItem};
use crate::config::{ConfigError, RateLimitConfig};
use crate::domain::ids::{Caller, OrgId};
use crate::domain::ratelimit::{Budgets, Limits, RateStatus, Scope, gcra, now_us};
use crate::lock;
use crate::ports::rate_limit::{RateLimiter, StoreUnavailable};

/// Conditional updates tried before giving up under contention (then: refused, never admitted).
const MAX_ATTEMPTS: usize = 4;
/// Items outlive their last `tat` by this much, then DynamoDB's TTL removes them.
const EXPIRY_MARGIN_SECONDS: i64 = 3600;

pub struct DynamoRateLimiter {
    client: DynamoHttp,
    table: String,
    defaults: Budgets,
    timeout: Duration,
    /// The last `tat` seen per bucket key.
    last_tat: Mutex<HashMap<String, i64>>,
    round_trips: AtomicU64,
}

/// One GCRA bucket: its item's key and its limits.
struct Bucket {
    key: String,
    limits: Limits,
    scope: Scope,
}

/// Outcome of one conditional update.
enum Attempt {
    Admitted(i64),
    /// The condition failed; the stored `tat` (if any) says what to do next.
    Conflict(Option<i64>),
}

impl DynamoRateLimiter {
    /// Talks to the DynamoDB endpoint of `aws` (region, endpoint and credentials as the SDK finds them).
    pub fn new(aws: &aws_config::SdkConfig, config: &RateLimitConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            client: DynamoHttp::new(aws, &config.dynamodb)?,
            table: config.table_name.clone(),
            defaults: config.defaults,
            timeout: config.store_timeout,
            last_tat: Mutex::new(HashMap::new()),
            round_trips: AtomicU64::new(0),
        })
    }

    /// DynamoDB calls made so far (for the benchmark's round trips per request).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    pub fn state_key(org: &OrgId) -> String {
        format!("org#{org}")
    }

    /// A developer's bucket. `#` cannot occur in an organization id, so keys never collide.
    pub fn user_state_key(caller: &Caller) -> String {
        format!("user#{}#{}", caller.org, caller.user)
    }

    /// The organization's settings item (see `adapters::dynamodb::settings`).
    pub fn override_key(org: &OrgId) -> String {
        format!("limits#{org}")
    }

    async fn timed<F: Future>(&self, call: F) -> Result<F::Output, StoreUnavailable> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreUnavailable(format!("no answer within {:?}", self.timeout)))
    }

    /// Active bucket: advance `tat` by one interval if that stays within the tolerance.
    async fn advance(&self, key: &str, limits: &Limits, now: i64) -> Result<Attempt, StoreUnavailable> {
        let request = UpdateItem {
            table_name: &self.table,
            key: json!({"pk": {"S": key}}),
            update_expression: "SET tat = tat + :inc, expires_at = :exp",
            condition_expression: "tat BETWEEN :now AND :max_tat",
            expression_attribute_values: json!({
                ":inc": number(limits.interval_us()),
                ":now": number(now),
                ":max_tat": number(gcra::max_tat(limits, now)),
                ":exp": number(expiry(limits, now)),
            }),
            return_values: Some("UPDATED_NEW"),
            expression_attribute_names: None,
            return_values_on_condition_check_failure: "ALL_OLD",
        };
        match self.timed(self.client.call(&request)).await? {
            Ok(output) => output
                .get("Attributes")
                .and_then(|attributes| number_of(attributes, "tat"))
                .map(Attempt::Admitted)
                .ok_or_else(|| StoreUnavailable("update returned no tat".into())),
            Err(err) => conflict_or_unavailable(err),
        }
    }

    /// Idle (or new) bucket: restart `tat` from now.
    async fn restart(&self, key: &str, limits: &Limits, now: i64) -> Result<Attempt, StoreUnavailable> {
        let new_tat = now + limits.interval_us();
        let request = UpdateItem {
            table_name: &self.table,
            key: json!({"pk": {"S": key}}),
            update_expression: "SET tat = :new_tat, expires_at = :exp",
            condition_expression: "attribute_not_exists(tat) OR tat < :now",
            expression_attribute_values: json!({
                ":new_tat": number(new_tat),
                ":now": number(now),
                ":exp": number(expiry(limits, now)),
            }),
            return_values: None,
            expression_attribute_names: None,
            return_values_on_condition_check_failure: "ALL_OLD",
        };
        match self.timed(self.client.call(&request)).await? {
            Ok(_) => Ok(Attempt::Admitted(new_tat)),
            Err(err) => conflict_or_unavailable(err),
        }
    }

    fn remember(&self, key: &str, tat: i64) {
        lock(&self.last_tat).insert(key.to_owned(), tat);
    }

    /// Whether this container last saw `bucket` with at least a tenth of it left.
    fn has_room(&self, bucket: &Bucket, now: i64) -> bool {
        lock(&self.last_tat)
            .get(&bucket.key)
            .is_some_and(|&tat| gcra::max_tat(&bucket.limits, now) - tat.max(now) >= bucket.limits.tolerance_us() / 10)
    }

    /// Counts one request against one bucket.
    async fn take(&self, bucket: &Bucket, now: i64) -> Result<RateStatus, StoreUnavailable> {
        let Bucket { key, limits, scope } = bucket;
        // A bucket's stored `tat` never decreases (`restart` only replaces a past one), so one
        // this container saw beyond `max_tat` proves the refusal without a call: a flooding
        // client costs no DynamoDB write, and cannot throttle its item into the outage policy.
        let seen = lock(&self.last_tat).get(key).copied();
        if let Some(tat) = seen.filter(|&tat| tat > gcra::max_tat(limits, now)) {
            return Ok(gcra::denied_status(limits, tat, now).of(*scope));
        }
        let mut active = lock(&self.last_tat).get(key).is_some_and(|&tat| tat >= now);
        for _ in 0..MAX_ATTEMPTS {
            let attempt = if active {
                self.advance(key, limits, now).await?
            } else {
                self.restart(key, limits, now).await?
            };
            let stored = match attempt {
                Attempt::Admitted(new_tat) => {
                    self.remember(key, new_tat);
                    return Ok(gcra::admitted_status(limits, new_tat, now).of(*scope));
                }
                Attempt::Conflict(stored) => stored,
            };
            if let Some(tat) = stored {
                self.remember(key, tat);
            }
            match gcra::decide(limits, stored, now) {
                gcra::Verdict::Deny => {
                    return Ok(gcra::denied_status(limits, stored.unwrap_or(now), now).of(*scope));
                }
                gcra::Verdict::Admit { .. } => active = stored.is_some_and(|tat| tat >= now),
            }
        }
        // Other instances kept changing the item under us: refuse rather than risk over-admitting.
        tracing::warn!(bucket = %key, "rate limit contention; refusing this request");
        Ok(gcra::denied_status(limits, now + limits.tolerance_us(), now).of(*scope))
    }
}

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn check_within(&self, caller: &Caller, budgets: &Budgets) -> Result<RateStatus, StoreUnavailable> {
        let now = now_us();
        let user = Bucket {
            key: Self::user_state_key(caller),
            limits: budgets.user,
            scope: Scope::User,
        };
        let organization = Bucket {
            key: Self::state_key(&caller.org),
            limits: budgets.organization,
            scope: Scope::Organization,
        };
        if self.has_room(&user, now) {
            let (user, organization) = tokio::join!(self.take(&user, now), self.take(&organization, now));
            // The developer's refusal stands even if the organization's bucket could not be read:
            // the outage policy must never admit what a budget refused.
            let user = user?;
            if !user.admitted() {
                return Ok(user);
            }
            return Ok(RateStatus::binding(user, organization?));
        }
        let user = self.take(&user, now).await?;
        if !user.admitted() {
            return Ok(user);
        }
        Ok(RateStatus::binding(user, self.take(&organization, now).await?))
    }

    fn default_budgets(&self) -> Budgets {
        self.defaults
    }
}

fn conflict_or_unavailable(err: DynamoError) -> Result<Attempt, StoreUnavailable> {
    match err {
        DynamoError::ConditionFailed { item } => Ok(Attempt::Conflict(item.as_ref().and_then(|i| number_of(i, "tat")))),
        other => Err(unavailable(other)),
    }
}

fn unavailable(err: DynamoError) -> StoreUnavailable {
    StoreUnavailable(match err {
        DynamoError::ConditionFailed { .. } => "unexpected condition failure".into(),
        DynamoError::Failed(detail) | DynamoError::Retryable(detail) => detail,
    })
}

/// A numeric attribute (`{"N": "123"}`) of an item.
fn number_of(item: &Value, name: &str) -> Option<i64> {
    item.get(name)?.get("N")?.as_str()?.parse().ok()
}

fn number(n: i64) -> Value {
    json!({ "N": n.to_string() })
}

/// Epoch seconds after which the item may be deleted: the bucket is full again long before.
fn expiry(limits: &Limits, now: i64) -> i64 {
    (now + limits.tolerance_us()) / 1_000_000 + EXPIRY_MARGIN_SECONDS
}
