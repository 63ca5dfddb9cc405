//! The arithmetic of GCRA, free of any store, so every implementation decides the same way.
//! All times are microseconds since the Unix epoch.

use super::{Limits, RateStatus, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit { new_tat: i64 },
    Deny,
}

/// Decides one request given the stored `tat` (`None` when the organization has none yet).
pub fn decide(limits: &Limits, tat: Option<i64>, now: i64) -> Verdict {
    let base = tat.map_or(now, |tat| tat.max(now));
    if base <= max_tat(limits, now) {
        Verdict::Admit {
            new_tat: base + limits.interval_us(),
        }
    } else {
        Verdict::Deny
    }
}

/// The largest stored `tat` that still admits a request at `now`.
pub fn max_tat(limits: &Limits, now: i64) -> i64 {
    max_tat_for(limits, now, 1)
}

/// The largest stored `tat` from which `tokens` requests may be taken at once at `now`.
pub fn max_tat_for(limits: &Limits, now: i64, tokens: u64) -> i64 {
    now + limits.tolerance_us() - limits.interval_us() * tokens as i64
}

/// How many requests the bucket would admit at `now` given its stored `tat`.
pub fn room(limits: &Limits, tat: Option<i64>, now: i64) -> u64 {
    let base = tat.map_or(now, |tat| tat.max(now));
    ((now + limits.tolerance_us() - base).max(0) / limits.interval_us()) as u64
}

pub fn admitted_status(limits: &Limits, new_tat: i64, now: i64) -> RateStatus {
    let room = now + limits.tolerance_us() - new_tat;
    RateStatus {
        scope: Scope::Organization,
        limit: limits.capacity(),
        remaining: (room.max(0) / limits.interval_us()) as u64,
        reset_at_us: new_tat,
        retry_after_us: None,
    }
}

pub fn denied_status(limits: &Limits, tat: i64, now: i64) -> RateStatus {
    RateStatus {
        scope: Scope::Organization,
        limit: limits.capacity(),
        remaining: 0,
        reset_at_us: tat,
        retry_after_us: Some((tat - max_tat(limits, now)).max(1)),
    }
}

/// Decides and reports in one step; the in-memory limiter and tests use it.
pub fn apply(limits: &Limits, tat: Option<i64>, now: i64) -> (Option<i64>, RateStatus) {
    match decide(limits, tat, now) {
        Verdict::Admit { new_tat } => (Some(new_tat), admitted_status(limits, new_tat, now)),
        Verdict::Deny => {
            let tat = tat.unwrap_or(now);
            (None, denied_status(limits, tat, now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    fn limits(max_requests: u64, window_ms: u64, burst_allowance: u64) -> Limits {
        Limits {
            max_requests,
            window_ms,
            burst_allowance,
        }
    }

    /// Runs requests at the given times; returns how many were admitted.
    fn admitted_at(l: &Limits, times: &[i64]) -> usize {
        let mut tat = None;
        let mut admitted = 0;
        for &now in times {
            let (new_tat, status) = apply(l, tat, now);
            if let Some(t) = new_tat {
                tat = Some(t);
                admitted += 1;
                assert!(status.admitted());
            }
        }
        admitted
    }

    #[test]
    fn an_idle_organization_gets_exactly_its_capacity_at_once() {
        let l = limits(5, 60_000, 0);
        assert_eq!(admitted_at(&l, &[0; 50]), 5);
        let l = limits(5, 60_000, 3);
        assert_eq!(admitted_at(&l, &[0; 50]), 8);
    }

    #[test]
    fn remaining_counts_down_to_zero() {
        let l = limits(3, 60_000, 0);
        let mut tat = None;
        let mut seen = vec![];
        for _ in 0..4 {
            let (new_tat, status) = apply(&l, tat, 0);
            tat = new_tat.or(tat);
            seen.push((status.admitted(), status.remaining));
        }
        assert_eq!(seen, [(true, 2), (true, 1), (true, 0), (false, 0)]);
    }

    #[test]
    fn the_bucket_refills_at_the_sustained_rate() {
        // 60 per minute: one per second after the first burst.
        let l = limits(60, 60_000, 0);
        let mut times = vec![0; 60];
        times.extend((1..=10).map(|s| s * SECOND));
        assert_eq!(admitted_at(&l, &times), 70);
        // A request half a second later than the last admitted one is refused.
        let mut times = vec![0; 60];
        times.push(SECOND / 2);
        assert_eq!(admitted_at(&l, &times), 60);
    }

    #[test]
    fn retry_after_is_exactly_when_the_next_request_is_admitted() {
        let l = limits(2, 1000, 0);
        let (t1, _) = apply(&l, None, 0);
        let (t2, _) = apply(&l, t1, 0);
        let (none, refused) = apply(&l, t2, 0);
        assert_eq!(none, None);
        let wait = refused.retry_after_us.unwrap();
        assert_eq!(wait, 500_000);
        assert_eq!(apply(&l, t2, wait - 1).0, None);
        assert!(apply(&l, t2, wait).0.is_some());
        assert_eq!(refused.retry_after_seconds(), Some(1));
    }

    #[test]
    fn never_admits_more_than_capacity_plus_refill_in_any_interval() {
        // A deterministic pseudo-random schedule of bursts and pauses.
        let l = limits(10, 1000, 2);
        let mut seed: u64 = 42;
        let mut now = 0i64;
        let mut admitted_times = vec![];
        let mut tat = None;
        for _ in 0..5000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            now += ((seed >> 33) % 40_000) as i64;
            let (new_tat, _) = apply(&l, tat, now);
            if new_tat.is_some() {
                tat = new_tat;
                admitted_times.push(now);
            }
        }
        let interval = l.interval_us();
        for (i, &start) in admitted_times.iter().enumerate() {
            for (j, &end) in admitted_times.iter().enumerate().skip(i) {
                let in_window = (j - i + 1) as i64;
                let allowed = l.capacity() as i64 + (end - start) / interval;
                assert!(in_window <= allowed, "{in_window} admitted in {}us", end - start);
                if end - start > 3 * SECOND {
                    break;
                }
            }
        }
    }

    #[test]
    fn rounding_never_admits_more() {
        // 7 per second does not divide evenly into microseconds.
        let l = limits(7, 1000, 0);
        assert_eq!(l.interval_us(), 142_858);
        let times: Vec<i64> = (0..1000).map(|i| i * 1000).collect();
        assert!(admitted_at(&l, &times) <= 7 + 7);
    }

    #[test]
    fn reset_reports_when_the_bucket_is_full_again() {
        let l = limits(4, 4000, 0);
        let (tat, status) = apply(&l, None, 10 * SECOND);
        assert_eq!(tat, Some(11 * SECOND));
        assert_eq!(status.reset_at_us, 11 * SECOND);
        assert_eq!(status.reset_epoch_seconds(), 11);
    }

    #[test]
    fn room_is_what_decide_would_admit_in_a_row() {
        let l = limits(5, 60_000, 1);
        let mut tat = None;
        for expected_room in (0..=6).rev() {
            assert_eq!(room(&l, tat, 0), expected_room);
            let verdict = decide(&l, tat, 0);
            assert_eq!(matches!(verdict, Verdict::Admit { .. }), expected_room > 0);
            if let Verdict::Admit { new_tat } = verdict {
                assert!(tat.unwrap_or(0) <= max_tat_for(&l, 0, expected_room));
                tat = Some(new_tat);
            }
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(limits(0, 1000, 0).check().is_err());
        assert!(limits(10, 0, 0).check().is_err());
        assert!(limits(2_000_000, 1, 0).check().is_err());
        assert!(limits(1000, 60_000, 100).check().is_ok());
    }
}
