//! Reading OTLP attributes the way Claude Code sends them: the same figure arrives as a number
//! in one event and as a string in another (`duration_ms: "37"`, `success: "true"`), some
//! attributes are arrays, and nothing is guaranteed present.

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use serde_json::{Map, Value, json};

/// Longest text kept of one label.
pub const MAX_LABEL_CHARS: usize = 256;
/// Most elements kept of an array label.
const MAX_ARRAY_ITEMS: usize = 16;

/// How a kept attribute is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// As sent (see [`label`]).
    Text,
    /// A number, sent as a number or as text.
    Number,
    /// A boolean, sent as one or as `"true"` / `"false"`.
    Flag,
}

/// One record's (or data point's) attributes.
#[derive(Clone, Copy)]
pub struct Attributes<'a>(pub &'a [KeyValue]);

impl<'a> Attributes<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Any> {
        self.0
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    /// A string attribute, or a scalar written as text.
    pub fn text(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Any::StringValue(s) => Some(s.clone()),
            Any::IntValue(n) => Some(n.to_string()),
            Any::DoubleValue(n) => Some(n.to_string()),
            Any::BoolValue(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A number, whether sent as a number or as text.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Any::IntValue(n) => Some(*n as f64),
            Any::DoubleValue(n) => Some(*n),
            Any::StringValue(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|n| n.is_finite())
    }

    /// A boolean, whether sent as one or as `"true"` / `"false"`.
    pub fn boolean(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Any::BoolValue(b) => Some(*b),
            Any::StringValue(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Any::StringValue(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// Every attribute, whole and in key order, as one unambiguous text (JSON of the sorted
    /// pairs): what identifies a series.
    pub fn canonical(&self) -> String {
        let mut pairs: Vec<(&str, String)> = self
            .0
            .iter()
            .map(|kv| (kv.key.as_str(), serde_json::to_string(&kv.value).unwrap_or_default()))
            .collect();
        pairs.sort();
        serde_json::to_string(&pairs).unwrap_or_default()
    }

    /// The attributes named in `keys` that are present, as JSON labels.
    pub fn labels(&self, keys: &[&str]) -> Map<String, Value> {
        self.typed_labels(keys.iter().map(|key| (*key, Label::Text)))
    }

    /// The attributes named in `keys` that are present, each read as its [`Label`] says (a
    /// number or a flag whatever way it was sent).
    pub fn typed_labels<'k>(&self, keys: impl IntoIterator<Item = (&'k str, Label)>) -> Map<String, Value> {
        let mut labels = Map::new();
        for (key, kind) in keys {
            let value = match kind {
                Label::Number => self.number(key).map(|n| json!(n)),
                Label::Flag => self.boolean(key).map(Value::Bool),
                Label::Text => self
                    .0
                    .iter()
                    .find(|kv| kv.key == key)
                    .map(|kv| label(kv.value.as_ref()))
                    .filter(|v| !v.is_null()),
            };
            if let Some(value) = value {
                labels.insert(key.to_owned(), value);
            }
        }
        labels
    }
}

/// An attribute value as a JSON label: scalars as they are (text cut to [`MAX_LABEL_CHARS`]),
/// arrays of scalars (at most [`MAX_ARRAY_ITEMS`]), nothing for maps and bytes.
pub fn label(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => Value::String(cut(s, MAX_LABEL_CHARS)),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(n)) => json!(n),
        Some(Any::DoubleValue(n)) if n.is_finite() => json!(n),
        Some(Any::ArrayValue(array)) => Value::Array(
            array
                .values
                .iter()
                .take(MAX_ARRAY_ITEMS)
                .map(|v| label(Some(v)))
                .filter(|v| !v.is_null() && !v.is_array())
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// `text` without control characters (PostgreSQL refuses NUL in text and jsonb), cut to
/// `max_chars`.
pub fn cut(text: &str, max_chars: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            key_strindex: 0,
        }
    }

    #[test]
    fn figures_are_read_whether_sent_as_numbers_or_as_text() {
        let attrs = [
            kv("duration_ms", Any::StringValue("37".into())),
            kv("input_tokens", Any::IntValue(120)),
            kv("cost_usd", Any::DoubleValue(0.00146)),
            kv("success", Any::StringValue("true".into())),
            kv("nan", Any::StringValue("NaN".into())),
        ];
        let a = Attributes(&attrs);
        assert_eq!(a.number("duration_ms"), Some(37.0));
        assert_eq!(a.number("input_tokens"), Some(120.0));
        assert_eq!(a.number("cost_usd"), Some(0.00146));
        assert_eq!(a.boolean("success"), Some(true));
        assert_eq!(a.number("nan"), None, "not a finite number");
        assert_eq!(a.number("absent"), None);
    }

    #[test]
    fn arrays_become_json_arrays_and_long_text_is_cut() {
        let array = Any::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(Any::StringValue("policy".into())),
            }],
        });
        let attrs = [kv("sources", array), kv("long", Any::StringValue("x".repeat(1000)))];
        let labels = Attributes(&attrs).labels(&["sources", "long", "absent"]);
        assert_eq!(labels["sources"], json!(["policy"]));
        assert_eq!(labels["long"].as_str().unwrap().len(), MAX_LABEL_CHARS);
        let nul = [kv("model", Any::StringValue("opus\u{0}\n".into()))];
        assert_eq!(Attributes(&nul).labels(&["model"])["model"], "opus");
        assert!(!labels.contains_key("absent"));
    }

    #[test]
    fn a_series_is_the_same_whatever_the_order_of_its_attributes() {
        let one = [kv("a", Any::IntValue(1)), kv("b", Any::StringValue("x".into()))];
        let two = [kv("b", Any::StringValue("x".into())), kv("a", Any::IntValue(1))];
        assert_eq!(Attributes(&one).canonical(), Attributes(&two).canonical());
    }

    #[test]
    fn attribute_sets_that_differ_past_the_label_cut_or_by_a_newline_are_different_series() {
        let long = |tail: &str| [kv("a", Any::StringValue(format!("{}{tail}", "x".repeat(300))))];
        assert_ne!(Attributes(&long("1")).canonical(), Attributes(&long("2")).canonical());
        let joined = [kv("a", Any::StringValue("1\nb=2".into()))];
        let split = [
            kv("a", Any::StringValue("1".into())),
            kv("b", Any::StringValue("2".into())),
        ];
        assert_ne!(Attributes(&joined).canonical(), Attributes(&split).canonical());
    }
}
