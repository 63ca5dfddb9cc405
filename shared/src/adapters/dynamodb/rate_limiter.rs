//! GCRA state in DynamoDB: one item per budget — the organization's ceiling (`pk = org#<id>`)
//! and each of its developers (`pk = user#<org>#<user>`), attribute `tat` in microseconds —
//! changed only by conditional `UpdateItem`s, so concurrent Lambda instances never admit more
//! than either limit.
//!
//! Requests are admitted from *leases* (`domain::ratelimit::lease`): one conditional update takes
//! several tokens of a bucket (advances its `tat` by as many intervals, if that stays within the
//! tolerance) and this container spends them locally for up to two seconds. Tokens are counted in
//! the item before they are spent, so no number of containers over-admits; a lease's size follows
//! this container's rate and shrinks to one token as the bucket nears its limit, so a quiet or
//! nearly spent budget is updated per request, exactly as without leases. In one container one
//! take at a time goes to a bucket's item; requests arriving meanwhile wait for it and spend from
//! the lease it brings (or see the refusal it proved).
//!
//! A request is counted against the developer's budget, then the organization's: a flooding
//! client is refused by its own budget without spending its colleagues' share. When both need a
//! take and this container last saw the developer's bucket with room to spare (a tenth of it or
//! more), both updates go out at once; a token one budget took for a request the other refused
//! goes back to this container's lease of it, not lost.
//!
//! Per bucket, three conditional updates cover every case; which to try first is guessed from
//! what this container last saw, so the common case is one update per take:
//! - *active* bucket (`now <= tat <= max_tat`): `SET tat = tat + :inc`;
//! - *idle* bucket (no `tat`, or `tat < now`): `SET tat = :now + :inc`;
//! - this container's own expired lease still the last take (`tat = :end`): `SET tat = :new_tat`,
//!   giving back its unspent tokens with the new take.
//!
//! A failed condition returns the old item (`ReturnValuesOnConditionCheckFailure = ALL_OLD`),
//! which either proves the request must be refused (no further call) or says which update to
//! try instead.
//!
//! Which budgets apply is the caller's business: the organization's settings (see
//! `adapters::dynamodb::settings`, in the same table under `pk = limits#<id>`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::{DynamoError, DynamoHttp, UpdateItem};
use crate::config::{ConfigError, RateLimitConfig};
use crate::domain::ids::{Caller, OrgId};
use crate::domain::ratelimit::lease::LeaseBook;
use crate::domain::ratelimit::{Budgets, Limits, RateStatus, Scope, gcra};
use crate::lock;
use crate::ports::rate_limit::{RateLimiter, StoreUnavailable};

/// Conditional updates tried before giving up under contention (then: refused, never admitted).
const MAX_ATTEMPTS: usize = 4;
/// Items outlive their last `tat` by this much, then DynamoDB's TTL removes them.
const EXPIRY_MARGIN_SECONDS: i64 = 3600;
/// Books kept before the forgettable ones are dropped (then again at twice what is left).
const PRUNE_FROM: usize = 1024;
/// Books kept at most: past it, even after pruning, all are dropped (only ever under-admits).
/// Each caller has a book and a container serves every organization's callers, so without
/// this bound made-up user ids would grow a container's memory until it failed (review).
const MAX_BOOKS: usize = 50_000;

/// The turns to take from each bucket, by key, and when to prune them next.
#[derive(Default)]
struct Turns {
    by_key: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    prune_at: usize,
}

impl Turns {
    /// The turn of `key`, after dropping the turns nobody holds or waits for if there are many
    /// (so what is kept is bounded by the requests in flight).
    fn of(&mut self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        if self.by_key.len() >= self.prune_at.max(PRUNE_FROM) && !self.by_key.contains_key(key) {
            self.by_key.retain(|_, turn| Arc::strong_count(turn) > 1);
            self.prune_at = 2 * self.by_key.len();
        }
        self.by_key.entry(key.to_owned()).or_default().clone()
    }
}

/// This container's books, by bucket key, and when to prune them next.
#[derive(Default)]
struct Books {
    by_key: HashMap<String, LeaseBook>,
    prune_at: usize,
}

impl Books {
    /// The book of `key`, after dropping forgettable books if there are many.
    fn of(&mut self, key: &str, now: i64) -> &mut LeaseBook {
        if self.by_key.len() >= self.prune_at.max(PRUNE_FROM) && !self.by_key.contains_key(key) {
            self.by_key.retain(|_, book| !book.forgettable(now));
            if self.by_key.len() >= MAX_BOOKS {
                tracing::warn!(
                    books = self.by_key.len(),
                    "rate-limit books over their bound; all dropped"
                );
                self.by_key.clear();
            }
            self.prune_at = 2 * self.by_key.len();
        }
        self.by_key.entry(key.to_owned()).or_default()
    }
}

pub struct DynamoRateLimiter {
    client: DynamoHttp,
    table: String,
    defaults: Budgets,
    timeout: Duration,
    /// What this container knows of each bucket: the last `tat` seen, and its lease.
    books: Mutex<Books>,
    /// One take at a time per bucket from this container.
    takers: Mutex<Turns>,
    round_trips: AtomicU64,
}

/// One GCRA bucket: its item's key and its limits.
struct Bucket {
    key: String,
    limits: Limits,
    scope: Scope,
}

/// One conditional update of a bucket's `tat`.
enum Step {
    /// Active bucket: take `n` tokens after the stored `tat`.
    Advance(u64),
    /// Idle or new bucket: take `n` tokens from now.
    Restart(u64),
    /// Nobody took since this container's expired lease ended at `end_tat`: set `new_tat`,
    /// which gives its unspent tokens back and takes `n`.
    Replace { n: u64, end_tat: i64, new_tat: i64 },
}

impl Step {
    /// The first update to try for a take of `n`, from what this container knows.
    fn first(book: &LeaseBook, limits: &Limits, now: i64, n: u64) -> Step {
        let replace = book.give_back(limits, now).and_then(|back| {
            back.new_tat(limits, now, n).map(|new_tat| Step::Replace {
                n,
                end_tat: back.end_tat,
                new_tat,
            })
        });
        replace.unwrap_or_else(|| Step::after(book.seen_tat(), now, n))
    }

    /// The update for a take of `n` from a bucket whose stored `tat` is `tat`.
    fn after(tat: Option<i64>, now: i64, n: u64) -> Step {
        if tat.is_some_and(|tat| tat >= now) {
            Step::Advance(n)
        } else {
            Step::Restart(n)
        }
    }

    /// The `tat` this update found, when its success says: an advance found what it added to,
    /// a replacement what it expected; an idle bucket's is not returned.
    fn found(&self, limits: &Limits, new_tat: i64) -> Option<i64> {
        match *self {
            Step::Advance(n) => Some(new_tat - limits.interval_us() * n as i64),
            Step::Restart(_) => None,
            Step::Replace { end_tat, .. } => Some(end_tat),
        }
    }

    fn tokens(&self) -> u64 {
        match *self {
            Step::Advance(n) | Step::Restart(n) | Step::Replace { n, .. } => n,
        }
    }
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
            books: Mutex::new(Books::default()),
            takers: Mutex::new(Turns::default()),
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

    /// Sends one conditional update of `key`'s `tat`.
    async fn update(&self, key: &str, limits: &Limits, now: i64, step: &Step) -> Result<Attempt, StoreUnavailable> {
        let inc = |n: u64| limits.interval_us() * n as i64;
        let exp = number(expiry(limits, now));
        let (update_expression, condition_expression, values, known_tat) = match *step {
            Step::Advance(n) => (
                "SET tat = tat + :inc, expires_at = :exp",
                "tat BETWEEN :now AND :max_tat",
                json!({
                    ":inc": number(inc(n)),
                    ":now": number(now),
                    ":max_tat": number(gcra::max_tat_for(limits, now, n)),
                    ":exp": exp,
                }),
                None,
            ),
            Step::Restart(n) => (
                "SET tat = :new_tat, expires_at = :exp",
                "attribute_not_exists(tat) OR tat < :now",
                json!({":new_tat": number(now + inc(n)), ":now": number(now), ":exp": exp}),
                Some(now + inc(n)),
            ),
            Step::Replace { end_tat, new_tat, .. } => (
                "SET tat = :new_tat, expires_at = :exp",
                "tat = :end",
                json!({":new_tat": number(new_tat), ":end": number(end_tat), ":exp": exp}),
                Some(new_tat),
            ),
        };
        let request = UpdateItem {
            table_name: &self.table,
            key: json!({"pk": {"S": key}}),
            update_expression,
            condition_expression,
            expression_attribute_values: values,
            return_values: known_tat.is_none().then_some("UPDATED_NEW"),
            expression_attribute_names: None,
            return_values_on_condition_check_failure: "ALL_OLD",
        };
        match self.timed(self.client.call(&request)).await? {
            Ok(output) => known_tat
                .or_else(|| {
                    output
                        .get("Attributes")
                        .and_then(|attributes| number_of(attributes, "tat"))
                })
                .map(Attempt::Admitted)
                .ok_or_else(|| StoreUnavailable("update returned no tat".into())),
            Err(err) => conflict_or_unavailable(err),
        }
    }

    /// Runs `f` on this container's book of `bucket`.
    fn with_book<T>(&self, bucket: &Bucket, now: i64, f: impl FnOnce(&mut LeaseBook) -> T) -> T {
        f(lock(&self.books).of(&bucket.key, now))
    }

    /// Spends a token of this container's live lease of `bucket`, if it has one.
    fn spend_local(&self, bucket: &Bucket, now: i64) -> Option<RateStatus> {
        let Bucket { limits, scope, .. } = bucket;
        self.with_book(bucket, now, |book| {
            book.spend(limits, now)
                .then(|| book.admitted_status(limits, now).of(*scope))
        })
    }

    /// Returns the token a request took of `bucket` when the other budget refused it.
    fn put_back(&self, bucket: &Bucket, now: i64) {
        self.with_book(bucket, now, |book| book.put_back(&bucket.limits, now));
    }

    /// This container's turn to take from `key` (one take at a time per bucket).
    fn taker(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.takers).of(key)
    }

    /// Counts one request against one bucket: from the lease another request just brought, or
    /// by a refusal already proven, or by taking a new lease from the item.
    async fn take(&self, bucket: &Bucket, now: i64) -> Result<RateStatus, StoreUnavailable> {
        let Bucket { key, limits, scope } = bucket;
        let taker = self.taker(key);
        // The take ahead of this one is a store call: waiting longer than one is an outage.
        let _turn = tokio::time::timeout(self.timeout, taker.lock())
            .await
            .map_err(|_| StoreUnavailable(format!("the take ahead had no answer within {:?}", self.timeout)))?;
        let first = self.with_book(bucket, now, |book| {
            if book.spend(limits, now) {
                return Err(book.admitted_status(limits, now));
            }
            // A `tat` this container saw beyond `max_tat` proves the refusal without a call: a
            // flooding client costs no DynamoDB write, and cannot throttle its item into the
            // outage policy.
            match book.known_refusal(limits, now) {
                Some(refusal) => Err(refusal),
                None => Ok(Step::first(book, limits, now, book.next_size(limits, now))),
            }
        });
        let mut step = match first {
            Ok(step) => step,
            Err(decided) => return Ok(decided.of(*scope)),
        };
        for _ in 0..MAX_ATTEMPTS {
            let stored = match self.update(key, limits, now, &step).await? {
                Attempt::Admitted(new_tat) => {
                    let found = step.found(limits, new_tat);
                    return Ok(self.with_book(bucket, now, |book| {
                        book.took(limits, now, step.tokens(), found, new_tat);
                        book.admitted_status(limits, now).of(*scope)
                    }));
                }
                Attempt::Conflict(stored) => stored,
            };
            if gcra::room(limits, stored, now) == 0 {
                self.with_book(bucket, now, |book| book.saw(stored));
                return Ok(gcra::denied_status(limits, stored.unwrap_or(now), now).of(*scope));
            }
            step = self.with_book(bucket, now, |book| {
                book.saw(stored);
                book.forget_give_back();
                Step::after(stored, now, book.next_size(limits, now))
            });
        }
        // Other instances kept changing the item under us: refuse rather than risk over-admitting.
        tracing::warn!(bucket = %key, "rate limit contention; refusing this request");
        Ok(gcra::denied_status(limits, now + limits.tolerance_us(), now).of(*scope))
    }

    /// The answer once both budgets were asked: admitted if both admitted; otherwise the
    /// developer's refusal or failure first, and a token either took for this request goes back
    /// to its lease.
    fn settle(
        &self,
        (user, user_outcome): (&Bucket, Result<RateStatus, StoreUnavailable>),
        (organization, organization_outcome): (&Bucket, Result<RateStatus, StoreUnavailable>),
        now: i64,
    ) -> Result<RateStatus, StoreUnavailable> {
        let admitted =
            |outcome: &Result<RateStatus, StoreUnavailable>| outcome.as_ref().is_ok_and(RateStatus::admitted);
        if admitted(&user_outcome) && admitted(&organization_outcome) {
            return Ok(RateStatus::binding(user_outcome?, organization_outcome?));
        }
        if admitted(&user_outcome) {
            self.put_back(user, now);
        }
        if admitted(&organization_outcome) {
            self.put_back(organization, now);
        }
        // A refusal stands even if the other budget's bucket could not be read: the outage
        // policy must never admit what a budget refused. The developer's is said first.
        let refused = |outcome: &Result<RateStatus, StoreUnavailable>| outcome.as_ref().is_ok_and(|s| !s.admitted());
        if refused(&user_outcome) {
            return user_outcome;
        }
        if refused(&organization_outcome) {
            return organization_outcome;
        }
        user_outcome?;
        organization_outcome
    }
}

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn check_at(&self, caller: &Caller, budgets: &Budgets, now: i64) -> Result<RateStatus, StoreUnavailable> {
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
        let outcomes = match (self.spend_local(&user, now), self.spend_local(&organization, now)) {
            (Some(user_status), Some(organization_status)) => (Ok(user_status), Ok(organization_status)),
            (Some(user_status), None) => (Ok(user_status), self.take(&organization, now).await),
            (None, Some(organization_status)) => (self.take(&user, now).await, Ok(organization_status)),
            (None, None) if self.with_book(&user, now, |book| book.has_room(&user.limits, now)) => {
                tokio::join!(self.take(&user, now), self.take(&organization, now))
            }
            (None, None) => {
                let user_outcome = self.take(&user, now).await;
                if user_outcome.is_err()
                    && let Some(refusal) =
                        self.with_book(&organization, now, |book| book.known_refusal(&organization.limits, now))
                {
                    // The organization's refusal is already proven: no outage policy applies.
                    return Ok(refusal.of(Scope::Organization));
                }
                if !user_outcome.as_ref().is_ok_and(RateStatus::admitted) {
                    return user_outcome;
                }
                (user_outcome, self.take(&organization, now).await)
            }
        };
        self.settle((&user, outcomes.0), (&organization, outcomes.1), now)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_requests: 600,
            window_ms: 60_000,
            burst_allowance: 0,
        }
    }

    #[test]
    fn made_up_callers_never_grow_the_books_past_their_bound() {
        // GIVEN a container's books, and a million distinct callers each taking one token
        let mut books = Books::default();
        let limits = limits();
        for i in 0..1_000_000i64 {
            let now = i * 1000; // a thousand callers a second
            books
                .of(&format!("user#acme#u{i}"), now)
                .took(&limits, now, 1, None, now + limits.interval_us());
            // THEN the books never exceed their bound
            assert!(books.by_key.len() <= MAX_BOOKS, "{} books", books.by_key.len());
        }
        // AND what is kept is about what still says something: the leases of the last two
        // seconds (2,000 callers), and at most twice that before the next pruning
        assert!(
            books.by_key.len() <= 4 * 2_000 + PRUNE_FROM,
            "{} books",
            books.by_key.len()
        );
    }

    #[test]
    fn turns_nobody_holds_are_dropped_and_held_ones_kept() {
        // GIVEN one held turn and many made-up ones
        let mut turns = Turns::default();
        let held = turns.of("user#acme#alice");
        for i in 0..10 * PRUNE_FROM {
            turns.of(&format!("user#acme#u{i}"));
        }
        // THEN they stay bounded and the held turn is still the same one
        assert!(turns.by_key.len() <= 2 * PRUNE_FROM + 1, "{} turns", turns.by_key.len());
        assert!(Arc::ptr_eq(&held, &turns.of("user#acme#alice")));
    }
}
