//! Comparing the JSON AWS returns (policies, redrive) with what setup wants.

use serde_json::Value;

/// JSON equality up to key order and one-element arrays vs. scalars (IAM
/// policies may come back in either form).
pub(super) fn same_json(a: &Value, b: &Value) -> bool {
    fn norm(v: &Value) -> Value {
        match v {
            Value::Array(items) if items.len() == 1 => norm(&items[0]),
            Value::Array(items) => Value::Array(items.iter().map(norm).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), norm(v))).collect())
            }
            Value::Number(n) => Value::String(n.to_string()),
            other => other.clone(),
        }
    }
    norm(a) == norm(b)
}

/// [`same_json`] of two JSON texts; unparsable or missing is never the same.
pub(super) fn same_json_text(have: Option<&str>, want: &str) -> bool {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    matches!((have.and_then(parse), parse(want)), (Some(h), Some(w)) if same_json(&h, &w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_comparison_ignores_order_singletons_and_number_strings() {
        let a = json!({"Statement": [{"Action": "sqs:SendMessage", "Effect": "Allow"}], "Version": "2012-10-17"});
        let b = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": ["sqs:SendMessage"]}});
        assert!(same_json(&a, &b));
        assert!(same_json_text(
            Some(r#"{"maxReceiveCount":"10","deadLetterTargetArn":"x"}"#),
            r#"{"deadLetterTargetArn":"x","maxReceiveCount":10}"#
        ));
        assert!(!same_json_text(
            Some(r#"{"maxReceiveCount":5}"#),
            r#"{"maxReceiveCount":10}"#
        ));
        assert!(!same_json_text(None, "{}"));
    }
}
