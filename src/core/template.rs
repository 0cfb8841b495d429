//! The webhook body template (`[webhook] template`): a JSON document whose
//! strings (values and keys) may hold `{{field}}` placeholders, filled from
//! the webhook's default document.
//!
//! Rendering never splices text into JSON: the template is parsed once,
//! and each string is rebuilt as a JSON string, so a value with quotes,
//! backslashes or newlines is escaped by the encoder and cannot change the
//! document's shape. A string that is exactly one placeholder takes the
//! field's JSON value (a missing field: `null`); placeholders inside a
//! longer string take the field's text (`null`: empty).

use serde_json::{Map, Value};

/// The fields a template may name: the default document's keys.
pub const FIELDS: &[&str] = &[
    "instance_id",
    "account",
    "region",
    "group",
    "node_name",
    "client_name",
    "fqdn",
    "ipaddress",
    "outcome",
    "source",
    "journal_id",
    "idempotency_key",
];

/// A parsed, checked template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Value);

/// Why a template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is not JSON.
    #[error("expected a JSON document (placeholders go inside its strings): {0}")]
    NotJson(String),
    /// A placeholder names no field.
    #[error("unknown placeholder {{{{{field}}}}}: expected one of {}", FIELDS.join(", "))]
    Unknown {
        /// The name inside the braces.
        field: String,
    },
    /// `{{` without `}}`.
    #[error("unclosed placeholder in {0:?}: expected {{{{field}}}}")]
    Unclosed(String),
}

/// One piece of a string: literal text or a field.
enum Piece<'a> {
    Text(&'a str),
    Field(&'a str),
}

/// Splits `s` into text and `{{field}}` pieces, checking each field.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(s.to_string()))?;
        let field = after[..close].trim();
        if !FIELDS.contains(&field) {
            return Err(TemplateError::Unknown {
                field: field.to_string(),
            });
        }
        out.push(Piece::Field(field));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Every string (and key) of `v`, depth first.
fn check(v: &Value) -> Result<(), TemplateError> {
    match v {
        Value::String(s) => pieces(s).map(|_| ()),
        Value::Array(items) => items.iter().try_for_each(check),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            pieces(k)?;
            check(v)
        }),
        _ => Ok(()),
    }
}

/// A field's text inside a longer string.
fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl Template {
    /// Parses and checks `text`: JSON, every placeholder a known field.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| TemplateError::NotJson(e.to_string()))?;
        check(&v)?;
        Ok(Template(v))
    }

    /// The body for `doc` (the default document).
    pub fn render(&self, doc: &Value) -> Value {
        render(&self.0, doc)
    }
}

fn render_str(s: &str, doc: &Value) -> Value {
    let Ok(parts) = pieces(s) else {
        return Value::String(s.to_string());
    };
    if let [Piece::Text(""), Piece::Field(f), Piece::Text("")] = parts.as_slice() {
        return doc.get(*f).cloned().unwrap_or(Value::Null);
    }
    Value::String(
        parts
            .iter()
            .map(|p| match p {
                Piece::Text(t) => (*t).to_string(),
                Piece::Field(f) => text_of(doc.get(*f)),
            })
            .collect(),
    )
}

fn render(v: &Value, doc: &Value) -> Value {
    match v {
        Value::String(s) => render_str(s, doc),
        Value::Array(items) => Value::Array(items.iter().map(|i| render(i, doc)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match render_str(k, doc) {
                        Value::String(s) => s,
                        other => text_of(Some(&other)),
                    };
                    (key, render(v, doc))
                })
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_fill_values_keys_and_keep_types() {
        let t = Template::parse(
            r#"{"text": "{{node_name}} ({{instance_id}}) in {{group}}: {{outcome}}",
                "id": "{{instance_id}}", "group": "{{group}}", "{{outcome}}": true, "n": 3}"#,
        )
        .expect("template");
        let doc = json!({"node_name": "web-1", "instance_id": "i-0abc", "group": null, "outcome": "deleted"});
        assert_eq!(
            t.render(&doc),
            json!({"text": "web-1 (i-0abc) in : deleted", "id": "i-0abc", "group": null,
                   "deleted": true, "n": 3})
        );
    }

    #[test]
    fn unknown_placeholder_and_bad_json_are_refused_by_name() {
        let e = Template::parse(r#"{"a": "{{node_nme}}"}"#).expect_err("unknown");
        assert_eq!(
            e,
            TemplateError::Unknown {
                field: "node_nme".into()
            }
        );
        assert!(e.to_string().contains("{{node_nme}}"), "{e}");
        assert!(matches!(
            Template::parse(r#"{"a": "{{fqdn"}"#),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            Template::parse("{\"a\": {{fqdn}}}"),
            Err(TemplateError::NotJson(_))
        ));
    }

    #[test]
    fn hostile_values_cannot_inject_json() {
        let t = Template::parse(r#"{"text": "node {{node_name}} gone", "ok": true}"#)
            .expect("template");
        let hostile = "x\", \"ok\": false, \"y\": \"\n\\";
        let body =
            serde_json::to_string(&t.render(&json!({"node_name": hostile}))).expect("encode");
        let back: Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(back["ok"], true);
        assert_eq!(back["text"], format!("node {hostile} gone"));
        assert_eq!(back.as_object().map(Map::len), Some(2));
    }
}
