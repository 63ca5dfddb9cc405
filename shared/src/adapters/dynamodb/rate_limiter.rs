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
//! Per-organization overrides live in the same table under `pk = limits#<id>` with the numeric
//! attributes `max_requests`, `window_ms`, `burst_allowance` (the organization's ceiling),
//! `user_max_requests`, `user_burst_allowance` (each developer's budget, same window) and
//! `batch_size`; each container caches them for `RATE_LIMIT_OVERRIDE_TTL_MS`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::{DynamoError, DynamoHttp, GetItem, UpdateItem};
use crate::config::{ConfigError, RateLimitConfig};
use crate::domain::ids::{Caller, OrgId};
use crate::domain::ratelimit::{Budgets, Limits, OrgSettings, RateStatus, Scope, gcra, now_us};
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
    override_ttl: Duration,
    timeout: Duration,
    overrides: Mutex<HashMap<OrgId, (Instant, OrgSettings)>>,
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
            override_ttl: config.override_ttl,
            timeout: config.store_timeout,
            overrides: Mutex::new(HashMap::new()),
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

    pub fn override_key(org: &OrgId) -> String {
        format!("limits#{org}")
    }

    async fn limits_for(&self, org: &OrgId) -> Result<Budgets, StoreUnavailable> {
        if let Some((read_at, settings)) = lock(&self.overrides).get(org)
            && read_at.elapsed() < self.override_ttl
        {
            return Ok(settings.limits);
        }
        let settings = self.read_override(org).await?;
        lock(&self.overrides).insert(org.clone(), (Instant::now(), settings));
        Ok(settings.limits)
    }

    /// The organization's override item, or the defaults when it has none (or a broken one).
    async fn read_override(&self, org: &OrgId) -> Result<OrgSettings, StoreUnavailable> {
        let defaults = OrgSettings {
            limits: self.defaults,
            batch_size: None,
            hook_content: None,
        };
        let request = GetItem {
            table_name: &self.table,
            key: json!({"pk": {"S": Self::override_key(org)}}),
            consistent_read: true,
        };
        let output = match self.timed(self.client.call(&request)).await? {
            Ok(output) => output,
            Err(err) => return Err(unavailable(err)),
        };
        let Some(item) = output.get("Item") else {
            return Ok(defaults);
        };
        match parse_override(item, self.defaults) {
            Ok(settings) => Ok(settings),
            Err(problem) => {
                tracing::error!(org = %org, problem, "ignoring invalid rate-limit override");
                Ok(defaults)
            }
        }
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
    async fn check(&self, caller: &Caller) -> Result<RateStatus, StoreUnavailable> {
        let budgets = self.limits_for(&caller.org).await?;
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

    fn default_limits(&self) -> Limits {
        self.defaults.organization
    }

    fn batch_size(&self, org: &OrgId) -> Option<u64> {
        lock(&self.overrides).get(org).and_then(|(_, s)| s.batch_size)
    }

    /// Only a fresh override counts: while DynamoDB cannot be read, an organization gets the
    /// stage's default (privacy first), not a setting it may have changed since.
    fn hook_content(&self, org: &OrgId) -> Option<crate::domain::hooks::HookContent> {
        lock(&self.overrides)
            .get(org)
            .filter(|(read_at, _)| read_at.elapsed() < self.override_ttl)
            .and_then(|(_, s)| s.hook_content)
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

/// An override item's settings over `defaults`: every attribute present must be valid (a whole
/// number in range, a known mode) and the limits' arithmetic must stay in range, or the whole
/// override is refused with the reason.
fn parse_override(item: &Value, defaults: Budgets) -> Result<OrgSettings, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match item.get(name) {
            None => Ok(None),
            Some(value) => value
                .get("N")
                .and_then(Value::as_str)
                .and_then(|n| n.parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| format!("{name} must be a whole number from 0 to {}", u64::MAX)),
        }
    };
    let organization = Limits {
        max_requests: number("max_requests")?.unwrap_or(defaults.organization.max_requests),
        window_ms: number("window_ms")?.unwrap_or(defaults.organization.window_ms),
        burst_allowance: number("burst_allowance")?.unwrap_or(defaults.organization.burst_allowance),
    };
    organization.check()?;
    let user = Limits {
        max_requests: number("user_max_requests")?.unwrap_or(defaults.user.max_requests),
        window_ms: organization.window_ms,
        burst_allowance: number("user_burst_allowance")?.unwrap_or(defaults.user.burst_allowance),
    };
    user.check().map_err(|problem| format!("user budget: {problem}"))?;
    let limits = Budgets { organization, user };
    // One envelope carries at most this many: a larger override would be answered 202 and then
    // refused by the worker.
    let most = crate::domain::batch::MAX_ENVELOPE_METRICS as u64;
    let batch_size = match number("batch_size")? {
        Some(n) if !(1..=most).contains(&n) => return Err(format!("batch_size must be from 1 to {most}")),
        other => other,
    };
    let hook_content = match item.get("hook_content") {
        None => None,
        Some(value) => Some(
            value
                .get("S")
                .and_then(Value::as_str)
                .and_then(|raw| raw.parse().ok())
                .ok_or("hook_content must be \"metrics\" or \"redacted\"")?,
        ),
    };
    Ok(OrgSettings {
        limits,
        batch_size,
        hook_content,
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

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Budgets = Budgets {
        organization: Limits {
            max_requests: 1000,
            window_ms: 60_000,
            burst_allowance: 100,
        },
        user: Limits {
            max_requests: 600,
            window_ms: 60_000,
            burst_allowance: 0,
        },
    };

    fn n(value: &str) -> Value {
        json!({ "N": value })
    }

    #[test]
    fn a_valid_override_replaces_only_what_it_names() {
        let item = json!({"max_requests": n("50"), "batch_size": n("1000"), "hook_content": {"S": "redacted"}});
        let settings = parse_override(&item, DEFAULTS).unwrap();
        assert_eq!(settings.limits.organization.max_requests, 50);
        assert_eq!(settings.limits.organization.window_ms, 60_000);
        assert_eq!(settings.limits.user, DEFAULTS.user);
        assert_eq!(settings.batch_size, Some(1000));
        assert_eq!(settings.hook_content, Some(crate::domain::hooks::HookContent::Redacted));
        let item = json!({"window_ms": n("1000"), "user_max_requests": n("5"), "user_burst_allowance": n("2")});
        let settings = parse_override(&item, DEFAULTS).unwrap();
        assert_eq!(settings.limits.organization.max_requests, 1000);
        assert_eq!(
            settings.limits.user,
            Limits {
                max_requests: 5,
                window_ms: 1000,
                burst_allowance: 2
            }
        );
    }

    #[test]
    fn overrides_that_would_overflow_lock_out_or_be_refused_later_are_refused_whole() {
        for item in [
            json!({"max_requests": n("1"), "window_ms": n("31536000000"), "burst_allowance": n("18446744073709551615")}),
            json!({"burst_allowance": n("18446744073709551615")}),
            json!({"max_requests": n("1"), "window_ms": n("31536000000"), "burst_allowance": n("2")}),
            json!({"max_requests": n("-1")}),
            json!({"max_requests": n("0")}),
            json!({"window_ms": n("1e3")}),
            json!({"window_ms": {"S": "60000"}}),
            json!({"batch_size": n("1001")}),
            json!({"user_max_requests": n("0")}),
            json!({"user_max_requests": n("1"), "window_ms": n("31536000000"), "user_burst_allowance": n("2")}),
            json!({"batch_size": n("0")}),
            json!({"hook_content": {"S": "everything"}}),
        ] {
            assert!(parse_override(&item, DEFAULTS).is_err(), "{item}");
        }
    }
}
