//! Per-organization alerts: what the last few minutes' figures are, whether they break the
//! organization's thresholds, and when a webhook message is owed.
//!
//! The rolling aggregates are hourly counters (count, errors, latency buckets per hour), so a
//! five-minute figure is the difference of two snapshots of the current and previous hours'
//! counters taken five minutes apart ([`Snapshot`], [`Window::between`]). Each condition is a
//! small state machine ([`ConditionState::next`]): it changes only on evidence (at least
//! `min_samples` metrics in the window), and each change is owed to the webhook once
//! ([`ConditionState::pending`]) until it is delivered — while the condition lasts nothing more
//! is sent, and when it ends one "resolved" message is.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::summary::{HISTOGRAM_BUCKETS, p95_ms};

/// The window the specification's alert thresholds are about.
pub const WINDOW_SECONDS: i64 = 300;
/// How early a baseline may be (schedules drift by seconds, so a run a minute apart may find
/// the snapshot of five runs ago 4m50s old).
pub const BASELINE_SLACK_SECONDS: i64 = 30;

/// One hour's counters of an organization, summed over users, kinds and names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HourCounters {
    pub count: i64,
    pub errors: i64,
    /// Latency bucket (1-based, as `latency_bucket` in SQL) to count; buckets without counts
    /// are absent.
    pub latency: BTreeMap<u16, i64>,
}

/// The counters of the current and previous hours at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    /// Hour (its start, UTC) to counters.
    pub hours: BTreeMap<DateTime<Utc>, HourCounters>,
}

impl Snapshot {
    /// The hours a snapshot at `now` holds: the current one and the one before (metrics are
    /// counted in the hour of their own timestamp, which may be a little in the past).
    pub fn hours_at(now: DateTime<Utc>) -> [DateTime<Utc>; 2] {
        let current = now
            .date_naive()
            .and_hms_opt(chrono::Timelike::hour(&now), 0, 0)
            .expect("whole hour")
            .and_utc();
        [current - Duration::hours(1), current]
    }

    /// The newest snapshot of `older` at least one window before `now` (less a little slack)
    /// and at most two windows: the baseline of this run's window. `None` while history is
    /// short (the first runs) or broken (no run for ten minutes).
    pub fn baseline(older: &[Snapshot], now: DateTime<Utc>, window: Duration) -> Option<&Snapshot> {
        let latest = now - window + Duration::seconds(BASELINE_SLACK_SECONDS);
        let earliest = now - window * 2;
        older
            .iter()
            .filter(|s| s.taken_at <= latest && s.taken_at >= earliest)
            .max_by_key(|s| s.taken_at)
    }
}

/// What happened between two snapshots: the metrics counted in between.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub seconds: i64,
    pub count: i64,
    pub errors: i64,
    /// Dense histogram (index = bucket - 1), as [`p95_ms`] reads it.
    pub latency: Vec<i64>,
}

impl Window {
    /// `new` less `old`, hour by hour (an hour `old` did not hold started at zero). A counter
    /// that went down (an erasure removed rows) counts as no new metrics rather than negative.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        let empty = HourCounters::default();
        let mut window = Window {
            seconds: (new.taken_at - old.taken_at).num_seconds(),
            count: 0,
            errors: 0,
            latency: vec![0; HISTOGRAM_BUCKETS],
        };
        for (hour, now) in &new.hours {
            let then = old.hours.get(hour).unwrap_or(&empty);
            window.count += (now.count - then.count).max(0);
            window.errors += (now.errors - then.errors).max(0);
            for (bucket, count) in &now.latency {
                let before = then.latency.get(bucket).copied().unwrap_or(0);
                if let Some(slot) = window.latency.get_mut(usize::from(*bucket).wrapping_sub(1)) {
                    *slot += (count - before).max(0);
                }
            }
        }
        window
    }

    /// The percentage of failed metrics.
    pub fn error_rate_percent(&self) -> f64 {
        if self.count <= 0 {
            return 0.0;
        }
        self.errors as f64 * 100.0 / self.count as f64
    }

    /// The 95th percentile latency (the upper edge of its histogram bucket, as summaries report
    /// it); the overflow bucket reads as its lower edge.
    pub fn p95_ms(&self) -> f64 {
        match p95_ms(&self.latency) {
            Some(ms) => ms,
            None if self.latency.iter().sum::<i64>() > 0 => 2f64.powf((HISTOGRAM_BUCKETS as f64 - 2.0) / 4.0) / 10.0,
            None => 0.0,
        }
    }
}

/// An organization's alert thresholds (its settings) and the stage's minimum sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRules {
    /// Percent of failed metrics in the window above which the error-rate alert fires.
    pub high_error_rate_threshold: f64,
    /// p95 latency in ms above which the slow-response alert fires.
    pub slow_response_threshold_ms: f64,
    /// Fewer metrics than this in the window decide nothing (one failure in a quiet minute is
    /// not an outage).
    pub min_samples: i64,
}

/// What an alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    HighErrorRate,
    SlowResponse,
}

impl Condition {
    pub const ALL: [Condition; 2] = [Condition::HighErrorRate, Condition::SlowResponse];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HighErrorRate => "high_error_rate",
            Self::SlowResponse => "slow_response",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    fn title(self) -> &'static str {
        match self {
            Self::HighErrorRate => "High error rate",
            Self::SlowResponse => "Slow responses (p95)",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::HighErrorRate => "percent",
            Self::SlowResponse => "ms",
        }
    }
}

/// A condition's figure over one window against its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub observed: f64,
    pub threshold: f64,
    pub samples: i64,
    pub window_seconds: i64,
}

impl Reading {
    pub fn breached(&self) -> bool {
        self.observed > self.threshold
    }
}

/// What a window says of a condition: a reading, or too few metrics to say anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Evidence {
    Reading(Reading),
    TooFewSamples { samples: i64 },
}

/// Both conditions' evidence in `window` under `rules`.
pub fn evaluate(window: &Window, rules: &AlertRules) -> [(Condition, Evidence); 2] {
    Condition::ALL.map(|condition| {
        if window.count < rules.min_samples.max(1) {
            return (condition, Evidence::TooFewSamples { samples: window.count });
        }
        let (observed, threshold) = match condition {
            Condition::HighErrorRate => (window.error_rate_percent(), rules.high_error_rate_threshold),
            Condition::SlowResponse => (window.p95_ms(), rules.slow_response_threshold_ms),
        };
        let reading = Reading {
            observed: (observed * 1000.0).round() / 1000.0,
            threshold,
            samples: window.count,
            window_seconds: window.seconds,
        };
        (condition, Evidence::Reading(reading))
    })
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One condition's durable state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConditionState {
    pub firing: bool,
    /// Whether the webhook has been told of the last change (false: a message is owed).
    pub delivered: bool,
    /// When the last change happened, and the reading that caused it.
    pub changed_at: Option<DateTime<Utc>>,
    pub reading: Option<Reading>,
}

impl Default for ConditionState {
    /// Quiet, nothing owed (no "resolved" for what never fired).
    fn default() -> Self {
        Self {
            firing: false,
            delivered: true,
            changed_at: None,
            reading: None,
        }
    }
}

impl ConditionState {
    /// The state after this run's evidence. It changes only on a reading that contradicts it;
    /// too few samples change nothing (an alert resolves on evidence, not on silence).
    pub fn next(self, evidence: Evidence, now: DateTime<Utc>) -> Self {
        match evidence {
            Evidence::Reading(reading) if reading.breached() != self.firing => Self {
                firing: reading.breached(),
                delivered: false,
                changed_at: Some(now),
                reading: Some(reading),
            },
            _ => self,
        }
    }

    /// The message owed for the last change, if any. A firing that was never delivered and has
    /// since resolved is still told, as resolved (the receiver learns it happened).
    pub fn pending(&self, condition: Condition) -> Option<Notice> {
        if self.delivered {
            return None;
        }
        Some(Notice {
            condition,
            state: if self.firing {
                AlertState::Firing
            } else {
                AlertState::Resolved
            },
            reading: self.reading?,
            changed_at: self.changed_at?,
        })
    }
}

/// A change the webhook is owed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Notice {
    pub condition: Condition,
    pub state: AlertState,
    pub reading: Reading,
    pub changed_at: DateTime<Utc>,
}

impl Notice {
    /// The Slack-compatible message: `text` for any chat, `attachments` with one field per fact
    /// (Slack and Mattermost render them), and `alert` with the same facts as plain JSON for
    /// programs.
    pub fn message(&self, org: &str) -> Value {
        let Reading {
            observed,
            threshold,
            samples,
            window_seconds,
        } = self.reading;
        let unit = self.condition.unit();
        let shown = |v: f64| match self.condition {
            Condition::HighErrorRate => format!("{v}%"),
            Condition::SlowResponse => format!("{v} ms"),
        };
        let minutes = (window_seconds as f64 / 60.0).round() as i64;
        let text = match self.state {
            AlertState::Firing => format!(
                ":rotating_light: [{org}] {} FIRING: {} over the last {minutes} min (threshold {}, {samples} metrics)",
                self.condition.title(),
                shown(observed),
                shown(threshold)
            ),
            AlertState::Resolved => format!(
                ":white_check_mark: [{org}] {} RESOLVED: {} over the last {minutes} min (threshold {}, {samples} metrics)",
                self.condition.title(),
                shown(observed),
                shown(threshold)
            ),
        };
        let field = |title: &str, value: String| json!({"title": title, "value": value, "short": true});
        json!({
            "text": text,
            "attachments": [{
                "color": if self.state == AlertState::Firing { "danger" } else { "good" },
                "title": format!("{} {}", self.condition.title(), self.state.as_str()),
                "fallback": text,
                "fields": [
                    field("Organization", org.to_owned()),
                    field("Condition", self.condition.as_str().to_owned()),
                    field("State", self.state.as_str().to_owned()),
                    field("Observed", shown(observed)),
                    field("Threshold", shown(threshold)),
                    field("Window", format!("{window_seconds} s")),
                    field("Samples", samples.to_string()),
                ],
                "ts": self.changed_at.timestamp(),
            }],
            "alert": {
                "organization_id": org,
                "condition": self.condition.as_str(),
                "state": self.state.as_str(),
                "observed": observed,
                "threshold": threshold,
                "unit": unit,
                "window_seconds": window_seconds,
                "samples": samples,
                "changed_at": self.changed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::summary::latency_bucket;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().to_utc() + Duration::minutes(minute)
    }

    fn counters(count: i64, errors: i64, ms: f64) -> HourCounters {
        HourCounters {
            count,
            errors,
            latency: BTreeMap::from([(latency_bucket(ms) as u16, count)]),
        }
    }

    fn snapshot(minute: i64, hours: &[(i64, HourCounters)]) -> Snapshot {
        Snapshot {
            taken_at: at(minute),
            hours: hours.iter().map(|(h, c)| (at(h * 60), c.clone())).collect(),
        }
    }

    const RULES: AlertRules = AlertRules {
        high_error_rate_threshold: 5.0,
        slow_response_threshold_ms: 15.0,
        min_samples: 20,
    };

    fn reading(observed: f64, threshold: f64) -> Evidence {
        Evidence::Reading(Reading {
            observed,
            threshold,
            samples: 100,
            window_seconds: 300,
        })
    }

    #[test]
    fn given_two_snapshots_across_an_hour_boundary_when_differenced_then_both_hours_count() {
        // GIVEN 10:58 saw hour 10 at 100 metrics; 11:03 sees hour 10 at 110 and hour 11 at 30.
        let old = snapshot(58, &[(0, counters(100, 1, 5.0))]);
        let new = snapshot(63, &[(0, counters(110, 3, 5.0)), (1, counters(30, 10, 50.0))]);
        // WHEN differenced
        let window = Window::between(&old, &new);
        // THEN the window holds the 10 late metrics of hour 10 and the 30 of hour 11.
        assert_eq!((window.seconds, window.count, window.errors), (300, 40, 12));
        assert_eq!(window.latency.iter().sum::<i64>(), 40);
        assert_eq!(window.error_rate_percent(), 30.0);
    }

    #[test]
    fn given_counters_that_went_down_when_differenced_then_nothing_is_negative() {
        let old = snapshot(0, &[(0, counters(100, 50, 5.0))]);
        let new = snapshot(5, &[(0, counters(40, 10, 5.0))]);
        let window = Window::between(&old, &new);
        assert_eq!((window.count, window.errors), (0, 0));
        assert!(window.latency.iter().all(|c| *c == 0));
    }

    #[test]
    fn given_a_snapshot_history_when_a_baseline_is_picked_then_it_is_the_newest_at_least_a_window_old() {
        let history: Vec<Snapshot> = (0..=9).map(|m| snapshot(m, &[])).collect();
        let now = at(10);
        let window = Duration::seconds(WINDOW_SECONDS);
        assert_eq!(Snapshot::baseline(&history, now, window).unwrap().taken_at, at(5));
        // A schedule running a few seconds early still finds the run of five minutes ago.
        let early = now - Duration::seconds(10);
        assert_eq!(Snapshot::baseline(&history, early, window).unwrap().taken_at, at(5));
        // THEN the first runs and a long gap have no baseline.
        assert!(Snapshot::baseline(&history[9..], now, window).is_none());
        assert!(Snapshot::baseline(&history, at(30), window).is_none());
    }

    #[test]
    fn given_too_few_samples_when_evaluated_then_nothing_is_decided() {
        // GIVEN one failed command in a quiet window (100% errors, but 1 sample)
        let window = Window::between(&snapshot(0, &[]), &snapshot(5, &[(0, counters(1, 1, 900.0))]));
        // WHEN evaluated THEN neither condition has a reading
        for (_, evidence) in evaluate(&window, &RULES) {
            assert_eq!(evidence, Evidence::TooFewSamples { samples: 1 });
        }
        // AND a quiet state stays quiet
        let state = ConditionState::default().next(Evidence::TooFewSamples { samples: 1 }, at(5));
        assert_eq!(state, ConditionState::default());
        assert_eq!(state.pending(Condition::HighErrorRate), None);
    }

    #[test]
    fn given_enough_samples_when_evaluated_then_error_rate_and_p95_are_read_against_the_thresholds() {
        let mut hour = counters(95, 10, 5.0);
        hour.latency.insert(latency_bucket(40.0) as u16, 5);
        hour.count = 100;
        let window = Window::between(&snapshot(0, &[]), &snapshot(5, &[(0, hour)]));
        let [(c1, e1), (c2, e2)] = evaluate(&window, &RULES);
        assert_eq!((c1, c2), (Condition::HighErrorRate, Condition::SlowResponse));
        let Evidence::Reading(errors) = e1 else { panic!() };
        assert_eq!((errors.observed, errors.samples, errors.breached()), (10.0, 100, true));
        let Evidence::Reading(latency) = e2 else { panic!() };
        // The 95th of 100 is among the 95 fast ones: p95 is the upper edge of 5 ms's bucket.
        assert!(latency.observed >= 5.0 && latency.observed < 6.0, "{latency:?}");
        assert!(!latency.breached());
    }

    #[test]
    fn given_a_quiet_condition_when_a_breach_is_read_then_it_fires_once_and_is_owed_once() {
        // GIVEN quiet WHEN a breach is read THEN firing, with a message owed
        let fired = ConditionState::default().next(reading(12.0, 5.0), at(5));
        assert!(fired.firing && !fired.delivered);
        let notice = fired.pending(Condition::HighErrorRate).unwrap();
        assert_eq!((notice.state, notice.changed_at), (AlertState::Firing, at(5)));
        // WHEN delivered and the breach goes on THEN nothing more is owed
        let delivered = ConditionState {
            delivered: true,
            ..fired
        };
        let still = delivered.next(reading(30.0, 5.0), at(6));
        assert_eq!(still, delivered);
        assert_eq!(still.pending(Condition::HighErrorRate), None);
    }

    #[test]
    fn given_an_undelivered_firing_when_the_breach_goes_on_then_the_same_message_stays_owed() {
        let fired = ConditionState::default().next(reading(12.0, 5.0), at(5));
        let later = fired.next(reading(40.0, 5.0), at(6));
        assert_eq!(later, fired, "the change and its reading are kept until delivered");
    }

    #[test]
    fn given_a_firing_condition_when_the_figure_drops_to_the_threshold_then_it_resolves_once() {
        let firing = ConditionState {
            firing: true,
            delivered: true,
            changed_at: Some(at(5)),
            reading: None,
        };
        // Too few samples: still firing, nothing owed.
        assert_eq!(firing.next(Evidence::TooFewSamples { samples: 0 }, at(8)), firing);
        // At the threshold (not above it): resolved.
        let resolved = firing.next(reading(5.0, 5.0), at(10));
        assert!(!resolved.firing && !resolved.delivered);
        let notice = resolved.pending(Condition::SlowResponse).unwrap();
        assert_eq!(notice.state, AlertState::Resolved);
        let quiet = ConditionState {
            delivered: true,
            ..resolved
        };
        assert_eq!(quiet.next(reading(1.0, 5.0), at(11)), quiet);
    }

    #[test]
    fn given_a_notice_when_rendered_then_the_message_carries_text_and_every_fact() {
        let notice = Notice {
            condition: Condition::HighErrorRate,
            state: AlertState::Firing,
            reading: Reading {
                observed: 12.5,
                threshold: 5.0,
                samples: 40,
                window_seconds: 300,
            },
            changed_at: at(5),
        };
        let message = notice.message("acme");
        let text = message["text"].as_str().unwrap();
        assert!(
            text.contains("acme") && text.contains("12.5%") && text.contains("FIRING"),
            "{text}"
        );
        assert_eq!(
            message["alert"],
            json!({"organization_id": "acme", "condition": "high_error_rate", "state": "firing",
                   "observed": 12.5, "threshold": 5.0, "unit": "percent", "window_seconds": 300,
                   "samples": 40, "changed_at": "2026-12-06T10:05:00Z"})
        );
        assert_eq!(message["attachments"][0]["fields"].as_array().unwrap().len(), 7);
        assert_eq!(message["attachments"][0]["color"], "danger");
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let s = snapshot(63, &[(0, counters(110, 3, 5.0)), (1, counters(30, 10, 50.0))]);
        let back: Snapshot = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(Snapshot::hours_at(at(63)), [at(0), at(60)]);
    }
}
