//! Removal of HTML and script content from free-form text before it is stored.
//!
//! The metrics come from coding tools, so text is full of things that look like markup but are
//! not (`Vec<String>`, `Promise<void>`, `a < b`). Only real HTML is removed:
//! - dangerous elements with everything inside them (`<script>…</script>`, `<style>`, `<iframe>`,
//!   `<object>`, `<embed>`, `<svg>`, …), up to the end of the text when they are not closed;
//! - the tags (not the text) of other HTML elements, attributes and all (`<img onerror=…>`, `<a>`);
//! - HTML comments;
//! - NUL characters, which PostgreSQL cannot store.

use std::borrow::Cow;

use serde_json::Value;

/// Elements removed together with their content.
pub const REMOVED_WITH_CONTENT: &[&str] = &[
    "applet", "embed", "frameset", "iframe", "math", "noembed", "noframes", "noscript", "object", "script", "style",
    "svg", "template", "xmp",
];

/// Elements whose tags are removed while their text stays.
pub const REMOVED_TAGS: &[&str] = &[
    "a",
    "abbr",
    "address",
    "area",
    "article",
    "aside",
    "audio",
    "b",
    "base",
    "basefont",
    "bdi",
    "bdo",
    "bgsound",
    "big",
    "blink",
    "blockquote",
    "body",
    "br",
    "button",
    "canvas",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "data",
    "datalist",
    "dd",
    "del",
    "details",
    "dfn",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "em",
    "fieldset",
    "figcaption",
    "figure",
    "font",
    "footer",
    "form",
    "frame",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "i",
    "image",
    "img",
    "input",
    "ins",
    "isindex",
    "kbd",
    "keygen",
    "label",
    "layer",
    "legend",
    "li",
    "link",
    "listing",
    "main",
    "map",
    "mark",
    "marquee",
    "menu",
    "meta",
    "meter",
    "nav",
    "nobr",
    "ol",
    "optgroup",
    "option",
    "output",
    "p",
    "param",
    "picture",
    "plaintext",
    "portal",
    "pre",
    "progress",
    "q",
    "rp",
    "rt",
    "ruby",
    "s",
    "samp",
    "section",
    "select",
    "slot",
    "small",
    "source",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "time",
    "title",
    "tr",
    "track",
    "tt",
    "u",
    "ul",
    "var",
    "video",
    "wbr",
];

/// Longest name in [`REMOVED_WITH_CONTENT`] and [`REMOVED_TAGS`]: a longer name is no element.
const MAX_NAME_LEN: usize = 10;

/// Returns the text with HTML/script content removed; borrows when there was nothing to remove.
///
/// One left-to-right pass, O(n) whatever the input: every byte is appended to the output or
/// skipped once, and the scans for the end of a tag, a comment or an element's closing tag
/// resume where they stopped and consume what they scan. Markup assembled by a removal is
/// removed too (removing `<b>` from `<scr<b>ipt>` must not leave a `<script>` behind): each
/// `<` of the output whose markup is not decided yet (`<`, `</`, `<!`, `<!-`, `<name`) stays on a
/// stack; a removal right after it lets the following input continue its name, and a character
/// that cannot continue it makes every pending `<` plain text at once. A dangerous element
/// assembled that way (the text was built to evade the filter) is removed to the end of the text.
/// So the result is a fixed point: `sanitize_text(sanitize_text(x)) == sanitize_text(x)`.
pub fn sanitize_text(input: &str) -> Cow<'_, str> {
    if !input.contains(['<', '\0']) {
        return Cow::Borrowed(input);
    }
    let out = Sanitizer::default().run(input.as_bytes());
    if out.len() == input.len() {
        // Only removals happen, so the same length means nothing was removed.
        return Cow::Borrowed(input);
    }
    // Removals start at '<' or NUL and end after an ASCII byte or at the end: UTF-8 stays whole.
    Cow::Owned(String::from_utf8(out).expect("removals cut at ASCII bytes"))
}

/// How far the markup opened by a pending `<` has been read.
#[derive(Clone, Copy)]
enum Partial {
    /// `<`
    Open,
    /// `<!`
    Bang,
    /// `<!-`
    BangDash,
    /// `</`
    Slash,
    /// `<name` or `</name`; the name starts at `start` in the output.
    Name { closing: bool, start: usize },
}

#[derive(Clone, Copy)]
struct Pending {
    /// Index of the '<' in the output.
    at: usize,
    partial: Partial,
    /// A removal (or a NUL) happened right after this markup's start, so it was assembled.
    assembled: bool,
}

#[derive(Default)]
struct Sanitizer {
    out: Vec<u8>,
    pending: Vec<Pending>,
}

impl Sanitizer {
    fn run(mut self, input: &[u8]) -> Vec<u8> {
        self.out.reserve(input.len());
        let mut i = 0;
        while i < input.len() {
            if self.pending.is_empty() {
                // Plain text up to the next '<' or NUL is copied as it is.
                let run = input[i..]
                    .iter()
                    .position(|&b| b == b'<' || b == 0)
                    .unwrap_or(input.len() - i);
                examined(run);
                self.out.extend_from_slice(&input[i..i + run]);
                i += run;
                if i == input.len() {
                    break;
                }
            }
            examined(1);
            i = self.step(input, i);
        }
        // At the end of the text, a pending known tag is unclosed: removed to the end.
        while let Some(top) = self.pending.pop() {
            match top.partial {
                Partial::Name { start, .. } if element(&self.out[start..]).is_some() => self.out.truncate(top.at),
                _ => break,
            }
        }
        self.out
    }

    /// Handles `input[i]` (pending markup may exist) and returns the index of the next byte.
    fn step(&mut self, input: &[u8], i: usize) -> usize {
        let b = input[i];
        if b == 0 {
            if let Some(top) = self.pending.last_mut() {
                top.assembled = true;
            }
            return i + 1;
        }
        if b == b'<' {
            self.pending.push(Pending {
                at: self.out.len(),
                partial: Partial::Open,
                assembled: false,
            });
            self.out.push(b);
            return i + 1;
        }
        let Some(top) = self.pending.last().copied() else {
            self.out.push(b);
            return i + 1;
        };
        let next = match (top.partial, b) {
            (Partial::Open, b'!') => Some(Partial::Bang),
            (Partial::Open, b'/') => Some(Partial::Slash),
            (Partial::Bang, b'-') => Some(Partial::BangDash),
            (Partial::Open | Partial::Slash, _) if b.is_ascii_alphabetic() => Some(Partial::Name {
                closing: matches!(top.partial, Partial::Slash),
                start: self.out.len(),
            }),
            (Partial::Name { start, .. }, _) if b.is_ascii_alphanumeric() && self.out.len() - start < MAX_NAME_LEN => {
                Some(top.partial)
            }
            (Partial::BangDash, b'-') => {
                // `<!--`: the comment ends after the first `-->` counted from its `<!` (so
                // `<!-->` is a whole comment), or at the end of the text.
                let end = if input.get(i + 1) == Some(&b'>') {
                    i + 2
                } else {
                    find(input, i, b"-->").map_or(input.len(), |at| at + 3)
                };
                return self.remove(top, end);
            }
            (Partial::Name { closing, start }, b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => {
                match element(&self.out[start..]) {
                    Some(Element::WithContent) if !closing => {
                        let tag_end = tag_end(input, i);
                        let end = if top.assembled {
                            input.len()
                        } else {
                            closing_tag_end(input, tag_end, &self.out[start..]).unwrap_or(input.len())
                        };
                        return self.remove(top, end);
                    }
                    Some(_) => return self.remove(top, tag_end(input, i)),
                    None => None,
                }
            }
            _ => None,
        };
        match next {
            Some(partial) => self.pending.last_mut().expect("a pending tag").partial = partial,
            // This byte cannot continue the markup: every pending '<' is plain text.
            None => self.pending.clear(),
        }
        self.out.push(b);
        i + 1
    }

    /// Removes the markup opened by `top` (the last pending '<') up to `end` in the input.
    fn remove(&mut self, top: Pending, end: usize) -> usize {
        self.pending.pop();
        self.out.truncate(top.at);
        if let Some(below) = self.pending.last_mut() {
            below.assembled = true;
        }
        end
    }
}

enum Element {
    WithContent,
    Tag,
}

/// Which list a tag name (any case) belongs to.
fn element(name: &[u8]) -> Option<Element> {
    examined(name.len());
    let is = |known: &&str| known.as_bytes().eq_ignore_ascii_case(name);
    if REMOVED_WITH_CONTENT.iter().any(is) {
        Some(Element::WithContent)
    } else if REMOVED_TAGS.iter().any(is) {
        Some(Element::Tag)
    } else {
        None
    }
}

/// Index of the first `needle` in `text` from `from` (ASCII case-insensitive).
fn find(text: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let found = text[from..]
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle));
    examined(found.map_or(text.len() - from, |at| at + needle.len()));
    found.map(|at| from + at)
}

/// Index just past the '>' ending the tag whose name ends before `from`, honouring quoted
/// attribute values; the end of the text when the tag never closes.
fn tag_end(text: &[u8], from: usize) -> usize {
    let mut quote: Option<u8> = None;
    for (i, &b) in text.iter().enumerate().skip(from) {
        examined(1);
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => return i + 1,
            _ => {}
        }
    }
    text.len()
}

/// Index just past `</name ...>` in `text` from `from`, matched without regard to case. Each
/// candidate `</` is compared once and the search resumes after it: O(length searched).
fn closing_tag_end(text: &[u8], mut from: usize, name: &[u8]) -> Option<usize> {
    loop {
        let at = find(text, from, b"</")?;
        let name_at = at + 2;
        let after = name_at + name.len();
        examined(name.len() + 1);
        if text.get(name_at..after).is_some_and(|n| n.eq_ignore_ascii_case(name)) {
            match text.get(after) {
                None => return Some(text.len()),
                Some(b) if !b.is_ascii_alphanumeric() => return Some(tag_end(text, after)),
                Some(_) => {}
            }
        }
        from = name_at;
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes examined by the sanitiser on this thread (tests prove the pass is linear).
    static EXAMINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline]
fn examined(_bytes: usize) {
    #[cfg(test)]
    EXAMINED.with(|n| n.set(n.get() + _bytes));
}

/// Sanitises every string and every key inside a JSON value, in place. Content kept for an
/// organization that opted in goes through here: where two keys of one object are the same once
/// sanitised (`"<b>x</b>"` and `"x"`), the last one's value is kept, as truncation keeps part of
/// a long text.
pub fn sanitize_value(value: &mut Value) {
    sanitize_in(value, &mut None);
}

/// Like [`sanitize_value`], for input that a client validates against: two keys of one object
/// that are the same once sanitised are refused rather than merged. `Err` names that key.
pub fn sanitize_keeping_every_key(value: &mut Value) -> Result<(), String> {
    let mut merged = None;
    sanitize_in(value, &mut merged);
    merged.map_or(Ok(()), Err)
}

/// Sanitises `value`; `merged` gets the first key two keys of one object became.
fn sanitize_in(value: &mut Value, merged: &mut Option<String>) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = sanitize_text(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| sanitize_in(item, merged)),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(['<', '\0'])) {
                let old = std::mem::take(map);
                for (key, item) in old {
                    let key = sanitize_text(&key).into_owned();
                    if map.contains_key(&key) && merged.is_none() {
                        *merged = Some(key.clone());
                    }
                    map.insert(key, item);
                }
            }
            map.values_mut().for_each(|item| sanitize_in(item, merged));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn clean(s: &str) -> String {
        sanitize_text(s).into_owned()
    }

    #[test]
    fn keys_that_become_one_are_merged_in_content_and_refused_in_input() {
        let body = json!({"ctx": {"<b>x</b>": 1, "x": 2, "y<i>": 3}, "list": [{"a\u{0}": 1}]});
        let mut content = body.clone();
        sanitize_value(&mut content);
        assert_eq!(content, json!({"ctx": {"x": 2, "y": 3}, "list": [{"a": 1}]}));

        let mut input = body.clone();
        assert_eq!(sanitize_keeping_every_key(&mut input), Err("x".to_owned()));
        let mut distinct = json!({"ctx": {"<b>x</b>": 1, "y": 2}, "z": "<i>t</i>"});
        assert_eq!(sanitize_keeping_every_key(&mut distinct), Ok(()));
        assert_eq!(distinct, json!({"ctx": {"x": 1, "y": 2}, "z": "t"}));
    }

    #[test]
    fn plain_text_is_borrowed_untouched() {
        assert!(matches!(sanitize_text("cargo build --release"), Cow::Borrowed(_)));
    }

    #[test]
    fn code_that_looks_like_markup_is_kept() {
        for text in [
            "expected Vec<String>, found Option<&str>",
            "Promise<void>",
            "if a < b && c > d",
            "x <3 y",
            "HashMap<K, V>",
            "<<EOF",
            "a <- b",
        ] {
            assert_eq!(clean(text), text);
        }
    }

    #[test]
    fn script_elements_are_removed_with_their_content() {
        assert_eq!(clean("hi<script>alert(1)</script> there"), "hi there");
        assert_eq!(clean("hi<SCRIPT type=\"x\">alert(1)</ScRiPt >!"), "hi!");
        assert_eq!(clean("a<script>never closed"), "a");
        assert_eq!(clean("<style>body{}</style>ok"), "ok");
        assert_eq!(clean("<iframe src=\"https://evil\"></iframe>ok"), "ok");
        assert_eq!(clean("<svg onload=alert(1)><circle/></svg>ok"), "ok");
    }

    #[test]
    fn other_tags_are_removed_but_their_text_stays() {
        assert_eq!(clean("<b>bold</b> and <a href='x'>link</a>"), "bold and link");
        assert_eq!(clean("<img src=x onerror=\"alert('>')\">after"), "after");
        assert_eq!(clean("<div\nclass=a>x</div>"), "x");
        assert_eq!(clean("line<br/>break"), "linebreak");
    }

    #[test]
    fn comments_and_nul_characters_are_removed() {
        assert_eq!(clean("a<!-- hidden -->b"), "ab");
        assert_eq!(clean("a\0b"), "ab");
        assert_eq!(clean("a<!-- unclosed"), "a");
    }

    #[test]
    fn closing_script_without_opening_is_removed() {
        assert_eq!(clean("a</script>b"), "ab");
    }

    #[test]
    fn markup_assembled_by_a_removal_is_removed_too() {
        assert_eq!(sanitize_text("<scr<b>ipt>alert(1)</script>ok"), "");
        assert_eq!(sanitize_text("<scr<!-- x -->ipt>alert(1)"), "");
        assert_eq!(sanitize_text("<<i>i>x"), "x");
    }

    #[test]
    fn multibyte_text_survives() {
        assert_eq!(clean("héllo <b>wörld</b> ✓"), "héllo wörld ✓");
    }

    #[test]
    fn names_assembled_across_several_removals_are_removed() {
        assert_eq!(clean("<<<i>i>i>x"), "x");
        assert_eq!(clean("<scr\0ipt>alert(1)</script>ok"), "");
        assert_eq!(clean("<b<i"), "");
        assert_eq!(clean("<a<b>>text"), "text");
        assert_eq!(clean("<<x>"), "<<x>");
    }

    /// Bytes examined while sanitising `text` (counted on this thread only).
    fn work(text: &str) -> usize {
        EXAMINED.with(|n| n.set(0));
        let _ = sanitize_text(text);
        EXAMINED.with(|n| n.get())
    }

    #[test]
    fn the_work_is_linear_in_the_input_for_the_worst_shapes() {
        type Shape = (&'static str, fn(usize) -> String);
        let shapes: [Shape; 9] = [
            ("nested opens", |n| format!("{}{}", "<".repeat(n), "b>".repeat(n))),
            ("empty svg elements", |n| "<svg></svg>".repeat(n)),
            ("script with near-miss closings", |n| {
                format!("<script>{}", "</scriptx".repeat(n))
            }),
            ("unclosed comment openings", |n| "<!--".repeat(n)),
            ("unclosed tags", |n| "<b ".repeat(n)),
            ("long names", |n| "<abcdefghijklmnopq".repeat(n)),
            ("code-like generics", |n| "Vec<Option<String>> ".repeat(n)),
            ("assembled elements", |n| "<scr<b>ipt>x</script>".repeat(n)),
            ("quotes in tags", |n| format!("<a title=\"{}", "<b>'".repeat(n))),
        ];
        for (name, shape) in shapes {
            for size in [10_000, 100_000] {
                let text = shape(size);
                let text = &text[..size.min(text.len())];
                let examined = work(text);
                assert!(
                    examined <= 8 * text.len() + 64,
                    "{name}: {examined} bytes examined for {}",
                    text.len()
                );
            }
        }
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2_000))]

        #[test]
        fn sanitising_twice_changes_nothing(text in proptest::collection::vec(proptest::sample::select(vec![
            "<", ">", "/", "!", "-", "<!--", "-->", "\0", " ", "\"", "'", "=", "script", "ScRiPt", "svg", "b",
            "i", "div", "scr", "ipt", "x", "é", "<b>", "</b>", "<script>", "</script>", "<svg", "Vec<T>",
        ]), 0..48).prop_map(|parts| parts.concat())) {
            let once = sanitize_text(&text).into_owned();
            prop_assert_eq!(sanitize_text(&once), once.as_str(), "{:?}", text);
        }
    }

    #[test]
    fn values_are_sanitised_deeply_including_keys() {
        let mut v = json!({
            "a": "<script>x</script>ok",
            "<b>key</b>": [1, "<i>it</i>", {"deep": "<img src=x>y"}],
            "n": 5
        });
        sanitize_value(&mut v);
        assert_eq!(v, json!({"a": "ok", "key": [1, "it", {"deep": "y"}], "n": 5}));
    }
}
