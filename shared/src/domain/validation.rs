//! Field-by-field validation of JSON objects that reports every failing field at once.
//!
//! A metric's `from_json` walks its object with [`Fields`]; each getter records a
//! [`FieldError`] (named by its full path, e.g. `agent_interactions[3].input_tokens`) and carries
//! on, so one response lists every problem.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::sanitize::{sanitize_keeping_every_key, sanitize_text};

/// At most this many properties in a free-form object (the specification's `maxProperties`).
pub const MAX_OBJECT_PROPERTIES: usize = 50;
/// Free-form objects may nest this deep; deeper structures are refused.
pub const MAX_OBJECT_DEPTH: usize = 16;
/// Longest free text (error messages, units) unless a field says otherwise.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Timestamps may be ahead of the server clock by at most this much (clock skew).
pub const MAX_FUTURE_SKEW_HOURS: i64 = 24;
/// Unknown fields reported per object before the rest are summarised.
const MAX_UNKNOWN_REPORTED: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Rules for a string field.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub min_chars: usize,
    pub max_chars: usize,
    /// `^[a-zA-Z0-9_-]+$` when set; such values need no sanitising.
    pub name_pattern: bool,
}

impl Text {
    pub const fn free(max_chars: usize) -> Self {
        Self {
            min_chars: 1,
            max_chars,
            name_pattern: false,
        }
    }

    pub const fn name(max_chars: usize) -> Self {
        Self {
            min_chars: 1,
            max_chars,
            name_pattern: true,
        }
    }
}

/// A closed set of string values (a JSON Schema `enum`).
pub trait Choice: Sized + Copy + PartialEq + 'static {
    const ALL: &'static [(&'static str, Self)];

    /// The value's wire name, read from [`Choice::ALL`] (the one place it is spelt).
    fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, value)| *value == self)
            .map_or("", |(name, _)| name)
    }

    fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().find(|(name, _)| *name == raw).map(|(_, v)| *v)
    }

    fn expected() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
        format!("Must be one of: {}", names.join(", "))
    }
}

/// Serde for a [`Choice`]: it reads and writes the wire names of [`Choice::ALL`], so each name
/// is spelt once.
#[macro_export]
macro_rules! choice_serde {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($crate::domain::validation::Choice::as_str(*self))
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                <$ty as $crate::domain::validation::Choice>::parse(&raw)
                    .ok_or_else(|| serde::de::Error::custom(<$ty as $crate::domain::validation::Choice>::expected()))
            }
        }
    };
}

/// Walks one JSON object, collecting every problem.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    at: String,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// `at` is where the object sits in the request (empty for the body itself); `allowed`
    /// lists its properties, anything else is refused (`additionalProperties: false`).
    pub fn new(value: &'a Value, at: &str, allowed: &[&str]) -> Result<Self, Vec<FieldError>> {
        let Value::Object(object) = value else {
            let field = if at.is_empty() { "body" } else { at };
            return Err(vec![FieldError::new(field, "Must be a JSON object")]);
        };
        let mut fields = Self {
            object,
            at: at.to_owned(),
            errors: Vec::new(),
        };
        let unknown: Vec<&String> = object.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
        for key in unknown.iter().take(MAX_UNKNOWN_REPORTED) {
            let shown: String = match key.as_str() {
                "" => "\"\"".into(),
                named => named.chars().take(64).collect(),
            };
            fields.error(&shown, "Unknown field: additional properties are not allowed");
        }
        if unknown.len() > MAX_UNKNOWN_REPORTED {
            let more = unknown.len() - MAX_UNKNOWN_REPORTED;
            fields.error("*", format!("{more} more unknown fields"));
        }
        Ok(fields)
    }

    pub fn path(&self, name: &str) -> String {
        if self.at.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.at)
        }
    }

    pub fn error(&mut self, name: &str, message: impl Into<String>) {
        let field = self.path(name);
        self.errors.push(FieldError::new(field, message));
    }

    /// The property's items when it is an array (no error otherwise; see [`Fields::expect_array`]).
    pub fn array(&self, name: &str) -> Option<&'a Vec<Value>> {
        self.value(name)?.as_array()
    }

    /// Records an error when the property is present but not an array.
    pub fn expect_array(&mut self, name: &str) {
        if self.value(name).is_some_and(|v| !v.is_array()) {
            self.error(name, "Must be an array");
        }
    }

    /// Records an error at `field` as given, outside this object's path.
    pub fn error_at(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Records errors found by a nested parser.
    pub fn absorb(&mut self, errors: Vec<FieldError>) {
        self.errors.extend(errors);
    }

    /// Whether the property is absent (or `null`).
    pub fn is_absent(&self, name: &str) -> bool {
        self.value(name).is_none()
    }

    /// Whether no error has been recorded for the property so far.
    pub fn is_valid(&self, name: &str) -> bool {
        let field = self.path(name);
        !self.errors.iter().any(|e| e.field == field)
    }

    /// The value of a property; `null` counts as absent.
    fn value(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    fn required(&mut self, name: &str) -> Option<&'a Value> {
        let value = self.value(name);
        if value.is_none() {
            self.error(name, "Required");
        }
        value
    }

    pub fn text(&mut self, name: &str, rule: Text) -> Option<String> {
        let value = self.value(name)?;
        self.check_text(name, value, rule)
    }

    pub fn required_text(&mut self, name: &str, rule: Text) -> String {
        self.required(name)
            .and_then(|v| self.check_text(name, v, rule))
            .unwrap_or_default()
    }

    /// A required string exactly as given: neither sanitised nor measured (for identifiers whose
    /// own `parse` says what they may hold; a sanitised `bob<b>` would be `bob`, someone else).
    pub fn required_exact_string(&mut self, name: &str) -> &'a str {
        match self.required(name) {
            Some(Value::String(raw)) => raw,
            Some(_) => {
                self.error(name, "Must be a string");
                ""
            }
            None => "",
        }
    }

    fn check_text(&mut self, name: &str, value: &Value, rule: Text) -> Option<String> {
        let Some(raw) = value.as_str() else {
            self.error(name, "Must be a string");
            return None;
        };
        let chars = raw.chars().count();
        if chars < rule.min_chars {
            self.error(name, format!("Must be at least {} characters", rule.min_chars));
            return None;
        }
        if chars > rule.max_chars {
            self.error(name, format!("Must be at most {} characters", rule.max_chars));
            return None;
        }
        if rule.name_pattern {
            if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                self.error(name, "Must match ^[a-zA-Z0-9_-]+$");
                return None;
            }
            return Some(raw.to_owned());
        }
        let clean = sanitize_text(raw);
        // `"<script>x</script>"` is not a name: what is left after sanitising must still meet
        // the rule, or an empty value would be stored.
        if clean.trim().chars().count() < rule.min_chars {
            self.error(
                name,
                format!("Must be at least {} characters once markup is removed", rule.min_chars),
            );
            return None;
        }
        Some(clean.into_owned())
    }

    pub fn number(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.value(name)?;
        self.check_number(name, value, min, max)
    }

    pub fn required_number(&mut self, name: &str, min: f64, max: f64) -> f64 {
        self.required(name)
            .and_then(|v| self.check_number(name, v, min, max))
            .unwrap_or_default()
    }

    fn check_number(&mut self, name: &str, value: &Value, min: f64, max: f64) -> Option<f64> {
        let number = value.as_f64().filter(|n| n.is_finite());
        match number {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.error(name, format!("Must be a number between {min} and {max}"));
                None
            }
            None => {
                self.error(name, "Must be a number");
                None
            }
        }
    }

    pub fn integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        let value = self.value(name)?;
        self.check_integer(name, value, min, max)
    }

    pub fn required_integer(&mut self, name: &str, min: i64, max: i64) -> i64 {
        self.required(name)
            .and_then(|v| self.check_integer(name, v, min, max))
            .unwrap_or_default()
    }

    fn check_integer(&mut self, name: &str, value: &Value, min: i64, max: i64) -> Option<i64> {
        let whole = value.as_i64().or_else(|| {
            // 12.0 is an integer in JSON Schema; 12.5 and 1e300 are not.
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        });
        match whole {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.error(name, format!("Must be an integer between {min} and {max}"));
                None
            }
            None if value.is_number() => {
                self.error(name, format!("Must be an integer between {min} and {max}"));
                None
            }
            None => {
                self.error(name, "Must be an integer");
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        let value = self.value(name)?;
        let b = value.as_bool();
        if b.is_none() {
            self.error(name, "Must be a boolean");
        }
        b
    }

    pub fn required_boolean(&mut self, name: &str) -> bool {
        match self.required(name) {
            Some(_) => self.boolean(name).unwrap_or_default(),
            None => false,
        }
    }

    pub fn choice<T: Choice>(&mut self, name: &str) -> Option<T> {
        let value = self.value(name)?;
        let parsed = value.as_str().and_then(T::parse);
        if parsed.is_none() {
            self.error(name, T::expected());
        }
        parsed
    }

    /// On error the first choice is returned; the recorded error makes the whole parse fail.
    pub fn required_choice<T: Choice>(&mut self, name: &str) -> T {
        match self.required(name) {
            Some(_) => self.choice(name).unwrap_or(T::ALL[0].1),
            None => T::ALL[0].1,
        }
    }

    pub fn uuid(&mut self, name: &str) -> Option<Uuid> {
        let value = self.value(name)?;
        let parsed = value.as_str().and_then(parse_uuid);
        if parsed.is_none() {
            self.error(name, "Must be a UUID");
        }
        parsed
    }

    pub fn timestamp(&mut self, name: &str) -> Option<DateTime<Utc>> {
        let value = self.value(name)?;
        self.check_timestamp(name, value)
    }

    pub fn required_timestamp(&mut self, name: &str) -> DateTime<Utc> {
        self.required(name)
            .and_then(|v| self.check_timestamp(name, v))
            .unwrap_or_default()
    }

    fn check_timestamp(&mut self, name: &str, value: &Value) -> Option<DateTime<Utc>> {
        let parsed = value.as_str().and_then(parse_timestamp);
        let Some(at) = parsed else {
            self.error(name, "Must be an RFC 3339 date-time, e.g. 2025-09-08T10:30:00Z");
            return None;
        };
        if at > Utc::now() + chrono::Duration::hours(MAX_FUTURE_SKEW_HOURS) {
            self.error(
                name,
                format!("Must not be more than {MAX_FUTURE_SKEW_HOURS} hours in the future"),
            );
            return None;
        }
        // Before the epoch is no time a coding tool ran; and before year 1 in UTC, where an
        // offset can take year 0000, PostgreSQL writes `… BC` and chrono years with a sign,
        // which neither reads back: a 202 would become a dead letter, a 201 a session that can
        // no longer be updated.
        if at < DateTime::<Utc>::UNIX_EPOCH {
            self.error(name, "Must not be before 1970-01-01T00:00:00Z");
            return None;
        }
        Some(at)
    }

    /// A free-form object: at most 50 properties, bounded depth, strings sanitised.
    /// Absent means `{}`.
    pub fn object(&mut self, name: &str) -> Value {
        self.optional_object(name).unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// Like [`Fields::object`], but `None` when absent (or invalid).
    pub fn optional_object(&mut self, name: &str) -> Option<Value> {
        let value = self.value(name)?;
        let Value::Object(map) = value else {
            self.error(name, "Must be an object");
            return None;
        };
        if map.len() > MAX_OBJECT_PROPERTIES {
            self.error(name, format!("Must have at most {MAX_OBJECT_PROPERTIES} properties"));
            return None;
        }
        if depth(value) > MAX_OBJECT_DEPTH {
            self.error(name, format!("Must not nest deeper than {MAX_OBJECT_DEPTH} levels"));
            return None;
        }
        let mut clean = value.clone();
        if let Err(key) = sanitize_keeping_every_key(&mut clean) {
            self.error(
                name,
                format!("Two keys read `{key}` once markup is removed from them: rename one"),
            );
            return None;
        }
        Some(clean)
    }

    /// An array of strings, each checked with `rule`.
    pub fn text_list(&mut self, name: &str, max_items: usize, rule: Text) -> Option<Vec<String>> {
        let value = self.value(name)?;
        let Some(items) = value.as_array() else {
            self.error(name, "Must be an array of strings");
            return None;
        };
        if items.len() > max_items {
            self.error(name, format!("Must have at most {max_items} items"));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.check_text(&format!("{name}[{i}]"), item, rule) {
                out.push(s);
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// An RFC 3339 time at the storage precision: PostgreSQL keeps microseconds, so nanoseconds are
/// cut here, before any rule compares two times (a period shorter than a microsecond must be
/// refused by the validator, not by the table's CHECK after the driver has rounded it).
pub fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(raw).ok()?.with_timezone(&Utc);
    Some(at_storage_precision(at))
}

/// `at` cut to whole microseconds (PostgreSQL's `timestamptz` precision).
pub fn at_storage_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    at.trunc_subsecs(6)
}

/// A UUID in its hyphenated form only (the form the OpenAPI document's `format: uuid` states),
/// not the braced, URN or bare-hex forms `Uuid::parse_str` would also take.
pub fn parse_uuid(raw: &str) -> Option<Uuid> {
    (raw.len() == 36).then(|| Uuid::try_parse(raw).ok()).flatten()
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Color {
        Red,
        Blue,
    }

    impl Choice for Color {
        const ALL: &'static [(&'static str, Self)] = &[("red", Color::Red), ("blue", Color::Blue)];
        fn as_str(self) -> &'static str {
            match self {
                Color::Red => "red",
                Color::Blue => "blue",
            }
        }
    }

    fn fields<'a>(v: &'a Value) -> Fields<'a> {
        Fields::new(v, "", &["a", "b", "c"]).unwrap()
    }

    #[test]
    fn a_non_object_body_is_refused() {
        let errors = Fields::new(&json!([1]), "", &[]).err().unwrap();
        assert_eq!(errors, vec![FieldError::new("body", "Must be a JSON object")]);
        let errors = Fields::new(&json!("x"), "items[2]", &[]).err().unwrap();
        assert_eq!(errors[0].field, "items[2]");
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let v = json!({"a": 1, "zzz": 2});
        let errors = Fields::new(&v, "list[1]", &["a"]).unwrap().finish().unwrap_err();
        assert_eq!(errors[0].field, "list[1].zzz");
    }

    #[test]
    fn an_empty_unknown_key_is_shown_quoted_so_the_field_is_never_blank() {
        let v = json!({"": 1});
        let errors = Fields::new(&v, "", &["a"]).unwrap().finish().unwrap_err();
        assert_eq!(errors[0].field, "\"\"");
    }

    #[test]
    fn floods_of_unknown_fields_are_summarised() {
        let mut m = Map::new();
        for i in 0..500 {
            m.insert(format!("k{i}"), json!(i));
        }
        let v = Value::Object(m);
        let errors = Fields::new(&v, "", &[]).unwrap().finish().unwrap_err();
        assert_eq!(errors.len(), MAX_UNKNOWN_REPORTED + 1);
        assert!(errors.last().unwrap().message.contains("480 more"));
    }

    #[test]
    fn null_counts_as_absent() {
        let v = json!({"a": null});
        let mut f = fields(&v);
        assert_eq!(f.text("a", Text::free(10)), None);
        assert!(f.finish().is_ok());
        let mut f = fields(&v);
        f.required_text("a", Text::free(10));
        assert_eq!(f.finish().unwrap_err()[0].message, "Required");
    }

    #[test]
    fn text_rules_are_enforced() {
        let v = json!({"a": "", "b": "x".repeat(11), "c": 5});
        let mut f = fields(&v);
        f.text("a", Text::free(10));
        f.text("b", Text::free(10));
        f.text("c", Text::free(10));
        let errors = f.finish().unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(errors[0].message.contains("at least 1"));
        assert!(errors[1].message.contains("at most 10"));
        assert_eq!(errors[2].message, "Must be a string");
    }

    #[test]
    fn text_length_counts_characters_not_bytes() {
        let v = json!({"a": "é".repeat(10)});
        let mut f = fields(&v);
        assert!(f.text("a", Text::free(10)).is_some());
    }

    #[test]
    fn name_pattern_is_enforced() {
        for (raw, ok) in [
            ("build_all-2", true),
            ("has space", false),
            ("semi;colon", false),
            ("ünï", false),
        ] {
            let v = json!({ "a": raw });
            let mut f = fields(&v);
            f.text("a", Text::name(100));
            assert_eq!(f.finish().is_ok(), ok, "{raw}");
        }
    }

    #[test]
    fn free_text_is_sanitised() {
        let v = json!({"a": "boom<script>x()</script>!"});
        assert_eq!(fields(&v).text("a", Text::free(100)).unwrap(), "boom!");
    }

    #[test]
    fn numbers_have_ranges_and_types() {
        let v = json!({"a": -1, "b": "12", "c": 300000.5});
        let mut f = fields(&v);
        f.number("a", 0.0, 300000.0);
        f.number("b", 0.0, 300000.0);
        f.number("c", 0.0, 300000.0);
        let errors = f.finish().unwrap_err();
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[1].message, "Must be a number");
    }

    #[test]
    fn integers_refuse_fractions_and_accept_whole_floats() {
        let v = json!({"a": 12.0, "b": 12.5, "c": true});
        let mut f = fields(&v);
        assert_eq!(f.integer("a", 0, 100), Some(12));
        assert_eq!(f.integer("b", 0, 100), None);
        assert_eq!(f.integer("c", 0, 100), None);
        assert_eq!(f.finish().unwrap_err().len(), 2);
    }

    #[test]
    fn huge_numbers_are_refused_not_wrapped() {
        let v: Value = serde_json::from_str(r#"{"a": 1e300, "b": 18446744073709551615}"#).unwrap();
        let mut f = fields(&v);
        assert_eq!(f.integer("a", 0, i64::MAX), None);
        assert_eq!(f.integer("b", 0, i64::MAX), None);
    }

    #[test]
    fn choices_list_the_allowed_values() {
        let v = json!({"a": "green"});
        let mut f = fields(&v);
        assert_eq!(f.required_choice::<Color>("a"), Color::Red);
        assert_eq!(f.finish().unwrap_err()[0].message, "Must be one of: red, blue");
        let v = json!({"a": "blue"});
        assert_eq!(fields(&v).required_choice::<Color>("a"), Color::Blue);
    }

    #[test]
    fn booleans_are_strict() {
        let v = json!({"a": "true"});
        let mut f = fields(&v);
        f.required_boolean("a");
        assert_eq!(f.finish().unwrap_err()[0].message, "Must be a boolean");
    }

    #[test]
    fn timestamps_must_be_rfc3339_and_not_far_in_the_future() {
        let v = json!({"a": "2025-09-08T10:30:00Z", "b": "yesterday", "c": "2999-01-01T00:00:00Z"});
        let mut f = fields(&v);
        assert!(f.timestamp("a").is_some());
        f.timestamp("b");
        f.timestamp("c");
        assert_eq!(f.finish().unwrap_err().len(), 2);
    }

    #[test]
    fn timestamps_before_the_epoch_in_utc_are_refused() {
        let v = json!({"epoch": "1970-01-01T00:00:00Z", "late": "1970-01-01T00:30:00+00:30",
                       "before": "1969-12-31T23:59:59.999999Z", "shifted": "1970-01-01T00:00:00+01:00",
                       "bc": "0000-01-01T00:00:00+01:00", "first": "0001-01-01T00:00:00Z"});
        let names = ["epoch", "late", "before", "shifted", "bc", "first"];
        let mut f = Fields::new(&v, "", &names).unwrap();
        assert!(f.timestamp("epoch").is_some());
        assert!(f.timestamp("late").is_some());
        for name in ["before", "shifted", "bc", "first"] {
            assert!(f.timestamp(name).is_none(), "{name}");
        }
        let errors = f.finish().unwrap_err();
        assert_eq!(errors.len(), 4);
        assert_eq!(errors[0].message, "Must not be before 1970-01-01T00:00:00Z");
    }

    #[test]
    fn objects_are_limited_in_size_and_depth() {
        let mut big = Map::new();
        for i in 0..=MAX_OBJECT_PROPERTIES {
            big.insert(format!("k{i}"), json!(i));
        }
        let mut deep = json!(1);
        for _ in 0..=MAX_OBJECT_DEPTH {
            deep = json!({ "d": deep });
        }
        let v = json!({"a": big, "b": deep, "c": [1]});
        let mut f = fields(&v);
        f.object("a");
        f.object("b");
        f.object("c");
        let errors = f.finish().unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(errors[0].message.contains("at most 50"));
        assert!(errors[1].message.contains("nest"));
        assert_eq!(errors[2].message, "Must be an object");
    }

    #[test]
    fn fifty_properties_are_fine() {
        let mut m = Map::new();
        for i in 0..MAX_OBJECT_PROPERTIES {
            m.insert(format!("k{i}"), json!(i));
        }
        let v = json!({ "a": m });
        let mut f = fields(&v);
        f.object("a");
        assert!(f.finish().is_ok());
    }

    #[test]
    fn text_lists_name_the_failing_item() {
        let v = json!({"a": ["ok", 3, "fine"]});
        let mut f = Fields::new(&v, "session", &["a"]).unwrap();
        assert_eq!(f.text_list("a", 10, Text::free(10)), None);
        assert_eq!(f.finish().unwrap_err()[0].field, "session.a[1]");
    }

    #[test]
    fn uuids_are_checked() {
        let v = json!({"a": "not-a-uuid", "b": "6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f"});
        let mut f = fields(&v);
        assert_eq!(f.uuid("a"), None);
        assert!(f.uuid("b").is_some());
        assert_eq!(f.finish().unwrap_err()[0].message, "Must be a UUID");
    }

    #[test]
    fn only_the_hyphenated_uuid_form_is_accepted() {
        assert!(parse_uuid("6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f").is_some());
        assert!(parse_uuid("6F1C3A52-1D2E-4B7A-9C1F-2A3B4C5D6E7F").is_some());
        assert_eq!(parse_uuid("6f1c3a521d2e4b7a9c1f2a3b4c5d6e7f"), None);
        assert_eq!(parse_uuid("{6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f}"), None);
        assert_eq!(parse_uuid("urn:uuid:6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7f"), None);
        assert_eq!(parse_uuid("6f1c3a52-1d2e-4b7a-9c1f-2a3b4c5d6e7g"), None);
    }
}
