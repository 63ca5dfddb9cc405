//! Request bodies read as JSON values, refusing an object that names a key twice.
//!
//! `serde_json` keeps the last of duplicate keys. RFC 8259 leaves their meaning open and readers
//! disagree (some keep the first), so `{"status": "success", "status": "error"}` could be stored
//! as one thing while a proxy, a log reader or the client's own tooling read the other; and the
//! value dropped would be dropped silently. Such a body is refused instead, naming the key by its
//! path (`metrics[2].context.branch`), as repeated query parameters are.
//!
//! The reader is `serde_json`'s own value reader with one check added per key, so a body costs
//! what `serde_json::from_slice::<Value>` costs (one map lookup per key: the entry it inserts
//! through).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Why a body is not a JSON document this service reads.
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON: the parser's message, with its line and column.
    Syntax(serde_json::Error),
    /// An object names this key twice; the path of the second one.
    DuplicateKey(String),
}

/// `bytes` as a JSON value whose objects each name a key at most once.
pub fn from_slice(bytes: &[u8]) -> Result<Value, BodyError> {
    let duplicate = RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let read = ValueAt {
        path: &Path::Root,
        duplicate: &duplicate,
    }
    .deserialize(&mut reader)
    .and_then(|value| reader.end().map(|()| value));
    match (read, duplicate.into_inner()) {
        (_, Some(path)) => Err(BodyError::DuplicateKey(path)),
        (Ok(value), None) => Ok(value),
        (Err(error), None) => Err(BodyError::Syntax(error)),
    }
}

/// Where a value sits in the document, for naming a duplicate key; built on the stack as the
/// reader descends, and formatted only when a duplicate is found.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => write!(f, "{key}"),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Reads the value at `path`; records the path of the first duplicate key in `duplicate`.
#[derive(Clone, Copy)]
struct ValueAt<'p, 'c> {
    path: &'p Path<'p>,
    duplicate: &'c RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for ValueAt<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueAt<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // As `serde_json`'s own reader: a float it cannot represent is null (it refuses
        // out-of-range literals before they get here).
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let path = Path::Index(self.path, items.len());
            let item = ValueAt { path: &path, ..self };
            match seq.next_element_seed(item)? {
                Some(value) => items.push(value),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match object.entry(key) {
                Entry::Occupied(seen) => {
                    let path = Path::Key(self.path, seen.key());
                    let named = path.to_string();
                    let error = de::Error::custom(format_args!("duplicate key `{named}`"));
                    *self.duplicate.borrow_mut() = Some(named);
                    return Err(error);
                }
                Entry::Vacant(slot) => {
                    let path = Path::Key(self.path, slot.key());
                    let value = map.next_value_seed(ValueAt { path: &path, ..self })?;
                    slot.insert(value);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn duplicate_in(body: &str) -> String {
        match from_slice(body.as_bytes()) {
            Err(BodyError::DuplicateKey(path)) => path,
            other => panic!("{body}: expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn documents_read_as_serde_json_reads_them() {
        for body in [
            r#"{"a": 1, "b": [true, null, -2, 1.5, "x\u00e9"], "c": {"d": {}}, "e": 18446744073709551615}"#,
            "[]",
            "\"text\"",
            "  3  ",
            r#"{"big": 1e300, "small": -9223372036854775808, "nested": [[[{"k": []}]]]}"#,
        ] {
            let expected: Value = serde_json::from_str(body).unwrap();
            assert_eq!(from_slice(body.as_bytes()).unwrap(), expected, "{body}");
        }
    }

    #[test]
    fn a_key_named_twice_is_refused_by_its_path() {
        assert_eq!(duplicate_in(r#"{"status": "success", "status": "error"}"#), "status");
        assert_eq!(
            duplicate_in(r#"{"context": {"branch": "a", "x": 1, "branch": "b"}}"#),
            "context.branch"
        );
        assert_eq!(
            duplicate_in(r#"{"metrics": [{"id": 1}, {"id": 2, "context": {"k": {"a": 1, "a": 1}}}]}"#),
            "metrics[1].context.k.a"
        );
        assert_eq!(duplicate_in(r#"[[{"a": 1}], [{}, {"b": 1, "b": 2}]]"#), "[1][1].b");
    }

    #[test]
    fn the_same_key_in_different_objects_is_fine() {
        let value = from_slice(br#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#).unwrap();
        assert_eq!(value, json!({"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}));
    }

    #[test]
    fn keys_differing_only_by_escapes_are_the_same_key() {
        // `"\u0061"` is `"a"`: readers that compare raw text would keep both.
        assert_eq!(duplicate_in(r#"{"a": 1, "\u0061": 2}"#), "a");
    }

    #[test]
    fn syntax_errors_and_trailing_text_keep_the_parsers_message() {
        for body in [r#"{"a": 1"#, r#"{"a": 1} x"#, "", r#"{"a" 1}"#] {
            match from_slice(body.as_bytes()) {
                Err(BodyError::Syntax(error)) => assert!(error.to_string().contains("line 1"), "{error}"),
                other => panic!("{body}: expected a syntax error, got {other:?}"),
            }
        }
    }
}
