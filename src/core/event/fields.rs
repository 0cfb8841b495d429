//! Reading the fields of a JSON object, with errors that name the field's
//! path (`Message.detail.instance-id`) and what was expected; and how values
//! are quoted in those errors.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{is_account_id, InstanceId, ParseError, EXPECTED_ACCOUNT};

const EXPECTED_INSTANCE_ID: &str = "an EC2 instance id like i-0123456789abcdef0";

/// A JSON object plus the path prefix of its fields, for error messages.
pub(super) struct Obj<'a> {
    pub(super) map: &'a Map<String, Value>,
    /// Prepended to field names, e.g. `Message.detail.`.
    prefix: String,
    /// How to refer to the object itself, e.g. `field "Message"`.
    pub(super) location: String,
}

impl<'a> Obj<'a> {
    pub(super) fn new(value: &'a Value, prefix: &str, location: &str) -> Result<Self, ParseError> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                prefix: prefix.to_owned(),
                location: location.to_owned(),
            }),
            other => Err(ParseError::NotAnObject {
                location: location.to_owned(),
                got: render(other),
            }),
        }
    }

    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value of `key`; `null` counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn invalid(&self, key: &str, expected: &'static str) -> ParseError {
        match self.get(key) {
            Some(value) => ParseError::Invalid {
                field: self.path(key),
                expected,
                got: render(value),
            },
            None => self.missing(key, expected),
        }
    }

    pub(super) fn missing(&self, key: &str, expected: &'static str) -> ParseError {
        ParseError::Missing {
            field: self.path(key),
            expected,
        }
    }

    /// A required, non-empty string.
    pub(super) fn str(&self, key: &str, expected: &'static str) -> Result<&'a str, ParseError> {
        match self.get(key) {
            None => Err(self.missing(key, expected)),
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    /// An optional string; absent, `null` and `""` are `None`.
    pub(super) fn opt_str(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<&'a str>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    /// An optional account id; present but malformed is an error (a forged
    /// or corrupted event must not fall back to nodereaper's own account).
    pub(super) fn account(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.opt_str(key, EXPECTED_ACCOUNT)? {
            None => Ok(None),
            Some(a) if is_account_id(a) => Ok(Some(a.to_owned())),
            Some(_) => Err(self.invalid(key, EXPECTED_ACCOUNT)),
        }
    }

    /// A non-empty string for descriptions; anything else is `None`.
    pub(super) fn display(&self, key: &str) -> Option<&'a str> {
        self.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A required EC2 instance id, checked by [`InstanceId::parse`].
    pub(super) fn instance_id(&self, key: &str) -> Result<InstanceId, ParseError> {
        match self.get(key) {
            None => Err(self.missing(key, EXPECTED_INSTANCE_ID)),
            Some(Value::String(s)) => {
                InstanceId::parse(s).map_err(|_| self.invalid(key, EXPECTED_INSTANCE_ID))
            }
            Some(_) => Err(self.invalid(key, EXPECTED_INSTANCE_ID)),
        }
    }

    /// A required nested object.
    pub(super) fn child(&self, key: &str) -> Result<Obj<'a>, ParseError> {
        const EXPECTED: &str = "a JSON object";
        match self.get(key) {
            None => Err(self.missing(key, EXPECTED)),
            Some(Value::Object(map)) => Ok(Obj {
                map,
                prefix: format!("{}.", self.path(key)),
                location: format!("field \"{}\"", self.path(key)),
            }),
            Some(_) => Err(self.invalid(key, EXPECTED)),
        }
    }

    /// An RFC 3339 time; missing or malformed times (the AWS examples use
    /// placeholders like `yyyy-mm-ddThh:mm:ssZ`) are `None`.
    pub(super) fn time(&self, key: &str) -> Option<DateTime<Utc>> {
        let text = self.get(key)?.as_str()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// At most this many characters of a value are quoted in messages.
const MAX_QUOTE: usize = 64;

/// `s`, cut to [`MAX_QUOTE`] characters.
pub(super) fn short(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

/// `s` as a (possibly shortened) JSON string literal.
pub(super) fn quote(s: &str) -> String {
    Value::String(short(s)).to_string()
}

/// A JSON value as shown after "got" in errors.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(s) => quote(s),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The object's keys, for "unrecognised" errors.
pub(super) fn field_list(map: &Map<String, Value>) -> String {
    const MAX_FIELDS: usize = 12;
    if map.is_empty() {
        return "none".to_owned();
    }
    let mut names: Vec<String> = map.keys().take(MAX_FIELDS).map(|k| quote(k)).collect();
    if map.len() > MAX_FIELDS {
        names.push(format!("and {} more", map.len() - MAX_FIELDS));
    }
    names.join(", ")
}
