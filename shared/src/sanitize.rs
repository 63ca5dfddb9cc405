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

use serde_json::{Map, Value};

/// Elements removed together with their content.
const REMOVED_WITH_CONTENT: &[&str] = &[
    "applet", "embed", "frameset", "iframe", "math", "noembed", "noframes", "noscript", "object", "script", "style",
    "svg", "template", "xmp",
];

/// Elements whose tags are removed while their text stays.
const REMOVED_TAGS: &[&str] = &[
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

/// Returns the text with HTML/script content removed; borrows when there was nothing to remove.
/// Passes repeat until nothing changes: removing `<b>` from `<scr<b>ipt>` would otherwise leave
/// a `<script>` behind.
pub fn sanitize_text(input: &str) -> Cow<'_, str> {
    if !input.contains(['<', '\0']) {
        return Cow::Borrowed(input);
    }
    let mut text = sanitize_once(input);
    loop {
        // Every pass only removes text, so this ends.
        let next = sanitize_once(&text);
        if next.len() == text.len() {
            return Cow::Owned(text);
        }
        text = next;
    }
}

fn sanitize_once(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find(['<', '\0']) {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if rest.starts_with('\0') {
            rest = &rest[1..];
            continue;
        }
        rest = match markup_at(rest) {
            Some(skip) => &rest[skip..],
            None => {
                out.push('<');
                &rest[1..]
            }
        };
    }
    out.push_str(rest);
    out
}

/// If `text` (which starts with '<') opens markup to remove, how many bytes to skip.
fn markup_at(text: &str) -> Option<usize> {
    if text.starts_with("<!--") {
        return Some(text.find("-->").map_or(text.len(), |end| end + 3));
    }
    let bytes = text.as_bytes();
    let closing = bytes.get(1) == Some(&b'/');
    let name_start = if closing { 2 } else { 1 };
    let name_len = bytes[name_start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
        return None;
    }
    let after_name = bytes.get(name_start + name_len).copied();
    if !matches!(
        after_name,
        None | Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
    ) {
        return None;
    }
    let name = text[name_start..name_start + name_len].to_ascii_lowercase();
    let tag_end = tag_end(text, name_start + name_len);
    if REMOVED_WITH_CONTENT.contains(&name.as_str()) {
        if closing {
            return Some(tag_end);
        }
        return Some(tag_end + closing_tag_end(&text[tag_end..], &name).unwrap_or(text.len() - tag_end));
    }
    REMOVED_TAGS.contains(&name.as_str()).then_some(tag_end)
}

/// Index just past the '>' ending the tag that starts at 0, honouring quoted attribute values;
/// the whole text when the tag never closes.
fn tag_end(text: &str, from: usize) -> usize {
    let mut quote: Option<u8> = None;
    for (i, b) in text.bytes().enumerate().skip(from) {
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

/// Index just past `</name ...>` in `text`, matched without regard to case.
fn closing_tag_end(text: &str, name: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let needle = format!("</{name}");
    let mut from = 0;
    while let Some(found) = lower[from..].find(&needle) {
        let start = from + found;
        let after = start + needle.len();
        match lower.as_bytes().get(after) {
            None => return Some(text.len()),
            Some(b) if !b.is_ascii_alphanumeric() => return Some(tag_end(text, after)),
            Some(_) => from = after,
        }
    }
    None
}

/// Sanitises every string and every key inside a JSON value, in place.
pub fn sanitize_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = sanitize_text(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize_value),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(['<', '\0'])) {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(k, v)| (sanitize_text(&k).into_owned(), v))
                    .collect::<Map<String, Value>>();
            }
            map.values_mut().for_each(sanitize_value);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clean(s: &str) -> String {
        sanitize_text(s).into_owned()
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
