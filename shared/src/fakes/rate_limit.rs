use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::ids::{Caller, OrgId};
use crate::domain::ratelimit::{Limits, RateStatus, Scope, gcra, now_us};
use crate::ports::rate_limit::{RateLimiter, StoreUnavailable};

/// A rate limiter that keeps its state in this process; for unit tests of handlers. Each
/// developer's budget is `user_limits` (unlimited in practice unless set), asked before the
/// organization's, as the DynamoDB limiter does.
pub struct InMemoryRateLimiter {
    defaults: Limits,
    user_limits: Limits,
    overrides: HashMap<OrgId, Limits>,
    batch_sizes: HashMap<OrgId, u64>,
    hook_contents: HashMap<OrgId, crate::domain::hooks::HookContent>,
    tats: Mutex<HashMap<String, i64>>,
    unavailable: bool,
}

impl InMemoryRateLimiter {
    pub fn new(defaults: Limits) -> Self {
        Self {
            defaults,
            user_limits: Limits {
                max_requests: 1_000_000,
                window_ms: 1000,
                burst_allowance: 0,
            },
            overrides: HashMap::new(),
            batch_sizes: HashMap::new(),
            hook_contents: HashMap::new(),
            tats: Mutex::new(HashMap::new()),
            unavailable: false,
        }
    }

    pub fn with_override(mut self, org: OrgId, limits: Limits) -> Self {
        self.overrides.insert(org, limits);
        self
    }

    /// Each developer's budget.
    pub fn with_user_limits(mut self, limits: Limits) -> Self {
        self.user_limits = limits;
        self
    }

    pub fn with_batch_size(mut self, org: OrgId, batch_size: u64) -> Self {
        self.batch_sizes.insert(org, batch_size);
        self
    }

    pub fn with_hook_content(mut self, org: OrgId, mode: crate::domain::hooks::HookContent) -> Self {
        self.hook_contents.insert(org, mode);
        self
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
    async fn check(&self, caller: &Caller) -> Result<RateStatus, StoreUnavailable> {
        if self.unavailable {
            return Err(StoreUnavailable("in-memory limiter set to unavailable".into()));
        }
        let limits = self.overrides.get(&caller.org).unwrap_or(&self.defaults);
        let now = now_us();
        let mut tats = self.tats.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut take = |key: String, limits: &Limits| {
            let (new_tat, status) = gcra::apply(limits, tats.get(&key).copied(), now);
            if let Some(tat) = new_tat {
                tats.insert(key, tat);
            }
            status
        };
        let user = take(format!("user#{}#{}", caller.org, caller.user), &self.user_limits);
        if !user.admitted() {
            return Ok(user.of(Scope::User));
        }
        let organization = take(format!("org#{}", caller.org), limits);
        Ok(RateStatus::binding(user, organization))
    }

    fn default_limits(&self) -> Limits {
        self.defaults
    }

    fn batch_size(&self, org: &OrgId) -> Option<u64> {
        self.batch_sizes.get(org).copied()
    }

    fn hook_content(&self, org: &OrgId) -> Option<crate::domain::hooks::HookContent> {
        self.hook_contents.get(org).copied()
    }
}
