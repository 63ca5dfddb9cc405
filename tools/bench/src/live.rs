//! The write path with live updates on (one dashboard of the organization connected) against the
//! same path with them off, over HTTP and interleaved; and how long after the response the update
//! reaches the dashboard.
//!
//! May use `stats`, `stack` and `http` (for the fronts and the requests), and `local_front`.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::http::{WARM_UP, post_command, serve_front};
use crate::stack::{Sizes, Stack, token};
use crate::stats::{RoundOrder, Stats, ms, round3};

pub async fn measure(stack: &Stack, sizes: &Sizes, results: &mut Map<String, Value>) {
    let (off_addr, mut off) = serve_front(stack, false).await;
    let (on_addr, mut on) = serve_front(stack, true).await;
    let token = token("bench-live", "bench-user");
    let mut updates =
        local_front::live::watch(&format!("ws://{on_addr}{}?token={token}", local_front::live::LIVE_PATH))
            .await
            .expect("watch");
    let (mut off_samples, mut on_samples, mut arrivals) = (Vec::new(), Vec::new(), Vec::new());
    let mut order = RoundOrder::new();
    for i in 0..sizes.http + WARM_UP {
        let kept = i >= WARM_UP;
        for live_on in order.shuffle([false, true]) {
            if !live_on {
                let without = post_command(&mut off, off_addr, &token).await;
                off_samples.extend(kept.then(|| ms(without)));
                continue;
            }
            let with = post_command(&mut on, on_addr, &token).await;
            let answered = Instant::now();
            tokio::time::timeout(Duration::from_secs(5), updates.recv())
                .await
                .expect("the update arrives")
                .expect("socket open");
            on_samples.extend(kept.then(|| ms(with)));
            arrivals.extend(kept.then(|| ms(answered.elapsed())));
        }
    }
    let (off_stats, on_stats) = (Stats::of(&off_samples), Stats::of(&on_samples));
    results.insert("handler_over_http_live_off".into(), off_stats.json(sizes.http));
    results.insert("handler_over_http_live_on".into(), on_stats.json(sizes.http));
    results.insert(
        "live_update_after_response".into(),
        Stats::of(&arrivals).json(sizes.http),
    );
    let ratios = results.entry("ratios").or_insert_with(|| json!({}));
    ratios["http_p95_live_on_over_off"] = json!(round3(on_stats.p95 / off_stats.p95));
    ratios["http_p50_live_on_over_off"] = json!(round3(on_stats.p50 / off_stats.p50));
}
