//! gitleaks' rule set (MIT, see `LICENSE-gitleaks`), kept as data: `gitleaks.toml` is the
//! upstream file unmodified below a header naming its commit, `gitleaks.json` its faithful
//! conversion (`convert-gitleaks.py`), loaded here.
//!
//! A rule applies as in gitleaks' `detect.go`: its keywords (lower-case) prefilter the text, the
//! secret is its `secretGroup`, else the first non-empty capture group, else the whole match; a
//! finding whose secret's Shannon entropy is not above the rule's `entropy` is dropped, and so is
//! one allowed by the global or the rule's allowlists (regexes on the secret, the match or the
//! line; stopwords in the secret). Without them the `generic-api-key` rule redacts ordinary
//! commands (`--key-file=…`, `auth=…`); named secrets of lower entropy are still caught by our
//! own context rules (`mod.rs`), which have no threshold.
//!
//! As in gitleaks, a rule runs only on text holding one of its keywords: the few rules whose
//! keyword is not part of the token (`airtable-personnal-access-token`, `facebook-access-token`:
//! shapes that alone look like any identifier) need that word nearby.
//!
//! Differences, each on the side of redacting more:
//! - rules restricted to a file `path` apply to any text (we have no paths), and the one rule
//!   that is only a path (`pkcs12-file`) is skipped; allowlists that need a path or a commit
//!   never allow anything;
//! - the "line" an allowlist reads is cut to [`LINE_WINDOW`] bytes on each side of the match
//!   (their patterns are unanchored, so a shorter line allows less, and the work stays linear).
//!
//! Go's RE2 syntax is translated where Rust's `regex` differs: `\b`, `\w`, `\d`, `\s` (and
//! negations) are ASCII in Go, Unicode in Rust, and inside a class Rust reads `[`, `&&`, `~~`
//! as set operations; see [`translate`].

use std::ops::Range;
use std::sync::{LazyLock, OnceLock};

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::Deserialize;

/// Bytes of the line each side of a match read by allowlists that target the line.
const LINE_WINDOW: usize = 256;

pub(super) const CONFIG_JSON: &str = include_str!("gitleaks.json");
#[cfg(test)]
pub(super) const CONFIG_TOML: &str = include_str!("gitleaks.toml");

#[derive(Deserialize)]
struct ConfigSpec {
    #[serde(default)]
    allowlist: AllowlistSpec,
    rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleSpec {
    id: String,
    regex: Option<String>,
    #[serde(default)]
    secret_group: usize,
    #[serde(default)]
    entropy: f64,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    allowlists: Vec<AllowlistSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AllowlistSpec {
    condition: Option<String>,
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
}

/// One gitleaks rule; its patterns are compiled the first time its keywords are seen.
pub struct Rule {
    pub id: String,
    pub keywords: Vec<String>,
    /// The rule's pattern translated to Rust's syntax.
    pub pattern: String,
    secret_group: usize,
    entropy: f64,
    allowlists: Vec<AllowlistSpec>,
    compiled: OnceLock<Result<Compiled, String>>,
}

struct Compiled {
    regex: Regex,
    allowlists: Vec<Allowlist>,
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Secret,
    Match,
    Line,
}

struct Allowlist {
    target: Target,
    /// `condition = "AND"`: every kind of check listed must allow.
    all: bool,
    /// It lists paths or commits, which a text never has.
    needs_path_or_commit: bool,
    regexes: Vec<Regex>,
    stopwords: Option<AhoCorasick>,
}

/// The rules with a pattern, in the file's order.
pub fn rules() -> &'static [Rule] {
    &CONFIG.0
}

/// The rules and the global allowlist as written; the allowlist is compiled on the first
/// finding ([`GLOBAL_ALLOWLIST`]), since most texts have none and its patterns cost memory.
static CONFIG: LazyLock<(Vec<Rule>, AllowlistSpec)> = LazyLock::new(|| {
    let spec: ConfigSpec = serde_json::from_str(CONFIG_JSON).expect("gitleaks.json is valid");
    let rules = spec
        .rules
        .into_iter()
        .filter_map(|rule| {
            Some(Rule {
                pattern: translate(rule.regex.as_deref()?),
                id: rule.id,
                keywords: rule.keywords.iter().map(|k| k.to_lowercase()).collect(),
                secret_group: rule.secret_group,
                entropy: rule.entropy,
                allowlists: rule.allowlists,
                compiled: OnceLock::new(),
            })
        })
        .collect();
    (rules, spec.allowlist)
});

static GLOBAL_ALLOWLIST: LazyLock<Allowlist> =
    LazyLock::new(|| allowlist(&CONFIG.1).unwrap_or_else(|e| panic!("gitleaks global allowlist: {e}")));

fn allowlist(spec: &AllowlistSpec) -> Result<Allowlist, String> {
    let regexes = spec
        .regexes
        .iter()
        .map(|r| Regex::new(&translate(r)).map_err(|e| format!("allowlist pattern {r:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let stopwords = (!spec.stopwords.is_empty()).then(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&spec.stopwords)
            .expect("stopwords build")
    });
    Ok(Allowlist {
        target: match spec.regex_target.as_deref() {
            Some("match") => Target::Match,
            Some("line") => Target::Line,
            _ => Target::Secret,
        },
        all: spec.condition.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("and")),
        needs_path_or_commit: !spec.paths.is_empty() || !spec.commits.is_empty(),
        regexes,
        stopwords,
    })
}

impl Allowlist {
    /// As gitleaks' `checkFindingAllowed` for one allowlist, without a path or a commit.
    fn allows(&self, secret: &str, whole: &str, line: &str) -> bool {
        let target = match self.target {
            Target::Secret => secret,
            Target::Match => whole,
            Target::Line => line,
        };
        let regex = !target.is_empty() && self.regexes.iter().any(|r| r.is_match(target));
        let stopword = !secret.is_empty() && self.stopwords.as_ref().is_some_and(|s| s.is_match(secret));
        if self.all {
            !self.needs_path_or_commit
                && (self.regexes.is_empty() || regex)
                && (self.stopwords.is_none() || stopword)
                && (!self.regexes.is_empty() || self.stopwords.is_some())
        } else {
            regex || stopword
        }
    }
}

impl Rule {
    fn compiled(&self) -> &Result<Compiled, String> {
        self.compiled.get_or_init(|| {
            let regex = regex::RegexBuilder::new(&self.pattern)
                .size_limit(1 << 24)
                .build()
                .map_err(|e| e.to_string())?;
            let allowlists = self.allowlists.iter().map(allowlist).collect::<Result<_, _>>()?;
            Ok(Compiled { regex, allowlists })
        })
    }

    /// Why the rule cannot be used, if it cannot.
    pub fn error(&self) -> Option<&str> {
        self.compiled().as_ref().err().map(String::as_str)
    }

    /// Pushes the byte range of every secret this rule finds in `text`.
    pub fn find(&self, text: &str, spans: &mut Vec<Range<usize>>) {
        let Ok(compiled) = self.compiled() else {
            return;
        };
        for caps in compiled.regex.captures_iter(text) {
            let whole = caps.get(0).expect("group 0");
            let secret = if self.secret_group > 0 {
                caps.get(self.secret_group)
            } else {
                caps.iter().skip(1).flatten().find(|g| !g.is_empty())
            }
            .unwrap_or(whole);
            let value = secret.as_str();
            if self.entropy > 0.0 && shannon_entropy(value) <= self.entropy {
                continue;
            }
            let line = line_around(text, whole.range());
            if std::iter::once(&*GLOBAL_ALLOWLIST)
                .chain(&compiled.allowlists)
                .any(|a| a.allows(value, whole.as_str(), line))
            {
                continue;
            }
            if !secret.is_empty() {
                spans.push(secret.range());
            }
        }
    }
}

/// The line holding `range`, cut to [`LINE_WINDOW`] bytes each side (on character boundaries).
fn line_around(text: &str, range: Range<usize>) -> &str {
    let mut start = range.start.saturating_sub(LINE_WINDOW);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (range.end + LINE_WINDOW).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let start = text[start..range.start].rfind('\n').map_or(start, |at| start + at + 1);
    let end = text[range.end..end].find('\n').map_or(end, |at| range.end + at);
    &text[start..end.max(range.end)]
}

/// Shannon entropy of the characters of `data` per byte, as gitleaks computes it.
pub fn shannon_entropy(data: &str) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::<char, usize>::new();
    for c in data.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let length = data.len() as f64;
    counts
        .values()
        .map(|&count| {
            let freq = count as f64 / length;
            -freq * freq.log2()
        })
        .sum()
}

/// Translates a Go (RE2) pattern to Rust's `regex` syntax with the same meaning: Perl classes
/// and word boundaries made ASCII as in Go, and characters Rust reads as class operators (`[`,
/// `&`, `~` inside a class) escaped.
pub fn translate(go: &str) -> String {
    const WORD: &str = "0-9A-Za-z_";
    const DIGIT: &str = "0-9";
    const SPACE: &str = r"\t\n\f\r ";
    let mut out = String::with_capacity(go.len() + 16);
    let mut chars = go.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (set, negated) = match e {
                    'w' => (WORD, false),
                    'W' => (WORD, true),
                    'd' => (DIGIT, false),
                    'D' => (DIGIT, true),
                    's' => (SPACE, false),
                    'S' => (SPACE, true),
                    'b' | 'B' if !in_class => {
                        out.push_str(if e == 'b' { r"(?-u:\b)" } else { r"(?-u:\B)" });
                        continue;
                    }
                    _ => {
                        out.push('\\');
                        out.push(e);
                        continue;
                    }
                };
                match (negated, in_class) {
                    (false, true) => out.push_str(set),
                    (false, false) => out.push_str(&format!("[{set}]")),
                    (true, _) => out.push_str(&format!("[^{set}]")),
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().expect("peeked"));
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                    out.push_str(r"\]");
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as `[:alpha:]`, the same in both.
                out.push('[');
                for c in chars.by_ref() {
                    out.push(c);
                    if c == ']' {
                        break;
                    }
                }
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            // Go reads a `{` that opens no repetition (`{n}`, `{n,}`, `{n,m}`) as a literal.
            '{' if !in_class && !opens_repetition(chars.clone()) => out.push_str(r"\{"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether the characters after a `{` are `n}`, `n,}` or `n,m}`.
fn opens_repetition(rest: impl Iterator<Item = char>) -> bool {
    let spec: String = rest.take_while(|&c| c != '}').take(12).collect();
    let (min, max) = spec.split_once(',').unwrap_or((&spec, "0"));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    !min.is_empty() && digits(min) && digits(max) && spec.len() < 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax_is_translated_to_the_same_meaning() {
        assert_eq!(
            translate(r"\b(AKIA[A-Z2-7]{16})\b"),
            r"(?-u:\b)(AKIA[A-Z2-7]{16})(?-u:\b)"
        );
        assert_eq!(translate(r"[\w.-]{0,50}\s"), r"[0-9A-Za-z_.-]{0,50}[\t\n\f\r ]");
        assert_eq!(translate(r"[\S]\W"), r"[[^\t\n\f\r ]][^0-9A-Za-z_]");
        assert_eq!(translate(r"[^]]+[[:alpha:]&&x~~]\\b"), r"[^\]]+[[:alpha:]\&\&x\~\~]\\b");
        assert_eq!(translate(r"[a[b]"), r"[a\[b]");
        assert_eq!(
            translate(r"^\$(?:\d+|{\d+})$ x{2} x{2,} x{1,3}"),
            r"^\$(?:[0-9]+|\{[0-9]+})$ x{2} x{2,} x{1,3}"
        );
    }

    #[test]
    fn the_global_allowlist_compiles_when_first_needed() {
        assert_eq!(GLOBAL_ALLOWLIST.regexes.len(), CONFIG.1.regexes.len());
        assert!(!GLOBAL_ALLOWLIST.regexes.is_empty());
    }

    #[test]
    fn entropy_is_computed_as_gitleaks_does() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }
}
