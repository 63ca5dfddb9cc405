use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::ids::Caller;
use crate::domain::ratelimit::{Budgets, Limits, RateStatus, Scope, gcra};
use crate::ports::rate_limit::{RateLimiter, StoreUnavailable};

/// A rate limiter that keeps its state in this process; for unit tests of handlers. Each
/// developer's budget is asked before the organization's, as the DynamoDB limiter does; the
/// stage's developer budget is unlimited in practice. It takes no leases (one process needs
/// none): the rate-limit contract (`fakes::rate_limit_contract`) holds the cases where the
/// DynamoDB limiter's leases change nothing a caller sees.
pub struct InMemoryRateLimiter {
    defaults: Limits,
    tats: Mutex<HashMap<String, i64>>,
    unavailable: bool,
}

impl InMemoryRateLimiter {
    pub fn new(defaults: Limits) -> Self {
        Self {
            defaults,
            tats: Mutex::new(HashMap::new()),
            unavailable: false,
        }
    }

    /// A limiter whose store is down: every check fails.
    pub fn unavailable(defaults: Limits) -> Self {
        Self {
            unavailable: true,
            ..Self::new(defaults)
        }
    }
}

#[async_trait]
impl RateLimiter for InMemoryRateLimiter {
    async fn check_at(&self, caller: &Caller, budgets: &Budgets, now: i64) -> Result<RateStatus, StoreUnavailable> {
        if self.unavailable {
            return Err(StoreUnavailable("in-memory limiter set to unavailable".into()));
        }
        let limits = &budgets.organization;
        let mut tats = self.tats.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut take = |key: String, limits: &Limits| {
            let (new_tat, status) = gcra::apply(limits, tats.get(&key).copied(), now);
            if let Some(tat) = new_tat {
                tats.insert(key, tat);
            }
            status
        };
        let user = take(format!("user#{}#{}", caller.org, caller.user), &budgets.user);
        if !user.admitted() {
            return Ok(user.of(Scope::User));
        }
        let organization = take(format!("org#{}", caller.org), limits);
        Ok(RateStatus::binding(user, organization))
    }

    fn default_budgets(&self) -> Budgets {
        Budgets {
            organization: self.defaults,
            user: Limits {
                max_requests: 1_000_000,
                window_ms: self.defaults.window_ms,
                burst_allowance: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_limiter_keeps_the_rate_limit_contract() {
        let limiter = InMemoryRateLimiter::new(Limits {
            max_requests: 1000,
            window_ms: 60_000,
            burst_allowance: 0,
        });
        crate::fakes::rate_limit_contract::every_case(&limiter, "fake").await;
    }
}
