//! Redaction and truncation of untrusted JSON before storage (Claude Code hook payloads carry
//! tool inputs and outputs: commands, environments, file contents).
//!
//! Redaction comes first, so a secret cut by truncation is still removed:
//! - the value of any key naming a secret (`password`, `token`, `api_key`, `authorization`,
//!   `cookie`, ...; counts such as `input_tokens` are kept) becomes [`REDACTED`];
//! - inside strings: `Bearer`/`Basic` credentials, `NAME=value` assignments and `--flag value`
//!   options whose name mentions a secret, `password: value` pairs, credentials in URLs, private
//!   key blocks, and well-known token shapes (AWS access key ids, GitHub, Slack, `sk-` API keys,
//!   JWTs).
//!
//! Truncation bounds the result (and the work: a string is redacted only up to a little past
//! its cut): strings to [`MAX_STRING_CHARS`] characters, arrays to
//! [`MAX_ITEMS`] items, objects to [`MAX_KEYS`] keys, nesting to [`MAX_DEPTH`] levels; each cut
//! says how much was left out.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex_lite::Regex;
use serde_json::{Map, Value};

pub const REDACTED: &str = "[REDACTED]";
pub const MAX_STRING_CHARS: usize = 2_000;
pub const MAX_ITEMS: usize = 50;
pub const MAX_KEYS: usize = 50;
pub const MAX_DEPTH: usize = 8;
/// Characters past the cut still read by the redaction, so a secret across the cut is found.
const REDACTION_MARGIN_CHARS: usize = 512;

/// A secret pattern, the replacement (`$1`... keep the non-secret part of a match), and
/// lower-case words of which a matching text contains at least one: most text contains none, and
/// a substring search is far cheaper than the pattern.
struct SecretPattern {
    pattern: Regex,
    replacement: &'static str,
    triggers: &'static [&'static str],
}

const SECRET_WORDS: &[&str] = &["passw", "passphrase", "secret", "token", "key", "credential"];

static SECRET_PATTERNS: LazyLock<Vec<SecretPattern>> = LazyLock::new(|| {
    // A name containing a secret word, which ends there or continues after a separator (so
    // `GITHUB_TOKEN` and `TOKEN_FILE` match, `input_tokens` does not).
    const NAME: &str = r"[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY|CREDENTIALS?)(?:[_.-][A-Za-z0-9_.-]*)?";
    const VALUE: &str = r#"(?:"[^"]*"|'[^']*'|[^\s"'&;|]+)"#;
    let patterns: [(String, &'static str, &'static [&'static str]); 11] = [
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)".to_owned(),
            REDACTED,
            &["private key-----"],
        ),
        (
            r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}".to_owned(),
            "$1 [REDACTED]",
            &["bearer", "basic", "token"],
        ),
        (format!(r"(?i)\b({NAME})\s*=\s*{VALUE}"), "$1=[REDACTED]", SECRET_WORDS),
        (
            format!(r"(?i)(--?{NAME})(\s+|=){VALUE}"),
            "$1$2[REDACTED]",
            SECRET_WORDS,
        ),
        (
            format!(r#"(?i)("?{NAME}"?\s*:\s*){VALUE}"#),
            "$1[REDACTED]",
            SECRET_WORDS,
        ),
        (
            r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@".to_owned(),
            "$1[REDACTED]@",
            &["://"],
        ),
        (r"\bAKIA[0-9A-Z]{16}\b".to_owned(), REDACTED, &["akia"]),
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})".to_owned(),
            REDACTED,
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        ),
        (r"\bxox[abprs]-[A-Za-z0-9-]{10,}".to_owned(), REDACTED, &["xox"]),
        (r"\bsk-[A-Za-z0-9_-]{20,}".to_owned(), REDACTED, &["sk-"]),
        (
            r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}".to_owned(),
            REDACTED,
            &["eyj"],
        ),
    ];
    patterns
        .into_iter()
        .map(|(pattern, replacement, triggers)| SecretPattern {
            pattern: Regex::new(&pattern).expect("valid secret pattern"),
            replacement,
            triggers,
        })
        .collect()
});

/// Whether a key names a secret (its value is dropped whatever it is).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    let counts = key.ends_with("tokens") || key.ends_with("_count") || key.ends_with("_ms");
    !counts
        && [
            "password",
            "passwd",
            "passphrase",
            "secret",
            "token",
            "apikey",
            "api_key",
            "access_key",
            "private_key",
            "authorization",
            "credential",
            "cookie",
        ]
        .iter()
        .any(|word| key.contains(word))
}

/// `text` with every secret pattern replaced.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let mut out = Cow::Borrowed(text);
    for secret in SECRET_PATTERNS.iter() {
        if !secret.triggers.iter().any(|word| lower.contains(word)) {
            continue;
        }
        if let Cow::Owned(replaced) = secret.pattern.replace_all(&out, secret.replacement) {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// `value` redacted, then truncated to the bounds above.
pub fn redact_and_truncate(value: &Value) -> Value {
    bounded(value, 0)
}

fn bounded(value: &Value, depth: usize) -> Value {
    match value {
        Value::String(s) => Value::String(bounded_text(s)),
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => {
            Value::String(format!("[truncated: nested deeper than {MAX_DEPTH} levels]"))
        }
        Value::Array(items) => {
            let mut kept: Vec<Value> = items.iter().take(MAX_ITEMS).map(|v| bounded(v, depth + 1)).collect();
            if items.len() > MAX_ITEMS {
                kept.push(Value::String(format!(
                    "[truncated: {} more items]",
                    items.len() - MAX_ITEMS
                )));
            }
            Value::Array(kept)
        }
        Value::Object(map) => {
            let mut kept = Map::new();
            let room = if map.len() > MAX_KEYS { MAX_KEYS - 1 } else { MAX_KEYS };
            for (key, v) in map.iter().take(room) {
                let v = if is_secret_key(key) && !v.is_null() {
                    Value::String(REDACTED.into())
                } else {
                    bounded(v, depth + 1)
                };
                kept.insert(key.chars().take(MAX_STRING_CHARS).collect(), v);
            }
            if map.len() > room {
                kept.insert(
                    "_truncated".into(),
                    Value::String(format!("{} more keys", map.len() - room)),
                );
            }
            Value::Object(kept)
        }
        other => other.clone(),
    }
}

/// Enough of `text` to redact before the cut: every secret that starts before the cut is seen
/// whole (or, for an unterminated key block, to the end), and the work per string is bounded.
fn prefix(text: &str) -> &str {
    match text.char_indices().nth(MAX_STRING_CHARS + REDACTION_MARGIN_CHARS) {
        None => text,
        Some((cut, _)) => &text[..cut],
    }
}

/// `text` redacted and cut to [`MAX_STRING_CHARS`], saying how long it was when cut.
fn bounded_text(text: &str) -> String {
    let head = prefix(text);
    let redacted = redact_text(head);
    let cut = redacted.char_indices().nth(MAX_STRING_CHARS).map(|(at, _)| at);
    if cut.is_none() && head.len() == text.len() {
        return redacted.into_owned();
    }
    let kept = &redacted[..cut.unwrap_or(redacted.len())];
    format!("{kept}…[truncated: the text had {} characters]", text.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clean(text: &str) -> String {
        redact_text(text).into_owned()
    }

    #[test]
    fn secrets_in_commands_are_redacted_and_the_command_stays_readable() {
        let cases = [
            (
                "export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123",
                "export GITHUB_TOKEN=[REDACTED]",
            ),
            ("PGPASSWORD='hunter2' psql -h db", "PGPASSWORD=[REDACTED] psql -h db"),
            (
                "curl -H 'Authorization: Bearer abc.def.ghi-123456' https://api",
                "curl -H 'Authorization: Bearer [REDACTED]' https://api",
            ),
            ("mysql --password s3cr3t -u root", "mysql --password [REDACTED] -u root"),
            ("deploy --api-key=AbC123xyz", "deploy --api-key=[REDACTED]"),
            (
                "git clone https://bob:pa55@github.com/x.git",
                "git clone https://[REDACTED]@github.com/x.git",
            ),
            (
                "aws_access_key_id: AKIAABCDEFGHIJKLMNOP",
                "aws_access_key_id: [REDACTED]",
            ),
            ("key AKIAABCDEFGHIJKLMNOP here", "key [REDACTED] here"),
            (
                "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuv",
                "ANTHROPIC_API_KEY=[REDACTED]",
            ),
            ("use sk-proj-abcdefghijklmnopqrstuvwx now", "use [REDACTED] now"),
            ("slack xoxb-1234567890-abcdef", "slack [REDACTED]"),
            ("jwt eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", "jwt [REDACTED]"),
            ("{\"password\": \"hunter2\"}", "{\"password\": [REDACTED]}"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "{input}");
        }
    }

    #[test]
    fn private_key_blocks_are_removed_whole() {
        let pem = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----\nafter";
        assert_eq!(clean(pem), "before\n[REDACTED]\nafter");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "cargo test --workspace",
            "ls -la /tmp",
            "input_tokens=300 output_tokens=800",
            "the token budget was fine",
            "npm run build -- --mode production",
        ] {
            assert_eq!(clean(text), text);
        }
    }

    #[test]
    fn values_of_secret_keys_are_dropped_but_token_counts_stay() {
        let v = json!({"env": {"DB_PASSWORD": "x", "Api-Key": 42, "HOME": "/home/a"},
                       "usage": {"input_tokens": 300}, "headers": {"Authorization": "Basic abc"}});
        let out = redact_and_truncate(&v);
        assert_eq!(out["env"]["DB_PASSWORD"], REDACTED);
        assert_eq!(out["env"]["Api-Key"], REDACTED);
        assert_eq!(out["env"]["HOME"], "/home/a");
        assert_eq!(out["usage"]["input_tokens"], 300);
        assert_eq!(out["headers"]["Authorization"], REDACTED);
    }

    #[test]
    fn large_values_are_truncated_and_say_so() {
        let long = "é".repeat(MAX_STRING_CHARS + 10);
        let out = redact_and_truncate(&json!({"s": long, "a": (0..60).collect::<Vec<_>>()}));
        let s = out["s"].as_str().unwrap();
        assert!(s.starts_with(&"é".repeat(MAX_STRING_CHARS)));
        assert!(s.ends_with(&format!(
            "…[truncated: the text had {} characters]",
            MAX_STRING_CHARS + 10
        )));
        let a = out["a"].as_array().unwrap();
        assert_eq!(a.len(), MAX_ITEMS + 1);
        assert_eq!(a[MAX_ITEMS], "[truncated: 10 more items]");

        let wide: Map<String, Value> = (0..80).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let out = redact_and_truncate(&Value::Object(wide));
        assert_eq!(out.as_object().unwrap().len(), MAX_KEYS);
        assert_eq!(out["_truncated"], "31 more keys");

        let mut deep = json!("bottom");
        for _ in 0..20 {
            deep = json!({ "d": deep });
        }
        let out = redact_and_truncate(&deep).to_string();
        assert!(out.contains("nested deeper than 8 levels") && !out.contains("bottom"));
    }

    #[test]
    fn a_secret_cut_by_truncation_is_still_redacted() {
        let text = format!("{}export TOKEN=abcdefghijkl", "x".repeat(MAX_STRING_CHARS - 10));
        let out = redact_and_truncate(&json!(text));
        assert!(!out.as_str().unwrap().contains("abcdef"));
    }
}
