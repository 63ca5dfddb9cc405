//! GCRA state in DynamoDB: one item per organization (`pk = org#<id>`, attribute `tat` in
//! microseconds), changed only by conditional `UpdateItem`s, so concurrent Lambda instances never
//! admit more than the limit.
//!
//! Two conditional updates cover every case; which to try first is guessed from the last `tat`
//! this container saw, so the common case is one round trip:
//! - *active* bucket (`now <= tat <= max_tat`): `SET tat = tat + :inc`;
//! - *idle* bucket (no `tat`, or `tat < now`): `SET tat = :now + :inc`.
//!
//! A failed condition returns the old item (`ReturnValuesOnConditionCheckFailure = ALL_OLD`),
//! which either proves the request must be refused (no further call) or says which update to
//! try instead.
//!
//! Per-organization overrides live in the same table under `pk = limits#<id>` with the numeric
//! attributes `max_requests`, `window_ms`, `burst_allowance` and `batch_size`; each container
//! caches them for `RATE_LIMIT_OVERRIDE_TTL_MS`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::{DynamoError, DynamoHttp, GetItem, UpdateItem};
use crate::config::{ConfigError, RateLimitConfig};
use crate::domain::ids::OrgId;
use crate::domain::ratelimit::{Limits, OrgSettings, RateStatus, gcra, now_us};
use crate::lock;
use crate::ports::rate_limit::{RateLimiter, StoreUnavailable};

/// Conditional updates tried before giving up under contention (then: refused, never admitted).
const MAX_ATTEMPTS: usize = 4;
/// Items outlive their last `tat` by this much, then DynamoDB's TTL removes them.
const EXPIRY_MARGIN_SECONDS: i64 = 3600;

pub struct DynamoRateLimiter {
    client: DynamoHttp,
    table: String,
    defaults: Limits,
    override_ttl: Duration,
    timeout: Duration,
    overrides: Mutex<HashMap<OrgId, (Instant, OrgSettings)>>,
    last_tat: Mutex<HashMap<OrgId, i64>>,
    round_trips: AtomicU64,
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

    pub fn override_key(org: &OrgId) -> String {
        format!("limits#{org}")
    }

    async fn limits_for(&self, org: &OrgId) -> Result<Limits, StoreUnavailable> {
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
    async fn advance(&self, org: &OrgId, limits: &Limits, now: i64) -> Result<Attempt, StoreUnavailable> {
        let request = UpdateItem {
            table_name: &self.table,
            key: json!({"pk": {"S": Self::state_key(org)}}),
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
    async fn restart(&self, org: &OrgId, limits: &Limits, now: i64) -> Result<Attempt, StoreUnavailable> {
        let new_tat = now + limits.interval_us();
        let request = UpdateItem {
            table_name: &self.table,
            key: json!({"pk": {"S": Self::state_key(org)}}),
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

    fn remember(&self, org: &OrgId, tat: i64) {
        lock(&self.last_tat).insert(org.clone(), tat);
    }
}

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn check(&self, org: &OrgId) -> Result<RateStatus, StoreUnavailable> {
        let limits = self.limits_for(org).await?;
        let now = now_us();
        let mut active = lock(&self.last_tat).get(org).is_some_and(|&tat| tat >= now);
        for _ in 0..MAX_ATTEMPTS {
            let attempt = if active {
                self.advance(org, &limits, now).await?
            } else {
                self.restart(org, &limits, now).await?
            };
            let stored = match attempt {
                Attempt::Admitted(new_tat) => {
                    self.remember(org, new_tat);
                    return Ok(gcra::admitted_status(&limits, new_tat, now));
                }
                Attempt::Conflict(stored) => stored,
            };
            if let Some(tat) = stored {
                self.remember(org, tat);
            }
            match gcra::decide(&limits, stored, now) {
                gcra::Verdict::Deny => {
                    return Ok(gcra::denied_status(&limits, stored.unwrap_or(now), now));
                }
                gcra::Verdict::Admit { .. } => active = stored.is_some_and(|tat| tat >= now),
            }
        }
        // Other instances kept changing the item under us: refuse rather than risk over-admitting.
        tracing::warn!(org = %org, "rate limit contention; refusing this request");
        Ok(gcra::denied_status(&limits, now + limits.tolerance_us(), now))
    }

    fn default_limits(&self) -> Limits {
        self.defaults
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
fn parse_override(item: &Value, defaults: Limits) -> Result<OrgSettings, String> {
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
    let limits = Limits {
        max_requests: number("max_requests")?.unwrap_or(defaults.max_requests),
        window_ms: number("window_ms")?.unwrap_or(defaults.window_ms),
        burst_allowance: number("burst_allowance")?.unwrap_or(defaults.burst_allowance),
    };
    limits.check()?;
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

    const DEFAULTS: Limits = Limits {
        max_requests: 1000,
        window_ms: 60_000,
        burst_allowance: 100,
    };

    fn n(value: &str) -> Value {
        json!({ "N": value })
    }

    #[test]
    fn a_valid_override_replaces_only_what_it_names() {
        let item = json!({"max_requests": n("50"), "batch_size": n("1000"), "hook_content": {"S": "redacted"}});
        let settings = parse_override(&item, DEFAULTS).unwrap();
        assert_eq!(settings.limits.max_requests, 50);
        assert_eq!(settings.limits.window_ms, 60_000);
        assert_eq!(settings.batch_size, Some(1000));
        assert_eq!(settings.hook_content, Some(crate::domain::hooks::HookContent::Redacted));
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
            json!({"batch_size": n("0")}),
            json!({"hook_content": {"S": "everything"}}),
        ] {
            assert!(parse_override(&item, DEFAULTS).is_err(), "{item}");
        }
    }
}
