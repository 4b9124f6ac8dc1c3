//! Strict reading of a built-in's payload: a JSON object, only known fields,
//! each of the right type and within its bounds. Messages name the field and
//! say what was expected, because they are shown to the caller verbatim.

use std::io;
use std::ops::RangeInclusive;

use serde_json::{Map, Value};

/// Largest text a text built-in accepts, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// A payload that is an object with no unknown fields.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Refuses a non-object payload and any field not in `allowed`.
    pub(crate) fn parse(payload: &'a Value, allowed: &[&str]) -> Result<Self, String> {
        let Some(map) = payload.as_object() else {
            return Err(format!("payload must be a JSON object, got {}", type_name(payload)));
        };
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let expected = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
            return Err(format!("unknown field `{key}` (expected: {expected})"));
        }
        Ok(Fields { map })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub(crate) fn required_str(&self, key: &str, max_bytes: usize) -> Result<&'a str, String> {
        self.str(key, max_bytes)?.ok_or_else(|| format!("missing field `{key}` (a string)"))
    }

    pub(crate) fn str(&self, key: &str, max_bytes: usize) -> Result<Option<&'a str>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= max_bytes => Ok(Some(s)),
            Some(Value::String(s)) => Err(format!("`{key}` is {} bytes; the limit is {max_bytes}", s.len())),
            Some(other) => Err(format!("`{key}` must be a string, got {}", type_name(other))),
        }
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.map.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("`{key}` must be a boolean, got {}", type_name(other))),
        }
    }

    /// An integer within `range`; `2.0` and `"2"` are refused.
    pub(crate) fn u64_in(&self, key: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, String> {
        let Some(value) = self.map.get(key) else { return Ok(None) };
        let bounds = || format!("`{key}` must be an integer in {}..={}", range.start(), range.end());
        match value.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            Some(n) => Err(format!("{}, got {n}", bounds())),
            None if value.is_number() => Err(format!("{}, got {value}", bounds())),
            None => Err(format!("{}, got {}", bounds(), type_name(value))),
        }
    }

    /// A JSON object whose serialized form is at most `max_bytes`.
    pub(crate) fn object(&self, key: &str, max_bytes: usize) -> Result<Option<&'a Map<String, Value>>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v @ Value::Object(map)) => {
                check_size(key, v, max_bytes)?;
                Ok(Some(map))
            }
            Some(other) => Err(format!("`{key}` must be a JSON object, got {}", type_name(other))),
        }
    }
}

/// Refuses a value whose compact JSON is longer than `max_bytes`, without
/// serializing more than `max_bytes + 1` bytes of it.
pub(crate) fn check_size(what: &str, value: &Value, max_bytes: usize) -> Result<(), String> {
    match json_len(value, max_bytes) {
        Some(_) => Ok(()),
        None => Err(format!("`{what}` is larger than the limit of {max_bytes} bytes as JSON")),
    }
}

/// The length of `value` as compact JSON, or `None` when that is more than
/// `max_bytes`; serializes at most `max_bytes + 1` bytes, into nothing.
pub(crate) fn json_len(value: &Value, max_bytes: usize) -> Option<usize> {
    let mut counter = Counter { len: 0, max: max_bytes };
    serde_json::to_writer(&mut counter, value).ok().map(|()| counter.len)
}

struct Counter {
    len: usize,
    max: usize,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.len += buf.len();
        if self.len > self.max { Err(io::Error::other("over the limit")) } else { Ok(buf.len()) }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parse_refuses_non_objects_and_unknown_fields() {
        let err = Fields::parse(&json!([1]), &["a"]).err().expect("an array is refused");
        assert_eq!(err, "payload must be a JSON object, got an array");
        let err = Fields::parse(&json!({"a": 1, "b": 2}), &["a"]).err().expect("`b` is unknown");
        assert_eq!(err, "unknown field `b` (expected: a)");
        let err = Fields::parse(&json!({"a": 1}), &[]).err().expect("no field is allowed");
        assert_eq!(err, "unknown field `a` (expected: none)");
    }

    #[test]
    fn typed_getters_name_the_field_and_the_bound() {
        let v = json!({"s": "héllo", "b": true, "n": 5, "f": 5.0, "neg": -1, "o": {"k": "v"}});
        let f = Fields::parse(&v, &["s", "b", "n", "f", "neg", "o"]).expect("all fields are allowed");
        assert_eq!(f.required_str("s", 6), Ok("héllo"));
        assert_eq!(f.required_str("s", 5), Err("`s` is 6 bytes; the limit is 5".to_owned()));
        assert_eq!(f.required_str("missing", 5), Err("missing field `missing` (a string)".to_owned()));
        assert_eq!(f.str("b", 5), Err("`b` must be a string, got a boolean".to_owned()));
        assert_eq!(f.bool("b", false), Ok(true));
        assert_eq!(f.bool("missing", true), Ok(true));
        assert_eq!(f.bool("n", true), Err("`n` must be a boolean, got a number".to_owned()));
        assert_eq!(f.u64_in("n", 1..=5), Ok(Some(5)));
        assert_eq!(f.u64_in("n", 1..=4), Err("`n` must be an integer in 1..=4, got 5".to_owned()));
        assert_eq!(f.u64_in("f", 1..=5), Err("`n` must be an integer in 1..=5, got 5.0".replace("`n`", "`f`")));
        assert_eq!(f.u64_in("neg", 0..=5), Err("`neg` must be an integer in 0..=5, got -1".to_owned()));
        assert_eq!(f.u64_in("s", 0..=5), Err("`s` must be an integer in 0..=5, got a string".to_owned()));
        assert_eq!(f.object("o", 9).map(|o| o.map(|m| m.len())), Ok(Some(1)));
        assert!(f.object("o", 8).is_err(), "{{\"k\":\"v\"}} is 9 bytes");
        assert_eq!(f.object("s", 100), Err("`s` must be a JSON object, got a string".to_owned()));
    }

    #[test]
    fn check_size_counts_compact_json() {
        let v = json!({"a": [1, 2, 3]});
        assert_eq!(serde_json::to_vec(&v).expect("serializable").len(), 13);
        assert!(check_size("v", &v, 13).is_ok());
        assert!(check_size("v", &v, 12).is_err());
        assert_eq!(json_len(&v, 13), Some(13));
        assert_eq!(json_len(&v, 100), Some(13));
        assert_eq!(json_len(&v, 12), None);
    }
}
