//! Bad input never costs more than its size: the sanitiser, the secret redaction and the hook
//! endpoint's content handling, timed on the worst input shapes we know, at growing sizes. The
//! figure is milliseconds per MiB; "flatness" is the per-MiB cost at the largest size over that at
//! the smallest (about 1 when the work is linear, 64 for quadratic work over these sizes).
//!
//! No services are needed: this section runs in process on the release build. May use `stats` (for
//! rounding) and the service's sanitiser, redaction and hook content handling; nothing else.

use std::time::Instant;

use serde_json::{Map, Value, json};
use shared::domain::hooks::content::{HookContent, kept_payload};
use shared::domain::redact::redact_text;
use shared::domain::sanitize::sanitize_text;

/// Input sizes, from 64 KiB to the hook body limit (4 MiB).
const SIZES: [usize; 4] = [64 << 10, 256 << 10, 1 << 20, 4 << 20];
const MIB: f64 = (1 << 20) as f64;

/// A named input shape: builds an input of about the given size in bytes.
type Shape = (&'static str, fn(usize) -> String);

/// `unit` repeated to `size` bytes (whole repetitions).
fn repeat(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len().max(1))
}

/// Shapes that made the old multi-pass sanitiser quadratic, and others of the same family.
fn sanitiser_shapes() -> Vec<Shape> {
    vec![
        ("open brackets then b>", |n| {
            format!("{}{}", "<".repeat(n / 3), "b>".repeat(n / 3))
        }),
        ("many <svg></svg>", |n| repeat("<svg></svg>", n)),
        ("nested <scr<b>ipt>", |n| repeat("<scr<b>ipt>x", n)),
        ("unclosed comments", |n| repeat("<!-- ", n)),
        ("unclosed tags", |n| repeat("<a href='", n)),
        ("closing script without opening", |n| repeat("</script", n)),
        ("code that looks like markup", |n| {
            repeat("Vec<Option<String>> a < b ", n)
        }),
    ]
}

/// Shapes that wake many redaction rules at once.
fn redaction_shapes() -> Vec<Shape> {
    vec![
        ("api_key= assignments", |n| repeat("api_key=abcdefghijklmnop ", n)),
        ("GitHub tokens", |n| {
            repeat("ghp_abcdefghijklmnopqrstuvwxyz0123456789 ", n)
        }),
        ("unclosed private key", |n| {
            format!("-----BEGIN RSA PRIVATE KEY-----{}", "A".repeat(n))
        }),
        ("keyword soup (every rule's keywords)", |n| {
            repeat(&format!("{} ", shared::domain::redact::keywords().join(" ")), n)
        }),
        ("every keyword in each 1 KiB", |n| {
            let soup = shared::domain::redact::keywords().join(" ");
            repeat(&soup[..soup.len().min(1000)], n)
        }),
        ("high-entropy base64", |n| {
            repeat("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6 ", n)
        }),
        ("JWT-like", |n| repeat("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl ", n)),
    ]
}

/// Milliseconds of the fastest of three runs of `work` on `input`.
fn time_ms(input: &str, work: &dyn Fn(&str)) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            work(input);
            started.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

/// Per-MiB cost at each size, and the flatness, for each shape.
fn measure(shapes: Vec<Shape>, work: &dyn Fn(&str)) -> Value {
    let mut out = Map::new();
    for (name, make) in shapes {
        let per_mib: Vec<f64> = SIZES
            .iter()
            .map(|&size| {
                let input = make(size);
                time_ms(&input, work) / (input.len() as f64 / MIB)
            })
            .collect();
        let flatness = per_mib[per_mib.len() - 1] / per_mib[0].max(1e-6);
        out.insert(
            name.to_owned(),
            json!({"ms_per_mib": per_mib.iter().map(|v| crate::stats::round3(*v)).collect::<Vec<_>>(),
                   "flatness": crate::stats::round3(flatness)}),
        );
    }
    Value::Object(out)
}

/// A hook body carrying `text` as a real one would, and as much of it as the redaction would
/// ever read: a command, an output, and the text cut into 1 KiB strings spread over nested
/// objects of at most 50 keys (what the truncation keeps), so the work grows with the body.
fn hook_body(text: &str) -> Map<String, Value> {
    let pieces: Vec<Value> = text
        .as_bytes()
        .chunks(1024)
        .map(|chunk| json!(String::from_utf8_lossy(chunk)))
        .collect();
    let mut files = Map::new();
    for (i, group) in pieces.chunks(50).enumerate().take(50) {
        let group: Map<String, Value> = group
            .iter()
            .enumerate()
            .map(|(j, piece)| (format!("line{j}"), piece.clone()))
            .collect();
        files.insert(format!("file{i}"), Value::Object(group));
    }
    json!({"session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_use_id": "t",
           "tool_input": {"command": text.chars().take(100_000).collect::<String>()},
           "tool_response": {"stdout": text, "files": files}})
    .as_object()
    .cloned()
    .unwrap_or_default()
}

pub fn measure_all(results: &mut Map<String, Value>) {
    let sanitiser = measure(sanitiser_shapes(), &|text| {
        std::hint::black_box(sanitize_text(text));
    });
    let redaction = measure(redaction_shapes(), &|text| {
        std::hint::black_box(redact_text(text));
    });
    let mut hooks = Map::new();
    for (mode, content) in [("metrics", HookContent::Metrics), ("redacted", HookContent::Redacted)] {
        let shapes: Vec<_> = sanitiser_shapes().into_iter().chain(redaction_shapes()).collect();
        hooks.insert(
            mode.to_owned(),
            measure(shapes, &|text| {
                std::hint::black_box(kept_payload(&hook_body(text), content));
            }),
        );
    }
    results.insert(
        "hostile_input".into(),
        json!({"sanitiser": sanitiser, "redaction": redaction, "hook_content": Value::Object(hooks)}),
    );
}

/// The section's targets: linear work keeps the per-MiB cost flat from 64 KiB to 4 MiB (caches
/// move it a little; quadratic work would multiply it by 64), and a hook body at its limit
/// (4 MiB), worst shape and mode, is handled well inside the function's 10 s timeout.
pub fn targets(hostile: &Value) -> Vec<(String, f64, f64, bool)> {
    let mut list: Vec<(String, f64, f64, bool)> = ["sanitiser", "redaction", "hook_content"]
        .iter()
        .map(|part| {
            let flatness = worst_flatness(&hostile[*part]);
            (
                format!("{part}: worst flatness (ms/MiB at 4 MiB / at 64 KiB)"),
                flatness,
                4.0,
                true,
            )
        })
        .collect();
    list.push((
        "hook body of 4 MiB, worst shape and mode (ms; timeout 10,000)".to_owned(),
        worst_at_the_hook_limit_ms(&hostile["hook_content"]),
        1000.0,
        true,
    ));
    list
}

/// Every shape's figures in a part of the section (the hook part has one level per mode).
fn shapes(part: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for value in part.as_object().into_iter().flat_map(|m| m.values()) {
        if value.get("flatness").is_some() {
            found.push(value);
        } else {
            found.extend(value.as_object().into_iter().flat_map(|m| m.values()));
        }
    }
    found
}

fn worst_flatness(part: &Value) -> f64 {
    shapes(part)
        .iter()
        .map(|shape| shape["flatness"].as_f64().unwrap_or(f64::NAN))
        .fold(0.0, f64::max)
}

/// The slowest hook body at the largest size (the hook limit), in milliseconds.
fn worst_at_the_hook_limit_ms(hook_content: &Value) -> f64 {
    let largest_mib = SIZES[SIZES.len() - 1] as f64 / MIB;
    shapes(hook_content)
        .iter()
        .filter_map(|shape| shape["ms_per_mib"].as_array()?.last()?.as_f64())
        .fold(0.0, f64::max)
        * largest_mib
}
