//! Turning timings into figures: percentiles and means of samples, their JSON form, rounding, and
//! the clocks the sections time themselves with (wall clock and this thread's CPU clock).
//!
//! May use the standard library, `libc` (for the CPU clock), `fastrand` (for the order of a
//! round) and `serde_json`; nothing else of the crate, so that every section can use it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Percentiles and mean of a set of samples, in milliseconds.
#[derive(Clone, Copy)]
pub struct Stats {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Stats {
    /// The figures of `samples` (nearest-rank percentiles).
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
        Stats {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        }
    }

    /// The figures as written to the results file, with `n`, the number of samples.
    pub fn json(self, n: usize) -> Value {
        json!({"n": n, "p50_ms": round3(self.p50), "p95_ms": round3(self.p95), "p99_ms": round3(self.p99), "mean_ms": round3(self.mean)})
    }
}

/// `x` rounded to three decimals, as every figure in the results file is.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// CPU time this thread has used (excludes time blocked waiting for I/O).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Wall-clock and own-CPU samples of one measured operation.
#[derive(Default)]
pub struct Samples {
    pub wall: Vec<f64>,
    pub cpu: Vec<f64>,
}

impl Samples {
    /// Times `work`; keeps the sample unless `warm_up`.
    pub async fn time<T>(&mut self, warm_up: bool, work: impl Future<Output = T>) -> T {
        let (started, cpu_started) = (Instant::now(), thread_cpu());
        let out = work.await;
        if !warm_up {
            self.wall.push(ms(started.elapsed()));
            self.cpu.push(ms(thread_cpu() - cpu_started));
        }
        out
    }
}

/// The order of each round's operations, shuffled afresh every round from a fixed seed (two runs
/// shuffle alike). What runs just before an operation changes its figure: moto shares the
/// database's CPU and goes on working after it has answered, so in a fixed order whatever
/// follows a DynamoDB call waits for it (the single-metric handler did: docs/performance.md,
/// Method). Shuffled, every operation follows every other equally often on average.
pub struct RoundOrder(fastrand::Rng);

impl RoundOrder {
    pub fn new() -> Self {
        Self(fastrand::Rng::with_seed(0x5eed))
    }

    /// `ops` in this round's order.
    pub fn shuffle<T, const N: usize>(&mut self, mut ops: [T; N]) -> [T; N] {
        self.0.shuffle(&mut ops);
        ops
    }
}
