//! Redaction and truncation of untrusted JSON before storage (Claude Code hook payloads carry
//! tool inputs and outputs: commands, environments, file contents).
//!
//! Redaction comes first, so a secret cut by truncation is still removed:
//! - the value of any key naming a secret (`password`, `token`, `api_key`, `apiKey`,
//!   `clientSecret`, `authorization`, `cookie`, `DB_PASS`, ...) becomes [`REDACTED`]; under a key
//!   ending in `tokens` a number is a count and stays, a string (or strings) is redacted;
//! - inside strings, the secrets found by gitleaks' rule set ([`gitleaks`], ~220 token shapes:
//!   cloud keys, GitHub, GitLab, Stripe, Slack, ...) and by our own context rules: `Bearer`/`Basic`
//!   credentials, `NAME=value` assignments, `--flag value` options and `name: value` pairs whose
//!   name mentions a secret, credentials in URLs (also `:pass@` and a token as the user), private
//!   key blocks, and command lines gitleaks does not cover (`mysql -pSECRET`, `curl -u user:pass`
//!   and `-u KEY:`, `docker login -p` and `echo … | docker login --password-stdin`, `sshpass -p`,
//!   `az login -p`, `htpasswd -b`, `.netrc` lines, `aws configure set aws_secret_access_key …`,
//!   an AWS secret key beside its key id, npm `_authToken`). Only the secret is replaced, so the
//!   command stays readable (`export GITHUB_TOKEN=[REDACTED]`).
//!
//! Every rule runs on the original text and yields byte ranges, merged and replaced in one pass.
//! One Aho-Corasick automaton over every rule's keywords picks the rules worth running, so most
//! text runs no pattern. Work: O(n) for the keyword scan and the replacement, plus one search per
//! selected rule, linear for these patterns (the `regex` crate has no backtracking; its match
//! iterators are only quadratic for contrived patterns, and strings of JSON are bounded before
//! redaction, below).
//!
//! Truncation bounds the result (and the work: a string is redacted only up to a little past
//! its cut): strings to [`MAX_STRING_CHARS`] characters, arrays to
//! [`MAX_ITEMS`] items, objects to [`MAX_KEYS`] keys, nesting to [`MAX_DEPTH`] levels; each cut
//! says how much was left out.

pub mod gitleaks;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{LazyLock, OnceLock};

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};
use serde_json::{Map, Value};

use crate::domain::sanitize::sanitize_text;

pub const REDACTED: &str = "[REDACTED]";
pub const MAX_STRING_CHARS: usize = 2_000;
pub const MAX_ITEMS: usize = 50;
pub const MAX_KEYS: usize = 50;
pub const MAX_DEPTH: usize = 8;
/// Characters past the cut still read by the redaction, so a secret across the cut is found.
const REDACTION_MARGIN_CHARS: usize = 512;

/// One of our own secret patterns: the capture group holding the secret (the first group from
/// `secret` that took part in the match; 0 is the whole match), lower-case words of which a
/// matching text contains at least one, and a check that the match is a secret.
struct ContextRule {
    name: &'static str,
    /// Compiled the first time a text holds one of the rule's keywords (most never do).
    pattern: LazyPattern,
    secret: usize,
    keywords: &'static [&'static str],
    is_secret: IsSecret,
}

type IsSecret = fn(&Captures) -> bool;

const SECRET_WORDS: &[&str] = &["pass", "pwd", "secret", "token", "key", "credential"];

static CONTEXT_RULES: LazyLock<Vec<ContextRule>> = LazyLock::new(|| {
    // A name containing a secret word, which ends there or continues after a separator (so
    // `GITHUB_TOKEN` and `TOKEN_FILE` match, `input_tokens` does not); `PASS` only as a whole
    // word of the name (`DB_PASS`, not `BYPASS`); `PWD` only after another word (`DB_PWD`:
    // `PWD` alone is the shell's working directory).
    const NAME: &str = r"(?:[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API[_-]?KEY|ACCESS[_-]?KEY|ACCOUNT[_-]?KEY|PRIVATE[_-]?KEY|CREDENTIALS?)|(?:[A-Za-z0-9_.-]*[_.-])?PASS|[A-Za-z0-9_.-]*[_.-]PWD)(?:[_.-][A-Za-z0-9_.-]*)?";
    const VALUE: &str = r#"(?:"[^"]*"|'[^']*'|[^\s"'&;|]+)"#;
    let always: IsSecret = |_| true;
    let rules: Vec<(&'static str, String, usize, &'static [&'static str], IsSecret)> = vec![
        (
            "private-key-block",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)".to_owned(),
            0,
            &["private key-----"],
            always,
        ),
        (
            "authorization-scheme",
            r"(?i)\b(?:bearer|basic|token)\s+([A-Za-z0-9._~+/=-]{8,})".to_owned(),
            1,
            &["bearer", "basic", "token"],
            always,
        ),
        ("secret-assignment", format!(r"(?i)\b{NAME}\s*=\s*({VALUE})"), 1, SECRET_WORDS, always),
        (
            "secret-option",
            // `--password-stdin` takes no value.
            format!(r"(?i)(--?{NAME})(?:\s+|=)({VALUE})"),
            2,
            SECRET_WORDS,
            |caps| !caps[1].to_ascii_lowercase().ends_with("stdin"),
        ),
        ("secret-pair", format!(r#"(?i)"?{NAME}"?\s*:\s*({VALUE})"#), 1, SECRET_WORDS, always),
        (
            // A string under a name ending in `tokens` (`"refresh_tokens": "…"`); a number is a count.
            "tokens-pair",
            r#"(?i)"?[A-Za-z0-9_.-]*TOKENS"?\s*[:=]\s*("[^"]*"|'[^']*'|\[[^\]]*\]|[^\s"'&;|,}\]]+)"#.to_owned(),
            1,
            &["tokens"],
            |caps| !caps[1].bytes().all(|b| b.is_ascii_digit() || b" .,_-[]\t\n".contains(&b)),
        ),
        (
            // `user:password@`, `:password@` (Redis), or a token as the user (`https://TOKEN@`:
            // long, with a digit; `git@` and `alice@` are users).
            "url-credentials",
            r"(?i)\b[a-z][a-z0-9+.-]*://(?:([^/\s:@]*:[^/\s@]+)|([A-Za-z0-9_-]{20,}))@".to_owned(),
            1,
            &["://"],
            |caps| caps.get(2).is_none_or(|user| user.as_str().bytes().any(|b| b.is_ascii_digit())),
        ),
        (
            // `pwd` in a URL's query (`pass=` and `password=` are assignments, above).
            "url-query-password",
            r#"[?&]pwd=([^&\s#'"]+)"#.to_owned(),
            1,
            &["pwd="],
            always,
        ),
        (
            // An AWS secret access key (a whole run of 40 base64 characters) up to 200 characters
            // after its key id, or right after its variable's name without `=` (a prompt, a table).
            "aws-secret-access-key",
            r"(?:\bAKIA[0-9A-Z]{16}\b[^\n]{0,200}?[^A-Za-z0-9/+]|(?i:\b(?:aws)_secret_access_key)[\x22']?\s+)([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)".to_owned(),
            1,
            // (`(?:aws)_`, and no such keyword: the layer check reads `aws_` as the SDK's crates.)
            &["akia", "secret_access_key"],
            always,
        ),
        (
            // Stripe keys followed by `:` (`curl -u sk_test_…:`), which gitleaks' rule does not take.
            "stripe-key",
            r"\b[rs]k_(?:test|live)_[A-Za-z0-9]{10,}".to_owned(),
            0,
            &["sk_test_", "sk_live_", "rk_test_", "rk_live_"],
            always,
        ),
        (
            "aws-configure-set",
            format!(
                r"(?i)\baws\s+configure\s+set\s+[A-Za-z0-9_.-]*(?:secret|token|access_key|password)[A-Za-z0-9_.-]*\s+({VALUE})"
            ),
            1,
            &["configure"],
            always,
        ),
        (
            "npm-auth",
            format!(r#"(?i)(?:^|[\s:'"])_(?:authToken|auth|password)(?:\s*=\s*|\s+)({VALUE})"#),
            1,
            &["_auth", "_password"],
            always,
        ),
        (
            // Only the attached form is a password: a lone `-p` prompts for it, `-P` is the port.
            "mysql-password-option",
            r#"(?i)\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mysqlsh|mariadb|mariadb-dump|mariadb-admin)\b[^\n;&|]*?\s(?-i:-p)([^\s'"-][^\s'"]*|'[^']*'|"[^"]*")"#.to_owned(),
            1,
            &["mysql", "mariadb"],
            always,
        ),
        (
            // The password after `user:`; a user alone makes curl prompt.
            "curl-user",
            r#"(?i)\bcurl\b[^\n;&|]*?\s(?:-u|-U|--user|--proxy-user)(?:\s+|=)?(?:'[^':]*:([^']+)'|"[^":]*:([^"]+)"|[^\s'":-][^\s'":]*:([^\s'"]+)|:([^\s'"]+))"#.to_owned(),
            1,
            &["curl"],
            always,
        ),
        (
            // A key as the user with an empty password (`curl -u KEY:`, as Stripe's examples do).
            "curl-user-key",
            r#"(?i)\bcurl\b[^\n;&|]*?\s(?:-u|--user)(?:\s+|=)?['"]?([A-Za-z0-9_-]{16,}):(?:['"\s]|$)"#.to_owned(),
            1,
            &["curl"],
            always,
        ),
        (
            "sshpass-password",
            format!(r"(?i)\bsshpass\s+(?-i:-p)\s*({VALUE})"),
            1,
            &["sshpass"],
            always,
        ),
        (
            "az-login-password",
            format!(r"(?i)\baz\s+login\b[^\n;&|]*?\s(?-i:-p)(?:\s+|=)({VALUE})"),
            1,
            &["login"],
            |caps| !caps[1].starts_with('-'),
        ),
        (
            // `htpasswd -b FILE USER PASSWORD` (options anywhere before, `-C 10` with its value).
            "htpasswd-batch-file",
            format!(r"\bhtpasswd\s+({HTPASSWD_OPTIONS})[^\s-]\S*\s+\S+\s+({VALUE})"),
            2,
            &["htpasswd"],
            |caps| htpasswd_flags(&caps[1], "b", "n"),
        ),
        (
            // `htpasswd -nb USER PASSWORD`: no file, the hash goes to standard output.
            "htpasswd-batch-stdout",
            format!(r"\bhtpasswd\s+({HTPASSWD_OPTIONS})[^\s-]\S*\s+({VALUE})"),
            2,
            &["htpasswd"],
            |caps| htpasswd_flags(&caps[1], "bn", ""),
        ),
        (
            // `echo PASSWORD | docker login --password-stdin`.
            "piped-login-password",
            format!(
                r"(?i)\b(?:echo|printf)\s+(?:-[a-z]+\s+)*({VALUE})\s*\|\s*(?:sudo\s+)?(?:docker|podman|nerdctl|helm|buildah|skopeo)\s+(?:registry\s+)?login\b[^\n;&|]*?--password-stdin"
            ),
            1,
            &["login"],
            always,
        ),
        (
            "netrc-password",
            format!(r"(?i)\bmachine\s+\S+\s+login\s+\S+\s+password\s+({VALUE})"),
            1,
            &["machine"],
            always,
        ),
        (
            "docker-login-password",
            format!(r"(?i)\bdocker\s+login\b[^\n;&|]*?\s(?-i:-p)(?:\s+|=)?({VALUE})"),
            1,
            &["docker"],
            |caps| !caps[1].starts_with('-'),
        ),
        // Token shapes broader than gitleaks' (which want exact lengths or suffixes).
        ("aws-access-key-id", r"\bAKIA[0-9A-Z]{16}\b".to_owned(), 0, &["akia"], always),
        (
            "github-token",
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})".to_owned(),
            0,
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
            always,
        ),
        ("slack-token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}".to_owned(), 0, &["xox"], always),
        ("sk-api-key", r"\bsk-[A-Za-z0-9_-]{20,}".to_owned(), 0, &["sk-"], always),
        (
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}".to_owned(),
            0,
            &["eyj"],
            always,
        ),
        // This service's own API keys (`mcsk_<id>_<secret>`), wherever they are typed.
        (
            "metrics-api-key",
            format!(r"\b{}", crate::domain::api_keys::KEY_PATTERN),
            0,
            &[crate::domain::api_keys::KEY_PREFIX],
            always,
        ),
    ];
    rules
        .into_iter()
        .map(|(name, pattern, secret, keywords, is_secret)| ContextRule {
            name,
            pattern: LazyPattern(pattern, OnceLock::new()),
            secret,
            keywords,
            is_secret,
        })
        .collect()
});

/// `htpasswd` options before its arguments: flag clusters, `-C`/`-r` with their number.
const HTPASSWD_OPTIONS: &str = r"(?:(?:-[A-Za-z]*[Cr]\s+\d+|-\S+)\s+)+";

/// Whether `htpasswd` options hold every flag of `all` and none of `none` (`-nbB`, `-b -C 10`).
fn htpasswd_flags(options: &str, all: &str, none: &str) -> bool {
    let flags: String = options
        .split_whitespace()
        .filter_map(|option| option.strip_prefix('-'))
        .collect();
    all.chars().all(|c| flags.contains(c)) && !none.chars().any(|c| flags.contains(c))
}

/// A pattern and, once needed, its compiled form.
struct LazyPattern(String, OnceLock<Regex>);

impl ContextRule {
    fn pattern(&self) -> &Regex {
        let LazyPattern(pattern, compiled) = &self.pattern;
        compiled.get_or_init(|| Regex::new(pattern).unwrap_or_else(|e| panic!("context rule {}: {e}", self.name)))
    }

    fn find(&self, text: &str, spans: &mut Vec<Range<usize>>) {
        for caps in self.pattern().captures_iter(text) {
            if !(self.is_secret)(&caps) {
                continue;
            }
            let secret = if self.secret == 0 {
                caps.get(0)
            } else {
                caps.iter().skip(self.secret).flatten().next()
            };
            if let Some(secret) = secret.filter(|s| !s.is_empty()) {
                spans.push(secret.range());
            }
        }
    }
}

/// A rule of either set.
#[derive(Clone, Copy)]
enum RuleRef {
    Context(usize),
    Gitleaks(usize),
}

/// Every keyword of every rule (ASCII case-insensitive) and, per keyword, the rules it selects.
struct Prefilter {
    keywords: AhoCorasick,
    rules: Vec<Vec<RuleRef>>,
    words: Vec<String>,
}

/// Most rules one text may wake before it is redacted whole. A text full of secret words (every
/// rule's keywords fit in a couple of thousand characters) would otherwise make each rule scan it:
/// hundreds of times its size. Ordinary commands, even with several secrets, wake far fewer.
pub const MAX_RULES_PER_TEXT: usize = 32;

/// What replaces a text that wakes more than [`MAX_RULES_PER_TEXT`] rules.
pub const REDACTED_WHOLE: &str = "[REDACTED: too many secret patterns to check]";

/// Every rule's keywords (lower case): what wakes the rules.
pub fn keywords() -> &'static [String] {
    &PREFILTER.words
}

static PREFILTER: LazyLock<Prefilter> = LazyLock::new(|| {
    let mut words: Vec<String> = Vec::new();
    let mut rules: Vec<Vec<RuleRef>> = Vec::new();
    let mut add = |word: &str, rule: RuleRef| {
        let word = word.to_lowercase();
        match words.iter().position(|w| *w == word) {
            Some(at) => rules[at].push(rule),
            None => {
                words.push(word);
                rules.push(vec![rule]);
            }
        }
    };
    for (i, rule) in CONTEXT_RULES.iter().enumerate() {
        rule.keywords.iter().for_each(|w| add(w, RuleRef::Context(i)));
    }
    for (i, rule) in gitleaks::rules().iter().enumerate() {
        assert!(!rule.keywords.is_empty(), "gitleaks rule {} has no keyword", rule.id);
        rule.keywords.iter().for_each(|w| add(w, RuleRef::Gitleaks(i)));
    }
    let keywords = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(&words)
        .expect("keyword automaton");
    Prefilter { keywords, rules, words }
});

/// Whether a key names a secret (its value is dropped whatever it is). Keys are compared
/// without case or separators, so `apiKey`, `api-key` and `API_KEY` are the same; `*_tokens`
/// keys are counts (see [`is_token_list_key`] for when they are not).
pub fn is_secret_key(key: &str) -> bool {
    let key = sanitize_text(key);
    let words = key_words(&key);
    let joined: String = words.concat();
    let counts = joined.ends_with("tokens") || words.last().is_some_and(|w| w == "count" || w == "ms");
    !counts
        && ([
            "password",
            "passwd",
            "passphrase",
            "secret",
            "token",
            "apikey",
            "accesskey",
            "privatekey",
            "authorization",
            "credential",
            "cookie",
            "accountkey",
            "privkey",
            "jwt",
            "bearer",
        ]
        .iter()
        .any(|word| joined.contains(word))
            || words.iter().any(|w| w == "pass")
            // `DB_PWD`, not `PWD` (the working directory); `basic_auth`, not `auth_method`.
            || (words.len() > 1 && words.iter().any(|w| w == "pwd"))
            || words.last().is_some_and(|w| w == "auth"))
}

/// Whether a key names token strings when its value is text (`refresh_tokens`), while a number
/// under it is a count (`input_tokens`).
pub fn is_token_list_key(key: &str) -> bool {
    key_words(&sanitize_text(key)).concat().ends_with("tokens")
}

/// The lower-case words of a key: split at separators and at camelCase humps.
fn key_words(key: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            previous_lower = false;
            words.push(String::new());
            continue;
        }
        if (c.is_uppercase() && previous_lower) || words.is_empty() {
            words.push(String::new());
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        words.last_mut().expect("a word").extend(c.to_lowercase());
    }
    words.retain(|w| !w.is_empty());
    words
}

/// Whether a value under a `*tokens` key holds text rather than counts.
fn holds_strings(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Array(items) => items.iter().any(holds_strings),
        _ => false,
    }
}

/// `text` with every secret replaced by [`REDACTED`].
///
/// Text holding markup or NUL characters is sanitised first ([`sanitize_text`]), so a secret
/// split by a tag or a NUL (`ghp_ab<b></b>cd…`) is seen whole and cannot reappear when the result
/// is sanitised; the result is then sanitised text.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let text = sanitize_text(text);
    let Some(spans) = secret_spans(&text) else {
        return Cow::Borrowed(REDACTED_WHOLE);
    };
    if spans.is_empty() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&text[at..span.start]);
        out.push_str(REDACTED);
        at = span.end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Sorted, disjoint byte ranges of the secrets in `text`; `None` when the text wakes more than
/// [`MAX_RULES_PER_TEXT`] rules (it is then redacted whole, see there).
fn secret_spans(text: &str) -> Option<Vec<Range<usize>>> {
    let prefilter = &*PREFILTER;
    let gitleaks = gitleaks::rules();
    let mut context_hit = vec![false; CONTEXT_RULES.len()];
    let mut gitleaks_hit = vec![false; gitleaks.len()];
    for found in prefilter.keywords.find_overlapping_iter(text) {
        for rule in &prefilter.rules[found.pattern().as_usize()] {
            match *rule {
                RuleRef::Context(i) => context_hit[i] = true,
                RuleRef::Gitleaks(i) => gitleaks_hit[i] = true,
            }
        }
    }
    let woken = context_hit.iter().chain(&gitleaks_hit).filter(|hit| **hit).count();
    if woken > MAX_RULES_PER_TEXT {
        return None;
    }
    let mut spans = Vec::new();
    for (rule, _) in CONTEXT_RULES.iter().zip(&context_hit).filter(|(_, hit)| **hit) {
        rule.find(text, &mut spans);
    }
    for (rule, _) in gitleaks.iter().zip(&gitleaks_hit).filter(|(_, hit)| **hit) {
        rule.find(text, &mut spans);
    }
    spans.sort_unstable_by_key(|span| span.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    Some(merged)
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
                let v = if (is_secret_key(key) && !v.is_null()) || (is_token_list_key(key) && holds_strings(v)) {
                    Value::String(REDACTED.into())
                } else {
                    bounded(v, depth + 1)
                };
                // A key is text too (MCP tool inputs, environments): a secret used as one goes.
                kept.insert(bounded_text(key), v);
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
    fn every_context_rule_compiles() {
        for rule in CONTEXT_RULES.iter() {
            assert!(rule.pattern().captures_len() > 0, "{}", rule.name);
        }
    }

    #[test]
    fn every_gitleaks_rule_compiles() {
        // Rules that cannot be compiled in Rust, with the reason; none today.
        const ALLOWED_TO_FAIL: &[&str] = &[];
        let failures: Vec<String> = gitleaks::rules()
            .iter()
            .filter_map(|rule| rule.error().map(|e| format!("{}: {e}", rule.id)))
            .filter(|failure| !ALLOWED_TO_FAIL.iter().any(|id| failure.starts_with(&format!("{id}:"))))
            .collect();
        assert!(
            failures.is_empty(),
            "{} rules do not compile:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn the_loaded_rules_are_those_of_the_gitleaks_file() {
        let toml_ids: Vec<&str> = gitleaks::CONFIG_TOML
            .lines()
            .filter_map(|line| line.strip_prefix("id = \""))
            .map(|rest| rest.trim_end_matches('"'))
            .collect();
        let json: Value = serde_json::from_str(gitleaks::CONFIG_JSON).unwrap();
        let json_ids: Vec<&str> = json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(toml_ids, json_ids);
        assert_eq!(gitleaks::CONFIG_TOML.matches("\n[[rules]]\n").count(), json_ids.len());
        // Only `pkcs12-file` (a file name rule, no pattern) is not loaded.
        let loaded: Vec<&str> = gitleaks::rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(loaded.len(), json_ids.len() - 1);
        assert!(!loaded.contains(&"pkcs12-file"));
        assert!(loaded.len() > 200, "{} rules", loaded.len());
    }

    /// A string the HIR matches, choosing alternatives and characters from `seed` (letters and
    /// digits first, rotating so the secret has a high entropy), repetitions at their minimum
    /// (or 24 when unbounded above it), optional parts left out.
    fn sample(hir: &regex_syntax::hir::Hir, seed: usize, counter: &mut usize, out: &mut String) {
        use regex_syntax::hir::{Class, HirKind};
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => {}
            HirKind::Literal(literal) => out.push_str(std::str::from_utf8(&literal.0).unwrap()),
            HirKind::Class(class) => {
                let chars: Vec<char> = match class {
                    Class::Unicode(c) => c.iter().flat_map(|r| (r.start()..=r.end()).take(256)).collect(),
                    Class::Bytes(c) => c.iter().flat_map(|r| r.start()..=r.end()).map(char::from).collect(),
                };
                let preferred = [
                    char::is_ascii_alphanumeric,
                    |c: &char| c.is_ascii_graphic(),
                    |c: &char| c.is_ascii(),
                ];
                let pool = preferred
                    .iter()
                    .map(|keep| chars.iter().copied().filter(keep).collect::<Vec<_>>())
                    .find(|pool| !pool.is_empty())
                    .unwrap_or(chars);
                *counter += 1;
                out.push(pool[(*counter * 7 + seed) % pool.len()]);
            }
            HirKind::Repetition(rep) => {
                let times = if rep.min == 0 && seed % 3 != 2 {
                    0
                } else {
                    let want = (rep.min as usize).max(if seed.is_multiple_of(2) { 24 } else { 40 });
                    rep.max.map_or(want, |max| want.min(max as usize)).max(rep.min as usize)
                };
                for _ in 0..times {
                    sample(&rep.sub, seed, counter, out);
                }
            }
            HirKind::Capture(capture) => sample(&capture.sub, seed, counter, out),
            HirKind::Concat(parts) => parts.iter().for_each(|part| sample(part, seed, counter, out)),
            HirKind::Alternation(branches) => sample(&branches[(seed / 3) % branches.len()], seed, counter, out),
        }
    }

    #[test]
    fn every_gitleaks_rule_redacts_a_sample_of_its_own() {
        // Samples the generator cannot build (word boundaries between generated parts).
        const WRITTEN: &[(&str, &str)] = &[(
            "kubernetes-secret-yaml",
            "kind: Secret\nmetadata:\n  name: db\ndata:\n  password: c2VjcmV0LXBhc3N3b3JkLTEyMw==\n",
        )];
        let mut failures = Vec::new();
        for rule in gitleaks::rules() {
            let hir = regex_syntax::ParserBuilder::new().build().parse(&rule.pattern).unwrap();
            let written = WRITTEN
                .iter()
                .find(|(id, _)| *id == rule.id)
                .map(|(_, text)| text.to_string());
            // The first sample the rule reports (entropy and allowlists pass).
            let found = written.into_iter().chain((0..60).map(|seed| {
                let mut text = String::new();
                sample(&hir, seed, &mut 0, &mut text);
                text
            }));
            let found = found.into_iter().find_map(|text| {
                let mut spans = Vec::new();
                rule.find(&text, &mut spans);
                let secret = text[spans.first()?.clone()].to_owned();
                Some((text, secret))
            });
            let Some((text, secret)) = found else {
                failures.push(format!("{}: no generated sample is reported by the rule", rule.id));
                continue;
            };
            // gitleaks runs a rule only on text holding one of its keywords (`airtable` for an
            // Airtable token, which alone looks like any identifier): add one when the sample has none.
            let lower = text.to_lowercase();
            let context = match rule.keywords.iter().any(|k| lower.contains(k.as_str())) {
                true => "run",
                false => rule.keywords[0].as_str(),
            };
            let line = format!("{context} {text}\nnext");
            let out = clean(&line);
            if out.contains(&secret) {
                failures.push(format!("{}: {secret:?} kept in {out:?}", rule.id));
            }
        }
        assert!(
            failures.is_empty(),
            "{} rules fail:\n{}",
            failures.len(),
            failures.join("\n")
        );
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
            (
                "metrics-import --key mcsk_0123456789abcdef0123456789abcdef_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef data.json",
                "metrics-import --key [REDACTED] data.json",
            ),
            (
                "curl -H \"x-api: mcsk_0123456789abcdef0123456789abcdef_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\" $URL",
                "curl -H \"x-api: [REDACTED]\" $URL",
            ),
            ("{\"password\": \"hunter2\"}", "{\"password\": [REDACTED]}"),
            // Context rules gitleaks does not cover; each leak was reproduced.
            (
                "aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                "aws configure set aws_secret_access_key [REDACTED]",
            ),
            (
                "aws configure set default.aws_session_token FwoGZXIvYXdzEBYaDH",
                "aws configure set default.aws_session_token [REDACTED]",
            ),
            (
                "npm config set //registry.npmjs.org/:_authToken npm_abcdefSECRET123",
                "npm config set //registry.npmjs.org/:_authToken [REDACTED]",
            ),
            (
                "echo //registry.npmjs.org/:_authToken=abcdefSECRET123 > .npmrc",
                "echo //registry.npmjs.org/:_authToken=[REDACTED] > .npmrc",
            ),
            ("mysql -u root -pS3cretPw mydb", "mysql -u root -p[REDACTED] mydb"),
            (
                "mysqldump -h db -P 3306 -p'S3 cret' app",
                "mysqldump -h db -P 3306 -p[REDACTED] app",
            ),
            // gitleaks' curl-auth-user rule takes the user too.
            ("curl -u alice:S3cretPw https://api", "curl -u [REDACTED] https://api"),
            (
                "curl --user 'alice:S3cret Pw' https://api",
                "curl --user [REDACTED] https://api",
            ),
            ("curl -sS --user=alice:S3cretPw x", "curl -sS --user=[REDACTED] x"),
            ("curl -u :S3cretPw x", "curl -u :[REDACTED] x"),
            ("DB_PASS=S3cretPw ./run", "DB_PASS=[REDACTED] ./run"),
            (
                "SMTP_PASS=\"S3cret\" PASS=hunter2 make",
                "SMTP_PASS=[REDACTED] PASS=[REDACTED] make",
            ),
            (
                "docker login -u bob -p S3cretPw registry.example.com",
                "docker login -u bob -p [REDACTED] registry.example.com",
            ),
            (
                "docker login --username bob --password S3cretPw ghcr.io",
                "docker login --username bob --password [REDACTED] ghcr.io",
            ),
            (
                "cat pw | docker login --password-stdin -u bob registry.example.com",
                "cat pw | docker login --password-stdin -u bob registry.example.com",
            ),
            (
                "{\"refresh_tokens\": \"abcDEF123456\"}",
                "{\"refresh_tokens\": [REDACTED]}",
            ),
            (
                "const cfg = {clientSecret: 's3cr3t'}",
                "const cfg = {clientSecret: [REDACTED]}",
            ),
            (
                "privateKey=abc123 accessKey=def456",
                "privateKey=[REDACTED] accessKey=[REDACTED]",
            ),
            // Each reproduced by a review as kept in clear.
            (
                "curl -u sk_test_mElNYgZ4hJ34d2qEhgdtr3CU: https://api.stripe.com/v1/charges",
                "curl -u [REDACTED]: https://api.stripe.com/v1/charges",
            ),
            (
                "curl https://api.example.com -u 'Xb3kLmP9qR2sT7vW1yZ4:' -d x=1",
                "curl https://api.example.com -u '[REDACTED]:' -d x=1",
            ),
            (
                "redis-cli -u redis://:O0Ju1XZ4FdG59LFinRx2@cache:6379/0",
                "redis-cli -u redis://[REDACTED]@cache:6379/0",
            ),
            (
                "git clone https://Qbms19G51LOGCjkWPlBydm5yig9a9aJqHfiZQ9Ol@github.com/o/r.git",
                "git clone https://[REDACTED]@github.com/o/r.git",
            ),
            ("export DB_PWD=S3cretPw", "export DB_PWD=[REDACTED]"),
            (
                "curl 'https://x.example.com/login?user=bob&pwd=S3cretPw&x=1'",
                "curl 'https://x.example.com/login?user=bob&pwd=[REDACTED]&x=1'",
            ),
            ("sshpass -p S3cretPw ssh bob@host", "sshpass -p [REDACTED] ssh bob@host"),
            (
                "az login -u bob@example.com -p S3cretPw",
                "az login -u bob@example.com -p [REDACTED]",
            ),
            (
                "htpasswd -b /etc/nginx/.htpasswd alice S3cretPw",
                "htpasswd -b /etc/nginx/.htpasswd alice [REDACTED]",
            ),
            ("htpasswd -nbB alice S3cretPw", "htpasswd -nbB alice [REDACTED]"),
            ("htpasswd -nbBC 10 admin S3cretPw", "htpasswd -nbBC 10 admin [REDACTED]"),
            (
                // A longer run after a key id is a hash, not a secret key: it stays whole.
                "AKIAABCDEFGHIJKLMNOP signed 3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e",
                "[REDACTED] signed 3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e",
            ),
            (
                "htpasswd -bBC 10 .htpasswd alice S3cretPw",
                "htpasswd -bBC 10 .htpasswd alice [REDACTED]",
            ),
            (
                "htpasswd -B -C 10 -b users.htpasswd alice S3cretPw",
                "htpasswd -B -C 10 -b users.htpasswd alice [REDACTED]",
            ),
            (
                "echo S3cretPw | docker login --password-stdin -u bob ghcr.io",
                "echo [REDACTED] | docker login --password-stdin -u bob ghcr.io",
            ),
            (
                "printf 'machine api.example.com login bob password S3cretPw' > ~/.netrc",
                "printf 'machine api.example.com login bob password [REDACTED]' > ~/.netrc",
            ),
            (
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0S2V5VmFsdWU=;EndpointSuffix=core.windows.net",
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=[REDACTED];EndpointSuffix=core.windows.net",
            ),
            (
                "my key is AKIAABCDEFGHIJKLMNOP and the secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok",
                "my key is [REDACTED] and the secret [REDACTED] ok",
            ),
            (
                "export AWS_SECRET_ACCESS_KEY wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "export AWS_SECRET_ACCESS_KEY [REDACTED]",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "{input}");
        }
    }

    #[test]
    fn token_shapes_of_the_gitleaks_rules_are_redacted_in_commands() {
        for (command, secret) in [
            (
                "stripe charges list --api-key sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (
                "STRIPE=rk_live_51H8bQ2LkdIwHu7ix0abcdXYZ run",
                "51H8bQ2LkdIwHu7ix0abcdXYZ",
            ),
            (
                "git push https://oauth2:glpat-x7Yq3LmN9pR2sT5vW8zA@gitlab.com/x",
                "x7Yq3LmN9pR2sT5vW8zA",
            ),
            ("echo glpat-x7Yq3LmN9pR2sT5vW8zA", "x7Yq3LmN9pR2sT5vW8zA"),
            (
                "maps?key=AIzaSyD4x7Yq3LmN9pR2sT5vW8zAbCdEfGhIjK1 ",
                "SyD4x7Yq3LmN9pR2sT5vW8zAbCdEfGhIjK1",
            ),
        ] {
            let out = clean(command);
            assert!(!out.contains(secret), "{command} became {out}");
            assert!(out.contains(REDACTED), "{out}");
        }
    }

    #[test]
    fn a_secret_split_by_markup_or_nul_is_still_redacted() {
        for text in [
            "export GITHUB_TOKEN=ghp_abcdefghij<b></b>klmnopqrstuvwxyz0123",
            "use ghp_abcdefghij\0klmnopqrstuvwxyz0123 now",
            "use ghp_abcdefghij<!-- x -->klmnopqrstuvwxyz0123 now",
            "PGPASS<i>WORD</i>=hunter2 psql",
        ] {
            let out = clean(text);
            let stored = sanitize_text(&out);
            assert!(
                !stored.contains("klmnopqrstuvwxyz0123") && !stored.contains("hunter2"),
                "{text:?} became {stored:?}"
            );
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
            "cargo test -p shared --lib redact",
            "ls -la /tmp",
            "git status",
            "git log --oneline -5 && git diff HEAD~1 -- src/main.rs",
            "input_tokens=300 output_tokens=800",
            "{\"input_tokens\": 300, \"cache_read_input_tokens\": 1200}",
            "the token budget was fine",
            "npm run build -- --mode production",
            "npm install && npm test -- --passWithNoTests",
            "cat /home/alice/projects/api/src/auth/keys.rs",
            "docker run -p 8080:80 nginx",
            "mysql -u root -p mydb",
            "curl -u alice https://api.example.com/v1/items",
            "kubectl get pods -n default -o wide",
            "session 6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f ended",
            "tool_use_id toolu_01ABCDEF ran in 1250 ms",
            "BYPASS=1 make",
            "sort -u names.txt | head",
            "python -m pytest tests/test_auth.py -k token_refresh",
            "export PATH=$HOME/.cargo/bin:$PATH",
            "let key = map.get(&id);",
            "cd $PWD/src && PWD=/tmp make",
            "git clone git@github.com:o/r.git && git clone ssh://git@github.com/o/r.git",
            "open https://alice@example.com/dashboard",
            "echo hello | docker login --help",
            "az login --use-device-code",
            "htpasswd -D .htpasswd alice",
            "the auth_method is oauth; the author wrote it",
            "cd x;PWD=/tmp make",
        ] {
            assert_eq!(clean(text), text);
        }
    }

    /// How many rules `text` wakes.
    fn woken(text: &str) -> usize {
        let mut woken = std::collections::HashSet::new();
        for found in PREFILTER.keywords.find_overlapping_iter(text) {
            for rule in &PREFILTER.rules[found.pattern().as_usize()] {
                woken.insert(match *rule {
                    RuleRef::Context(i) => (0, i),
                    RuleRef::Gitleaks(i) => (1, i),
                });
            }
        }
        woken.len()
    }

    #[test]
    fn a_text_that_wakes_too_many_rules_is_redacted_whole_so_its_cost_stays_bounded() {
        let soup = keywords().join(" ");
        assert!(woken(&soup) > MAX_RULES_PER_TEXT);
        assert_eq!(clean(&format!("{soup} hunter2")), REDACTED_WHOLE);
    }

    #[test]
    fn ordinary_commands_even_with_secrets_are_redacted_precisely_within_the_rule_budget() {
        let realistic = [
            "export AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY && aws s3 ls",
            "curl -H 'Authorization: Bearer abc.def.ghi-123456' -u alice:pw https://api.github.com/repos --data token=x",
            "GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789 SLACK_TOKEN=xoxb-1234567890-abcdef npm publish",
            "docker login -u bob -p s3cr3t ghcr.io && kubectl create secret generic db --from-literal=password=pw",
            "stripe listen --api-key sk_live_abcdefghijklmnopqrstuvwx --forward-to localhost:3000/webhook",
        ];
        for text in realistic {
            assert!(woken(text) <= MAX_RULES_PER_TEXT, "{} rules for {text}", woken(text));
            assert_ne!(clean(text), REDACTED_WHOLE);
        }
    }

    #[test]
    fn secrets_used_as_keys_are_redacted_too() {
        let out = redact_and_truncate(&json!({"ghp_abcdefghijklmnopqrstuvwxyz0123456789": "x", "plain": 1}));
        let text = out.to_string();
        assert!(!text.contains("ghp_abcdefghij"), "{text}");
        assert_eq!(out["plain"], 1);
    }

    #[test]
    fn values_of_secret_keys_are_dropped_but_token_counts_stay() {
        let v = json!({"env": {"DB_PASSWORD": "x", "Api-Key": 42, "HOME": "/home/a", "DB_PASS": "p",
                               "PWD": "/home/a/src", "BYPASS": "1"},
                       "usage": {"input_tokens": 300, "output_tokens": 20},
                       "headers": {"Authorization": "Basic abc"},
                       "creds": {"privateKey": "k", "accessKey": "a", "clientSecret": "c", "apiKey": "x",
                                 "refresh_tokens": "abc123", "api_tokens": ["t1", "t2"]}});
        let out = redact_and_truncate(&v);
        assert_eq!(out["env"]["DB_PASSWORD"], REDACTED);
        assert_eq!(out["env"]["Api-Key"], REDACTED);
        assert_eq!(out["env"]["DB_PASS"], REDACTED);
        assert_eq!(out["env"]["HOME"], "/home/a");
        assert_eq!(out["env"]["PWD"], "/home/a/src");
        assert_eq!(out["env"]["BYPASS"], "1");
        assert_eq!(out["usage"]["input_tokens"], 300);
        assert_eq!(out["usage"]["output_tokens"], 20);
        assert_eq!(out["headers"]["Authorization"], REDACTED);
        for key in [
            "privateKey",
            "accessKey",
            "clientSecret",
            "apiKey",
            "refresh_tokens",
            "api_tokens",
        ] {
            assert_eq!(out["creds"][key], REDACTED, "{key}");
        }
    }

    #[test]
    fn secret_keys_are_recognised_in_any_case_style() {
        for key in [
            "privateKey",
            "private-key",
            "PRIVATE_KEY",
            "accessKey",
            "clientSecret",
            "apiKey",
            "APIKey",
            "x-api-key",
            "db_pass",
            "Pass",
            "pass<b></b>word",
            "sessionToken",
            "DB_PWD",
            "auth",
            "basic_auth",
            "privkey",
            "jwt",
            "bearer",
            "AccountKey",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "input_tokens",
            "outputTokens",
            "token_count",
            "HOME",
            "PWD",
            "bypass",
            "passthrough",
            "keyboard_layout",
            "duration_ms",
            "auth_method",
            "author",
            "oauth_provider",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
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
