//! Typed identifiers: values that are checked once, where they enter, and
//! can then be passed around without re-checking.

use std::fmt;
use std::str::FromStr;

/// An EC2 instance id: `i-` and 8 or 17 lowercase hex digits (e.g.
/// `i-0123456789abcdef0`, or the older `i-abcd1111`).
///
/// Only [`InstanceId::parse`] (and the `FromStr`, `TryFrom` and `Deserialize`
/// built on it) makes one, so every value is valid. It serializes as the
/// plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

/// A string that is not an EC2 instance id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected an EC2 instance id like i-0123456789abcdef0 (\"i-\" and 8 or 17 \
     lowercase hex digits), got {got}"
)]
pub struct InvalidInstanceId {
    /// The rejected text, quoted and cut to 64 characters.
    got: String,
}

/// At most this many characters of a rejected id are quoted in errors.
const MAX_QUOTE: usize = 64;

impl InstanceId {
    /// Checks `s` and keeps it as an instance id.
    pub fn parse(s: &str) -> Result<Self, InvalidInstanceId> {
        if Self::is_valid(s) {
            Ok(InstanceId(s.to_owned()))
        } else {
            Err(InvalidInstanceId::of(s))
        }
    }

    /// Whether `s` is an instance id, without keeping it.
    pub fn is_valid(s: &str) -> bool {
        s.strip_prefix("i-").is_some_and(|hex| {
            matches!(hex.len(), 8 | 17)
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl InvalidInstanceId {
    fn of(s: &str) -> Self {
        let shown: String = s.chars().take(MAX_QUOTE).collect();
        let ellipsis = if shown.len() < s.len() { "..." } else { "" };
        InvalidInstanceId {
            got: format!("{shown:?}{ellipsis}"),
        }
    }
}

/// Whether `s` is an EC2 instance id: `i-` and 8 or 17 lowercase hex digits
/// (see [`InstanceId`]).
pub fn is_instance_id(s: &str) -> bool {
    InstanceId::is_valid(s)
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InstanceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for InstanceId {
    type Err = InvalidInstanceId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceId::parse(s)
    }
}

impl TryFrom<&str> for InstanceId {
    type Error = InvalidInstanceId;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        InstanceId::parse(s)
    }
}

impl TryFrom<String> for InstanceId {
    type Error = InvalidInstanceId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if InstanceId::is_valid(&s) {
            Ok(InstanceId(s))
        } else {
            Err(InvalidInstanceId::of(&s))
        }
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> Self {
        id.0
    }
}

impl PartialEq<str> for InstanceId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for InstanceId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de> serde::Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        InstanceId::try_from(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    #[test]
    fn instance_ids() {
        for ok in [
            "i-1234567890abcdef0",
            "i-abcd1111",
            "i-00000000",
            "i-0598c7d356eba48d7",
        ] {
            assert!(is_instance_id(ok), "{ok}");
            let id = InstanceId::parse(ok).expect("valid");
            assert_eq!(id.as_str(), ok);
            assert_eq!(id.to_string(), ok);
            assert_eq!(id.as_ref(), ok);
            assert_eq!(id, ok);
            assert_eq!(ok.parse::<InstanceId>(), Ok(id.clone()));
            assert_eq!(InstanceId::try_from(ok.to_owned()), Ok(id.clone()));
            assert_eq!(String::from(id), ok);
        }
        for bad in [
            "",
            "i-",
            "foo",
            "i-1234567",
            "i-123456789",
            "i-1234567890abcdef",
            "i-1234567890abcdef01",
            "i-ABCD1111",
            "i-abcd111g",
            "I-abcd1111",
            "x-abcd1111",
            " i-abcd1111",
            "i-abcd1111\n",
            "i-abcd11é",
        ] {
            assert!(!is_instance_id(bad), "{bad:?}");
            assert!(InstanceId::parse(bad).is_err(), "{bad:?}");
            assert!(InstanceId::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }

    /// The error names what was expected and quotes what was given.
    fn rejection(s: &str) -> String {
        InstanceId::parse(s).expect_err("invalid").to_string()
    }

    #[test]
    fn hostile_inputs_are_rejected_with_a_clear_error() {
        const EXPECTED: &str = "expected an EC2 instance id like i-0123456789abcdef0 \
                                (\"i-\" and 8 or 17 lowercase hex digits), got ";
        for (input, got) in [
            ("", r#""""#),
            ("i-", r#""i-""#),
            ("i-1234567890ABCDEF0", r#""i-1234567890ABCDEF0""#),
            ("i-ABCD1111", r#""i-ABCD1111""#),
            ("i-abcd111", r#""i-abcd111""#),
            ("i-abcd11111", r#""i-abcd11111""#),
            ("i-1234567890abcdef", r#""i-1234567890abcdef""#),
            ("i-abcd\u{e9}111", "\"i-abcd\u{e9}111\""),
            // Fullwidth digits are hex to a human, not to EC2.
            ("i-\u{ff10}bcd1111", "\"i-\u{ff10}bcd1111\""),
            ("i-abcd1111\0", r#""i-abcd1111\0""#),
            ("i-abcd1111\"}", r#""i-abcd1111\"}""#),
        ] {
            assert_eq!(rejection(input), format!("{EXPECTED}{got}"), "{input:?}");
        }
        // Long input is cut, also in the middle of multi-byte characters.
        let long = "é".repeat(1000);
        let message = rejection(&long);
        assert!(message.len() < 300, "{message}");
        assert!(message.ends_with("\"..."), "{message}");
        assert_eq!(message.matches('é').count(), MAX_QUOTE);
    }

    #[test]
    fn serializes_as_a_string_and_checks_when_deserialized() {
        let id = InstanceId::parse("i-0598c7d356eba48d7").expect("valid");
        let json = serde_json::to_string(&id).expect("serializable");
        assert_eq!(json, r#""i-0598c7d356eba48d7""#);
        assert_eq!(serde_json::from_str::<InstanceId>(&json).ok(), Some(id));
        for bad in [r#""""#, r#""i-""#, r#""i-ABCD1111""#, "17", "null", "[]"] {
            assert!(serde_json::from_str::<InstanceId>(bad).is_err(), "{bad}");
        }
        let message = serde_json::from_str::<InstanceId>(r#""i-ABCD1111""#)
            .expect_err("invalid")
            .to_string();
        assert!(
            message.contains("expected an EC2 instance id") && message.contains("i-ABCD1111"),
            "{message}"
        );
    }

    #[test]
    fn orders_and_hashes_by_the_text() {
        let ids: Vec<InstanceId> = ["i-bbbb1111", "i-aaaa1111", "i-bbbb1111"]
            .into_iter()
            .map(|s| InstanceId::parse(s).expect("valid"))
            .collect();
        let sorted: Vec<&str> = ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(InstanceId::as_str)
            .collect();
        assert_eq!(sorted, ["i-aaaa1111", "i-bbbb1111"]);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2);
        assert!(ids[1] < ids[0]);
    }
}
