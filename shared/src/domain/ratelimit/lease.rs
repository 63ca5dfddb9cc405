//! Leases: a container takes several tokens of a shared GCRA bucket with one conditional update
//! and spends them locally, so a busy budget costs one store call per lease rather than one per
//! request. Tokens are counted in the shared bucket *before* they are spent, so no number of
//! containers can admit more than the bucket allows; what a lease can cost is under-admission
//! (tokens a container took and did not spend), which its size and lifetime bound:
//!
//! - a lease's tokens may be spent for [`HORIZON_US`] after it was taken, then they expire
//!   (they are given back with the next take when nobody changed the bucket since);
//! - its size follows the container's own rate (what it spent of its last lease, scaled to
//!   [`SIZING_US`], a little less than the horizon so that a steady rate runs a lease dry before
//!   it expires; at most twice the last lease), so a first or quiet request takes one token, as
//!   without leases;
//! - it is at most [`ROOM_SHARE`]'s part of what the bucket has left, so near the limit every
//!   request takes one token (exact) and no container sits on much of what is left.
//!
//! [`LeaseBook`] is what one container knows of one bucket: the last `tat` it saw and its lease.
//! No I/O here; the limiters (adapters, fakes) keep one book per bucket.

use super::{Limits, RateStatus, gcra};

/// How long a lease's tokens may be spent after they were taken: two seconds.
pub const HORIZON_US: i64 = 2_000_000;

/// A lease holds what the container spent over this long at its last lease's rate: a developer
/// at the default 10 requests a second takes leases of 15 (0.07 calls per request).
pub const SIZING_US: i64 = 1_500_000;

/// A lease takes at most `1 / ROOM_SHARE` of what the bucket has left.
pub const ROOM_SHARE: u64 = 8;

/// What one container knows of one bucket.
#[derive(Debug, Clone, Default)]
pub struct LeaseBook {
    /// The bucket's `tat` as last seen (after our last take, or as a failed condition returned it).
    seen_tat: Option<i64>,
    lease: Option<Lease>,
}

#[derive(Debug, Clone)]
struct Lease {
    /// The budget it was taken under: a lease is never spent under other limits.
    limits: Limits,
    /// Taken and not yet spent.
    tokens: u64,
    expires_at: i64,
    /// The bucket's `tat` right after the take: while it is still that, nobody else took since.
    end_tat: i64,
    size: u64,
    taken_at: i64,
    /// Spent since the take: the container's demand.
    spent: u64,
    /// No other container took between this container's last two takes: a give-back would
    /// likely find the bucket as this lease left it.
    alone: bool,
}

impl Lease {
    fn live(&self, limits: &Limits, now: i64) -> bool {
        self.limits == *limits && now < self.expires_at
    }
}

/// The unspent tokens of an expired lease, to give back by the next take: only while the
/// bucket's `tat` is still `end_tat`, so a give-back never returns a token twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveBack {
    pub end_tat: i64,
    pub tokens: u64,
}

impl GiveBack {
    /// The `tat` a take of `tokens` sets when it also gives these back, or `None` when that
    /// would not fit in the bucket at `now` (then the take goes without the give-back).
    pub fn new_tat(&self, limits: &Limits, now: i64, tokens: u64) -> Option<i64> {
        let interval = limits.interval_us();
        let base = (self.end_tat - interval * self.tokens as i64).max(now);
        let new_tat = base + interval * tokens as i64;
        (new_tat <= now + limits.tolerance_us()).then_some(new_tat)
    }
}

impl LeaseBook {
    pub fn seen_tat(&self) -> Option<i64> {
        self.seen_tat
    }

    /// The bucket's `tat` as a failed condition returned it.
    pub fn saw(&mut self, tat: Option<i64>) {
        if tat.is_some() {
            self.seen_tat = tat;
        }
    }

    /// Spends one token of the live lease; `false` when there is none (the request needs a take).
    pub fn spend(&mut self, limits: &Limits, now: i64) -> bool {
        match &mut self.lease {
            Some(lease) if lease.live(limits, now) && lease.tokens > 0 => {
                lease.tokens -= 1;
                lease.spent += 1;
                true
            }
            _ => false,
        }
    }

    /// Returns the token a request spent when the other budget then refused it.
    pub fn put_back(&mut self, limits: &Limits, now: i64) {
        if let Some(lease) = self.lease.as_mut().filter(|lease| lease.live(limits, now)) {
            lease.tokens += 1;
            lease.spent = lease.spent.saturating_sub(1);
        }
    }

    /// How many tokens the next take asks for (see the module's rules). A request of its own
    /// counts in the demand, hence at least one.
    pub fn next_size(&self, limits: &Limits, now: i64) -> u64 {
        let by_rate = match &self.lease {
            Some(lease) if lease.limits == *limits => {
                let elapsed = (now - lease.taken_at).max(1) as u64;
                let demand = (lease.spent * SIZING_US as u64).div_ceil(elapsed);
                demand.min(2 * lease.size)
            }
            _ => 1,
        };
        by_rate.clamp(1, cap(gcra::room(limits, self.seen_tat, now)))
    }

    /// The unspent tokens of an expired lease of `limits`, if any.
    pub fn give_back(&self, limits: &Limits, now: i64) -> Option<GiveBack> {
        let lease = self.lease.as_ref()?;
        let worth_trying = lease.alone && lease.tokens > 0;
        (lease.limits == *limits && now >= lease.expires_at && worth_trying).then_some(GiveBack {
            end_tat: lease.end_tat,
            tokens: lease.tokens,
        })
    }

    /// The expired lease's tokens could not be given back: they are lost (the bucket refills them).
    pub fn forget_give_back(&mut self) {
        if let Some(lease) = &mut self.lease {
            lease.tokens = 0;
        }
    }

    /// Records a take of `tokens` at `now` that found the bucket's `tat` at `found` (`None` when
    /// the update does not say) and left it at `new_tat`; one token is the current request's.
    pub fn took(&mut self, limits: &Limits, now: i64, tokens: u64, found: Option<i64>, new_tat: i64) {
        self.seen_tat = Some(new_tat);
        let alone = match (self.lease.as_ref(), found) {
            (Some(lease), Some(found)) => lease.end_tat == found,
            _ => true,
        };
        let unspent = match &self.lease {
            // Only a token put back can be left here (takes wait for a dry lease); keep it.
            Some(lease) if lease.live(limits, now) => lease.tokens,
            _ => 0,
        };
        self.lease = Some(Lease {
            limits: *limits,
            tokens: tokens - 1 + unspent,
            expires_at: now + HORIZON_US,
            end_tat: new_tat,
            size: tokens,
            taken_at: now,
            spent: 1,
            alone,
        });
    }

    /// What an admitted request is told: the bucket as last seen, with this container's unspent
    /// tokens counted as left. A bucket never holds more than its capacity, nor is it full again
    /// before now: a `tat` in the past (the bucket refilled since it was seen) counts as now.
    pub fn admitted_status(&self, limits: &Limits, now: i64) -> RateStatus {
        let unspent = self.live_tokens(limits, now) as i64;
        let tat = (self.seen_tat.unwrap_or(now) - unspent * limits.interval_us()).max(now);
        gcra::admitted_status(limits, tat, now)
    }

    /// A refusal proven without a call: the bucket was past its limit when last seen. A `tat`
    /// never moves back but by give-backs, so it can only be wrong by what other leases held.
    pub fn known_refusal(&self, limits: &Limits, now: i64) -> Option<RateStatus> {
        let returned = self.give_back(limits, now).map_or(0, |back| back.tokens as i64);
        let tat = self.seen_tat? - returned * limits.interval_us();
        (tat > gcra::max_tat(limits, now)).then(|| gcra::denied_status(limits, tat, now))
    }

    /// Whether forgetting this book loses nothing but a guess: no lease still to spend, and the
    /// bucket as last seen already full again (a `tat` in the past is what no book says too).
    /// An expired lease's unspent tokens are then lost, which only ever under-admits.
    pub fn forgettable(&self, now: i64) -> bool {
        self.seen_tat.is_none_or(|tat| tat < now) && self.lease.as_ref().is_none_or(|lease| now >= lease.expires_at)
    }

    /// Whether the bucket had at least a tenth of it left when last seen.
    pub fn has_room(&self, limits: &Limits, now: i64) -> bool {
        self.seen_tat
            .is_some_and(|tat| gcra::max_tat(limits, now) - tat.max(now) >= limits.tolerance_us() / 10)
    }

    fn live_tokens(&self, limits: &Limits, now: i64) -> u64 {
        self.lease
            .as_ref()
            .filter(|lease| lease.live(limits, now))
            .map_or(0, |lease| lease.tokens)
    }
}

/// The largest lease a bucket with `room` tokens left may give: one near the limit.
fn cap(room: u64) -> u64 {
    (room / ROOM_SHARE).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1000;

    fn per_minute(max_requests: u64) -> Limits {
        Limits {
            max_requests,
            window_ms: 60_000,
            burst_allowance: 0,
        }
    }

    /// One container alone on a bucket: requests at `times`; returns (admitted, takes). Each
    /// take is granted when the bucket has room, as the store would.
    fn run(limits: &Limits, times: impl IntoIterator<Item = i64>) -> (u64, u64) {
        let (mut book, mut tat, mut admitted, mut takes) = (LeaseBook::default(), None::<i64>, 0, 0);
        for now in times {
            if book.spend(limits, now) {
                admitted += 1;
                continue;
            }
            let size = book.next_size(limits, now);
            takes += 1;
            let base = tat.unwrap_or(now).max(now);
            if base <= gcra::max_tat_for(limits, now, size) {
                tat = Some(base + limits.interval_us() * size as i64);
                book.took(limits, now, size, Some(base), tat.unwrap_or_default());
                admitted += 1;
            } else {
                book.saw(tat);
            }
        }
        (admitted, takes)
    }

    #[test]
    fn a_steady_rate_takes_one_lease_a_horizon() {
        // 50 a second for ten seconds, well within 12,000 a minute.
        let (admitted, takes) = run(&per_minute(12_000), (0..500).map(|i| i * 20 * MS));
        assert_eq!(admitted, 500);
        assert!(takes <= 25, "{takes} takes for 500 requests");
    }

    #[test]
    fn a_quiet_budget_takes_one_token_at_a_time_and_gets_all_of_it() {
        // One request every two seconds: every take is of one token.
        let limits = per_minute(20);
        let mut book = LeaseBook::default();
        for i in 0..10 {
            let now = i * 2000 * MS;
            assert!(!book.spend(&limits, now));
            assert_eq!(book.next_size(&limits, now), 1);
            book.took(&limits, now, 1, None, now + limits.interval_us());
        }
    }

    #[test]
    fn near_the_limit_a_lease_is_one_token_and_never_more_than_an_eighth_of_the_room() {
        // Requests as fast as possible at one instant: exactly the capacity is admitted.
        let limits = per_minute(100);
        let (admitted, _) = run(&limits, std::iter::repeat_n(0, 300));
        assert_eq!(admitted, 100);
        // A lease of 8 spent at once asks for 16, but the room left (92) allows 11 only.
        let mut book = LeaseBook::default();
        book.took(&limits, 0, 8, None, 8 * limits.interval_us());
        while book.spend(&limits, 0) {}
        assert_eq!(book.next_size(&limits, 1), 11);
        // Room 7: one.
        book.saw(Some(limits.interval_us() * 93));
        assert_eq!(book.next_size(&limits, 1), 1);
    }

    #[test]
    fn expired_tokens_are_not_spent_and_are_offered_back_once() {
        let limits = per_minute(6000);
        let mut book = LeaseBook::default();
        book.took(&limits, 0, 10, None, 10 * limits.interval_us());
        assert!(book.spend(&limits, HORIZON_US - 1));
        assert!(!book.spend(&limits, HORIZON_US), "expired");
        let back = book.give_back(&limits, HORIZON_US).expect("eight unspent");
        assert_eq!(back.tokens, 8);
        // Given back with a take of 3: as if only the two spent had been taken.
        let now = HORIZON_US;
        assert_eq!(back.new_tat(&limits, now, 3), Some(now + 3 * limits.interval_us()));
        book.forget_give_back();
        assert_eq!(book.give_back(&limits, now), None);
    }

    #[test]
    fn a_give_back_is_tried_only_when_no_other_container_took_in_between() {
        let limits = per_minute(6000);
        let interval = limits.interval_us();
        let mut book = LeaseBook::default();
        book.took(&limits, 0, 4, None, 4 * interval);
        // The next take found the `tat` this container left: nobody else is taking.
        book.took(&limits, 10, 4, Some(4 * interval), 8 * interval);
        assert!(book.give_back(&limits, HORIZON_US + 10).is_some());
        // Another container took three in between: a give-back would fail, so it is not tried.
        book.took(&limits, 20, 4, Some(11 * interval), 15 * interval);
        assert_eq!(book.give_back(&limits, HORIZON_US + 20), None);
    }

    #[test]
    fn a_lease_taken_under_other_limits_is_never_spent() {
        let (old, lowered) = (per_minute(6000), per_minute(60));
        let mut book = LeaseBook::default();
        book.took(&old, 0, 10, None, 10 * old.interval_us());
        assert!(!book.spend(&lowered, 1));
        assert_eq!(book.next_size(&lowered, 1), 1);
        assert_eq!(book.give_back(&lowered, HORIZON_US), None);
    }

    #[test]
    fn an_admitted_request_is_told_what_is_left_counting_its_containers_unspent_tokens() {
        let limits = per_minute(100);
        let mut book = LeaseBook::default();
        book.took(&limits, 0, 5, None, 5 * limits.interval_us());
        assert_eq!(book.admitted_status(&limits, 0).remaining, 99);
        assert!(book.spend(&limits, 0));
        assert_eq!(book.admitted_status(&limits, 0).remaining, 98);
    }

    #[test]
    fn a_bucket_refilled_since_it_was_seen_reports_its_capacity_and_a_reset_no_earlier_than_now() {
        // GIVEN a take of 100 tokens at 0 on a 6,000-a-minute bucket (10 ms each: tat = 1 s)
        let limits = per_minute(6000);
        let mut book = LeaseBook::default();
        book.took(&limits, 0, 100, None, 100 * limits.interval_us());
        // WHEN a request spends one of them at 1.9 s, when the bucket is full again and the
        // container still holds 98 (its tat less theirs, 0.02 s, is long past)
        let now = HORIZON_US - 100 * MS;
        assert!(book.spend(&limits, now));
        let status = book.admitted_status(&limits, now);
        // THEN it is never told more than the limit, nor a reset before its own time
        assert_eq!(status.remaining, limits.capacity());
        assert_eq!(status.reset_at_us, now);
    }

    #[test]
    fn a_book_is_forgettable_only_once_its_lease_expired_and_its_bucket_is_full_again() {
        // GIVEN a take of 5 tokens at 0 on a 100-a-minute bucket (tat = 3 s)
        let limits = per_minute(100);
        let mut book = LeaseBook::default();
        assert!(book.forgettable(0), "an empty book says nothing");
        book.took(&limits, 0, 5, None, 5 * limits.interval_us());
        // THEN it is kept while the lease may be spent, and while the bucket is not full again
        assert!(!book.forgettable(HORIZON_US - 1));
        assert!(!book.forgettable(5 * limits.interval_us() - 1));
        assert!(book.forgettable(5 * limits.interval_us() + 1));
        // AND a bucket seen past its limit (a refusal proven without a call) is kept
        let mut refused = LeaseBook::default();
        refused.saw(Some(10 * 60_000 * MS));
        assert!(!refused.forgettable(60_000 * MS));
    }
}
