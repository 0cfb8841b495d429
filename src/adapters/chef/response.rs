//! Reading what a Chef server answered, for error messages: the object path
//! and the server's `{"error": [...]}` text or the start of the body.

use serde_json::Value;

/// "/nodes/web-1" style label for messages.
pub(super) fn object_name(segments: &[&str]) -> String {
    format!("/{}", segments.join("/"))
}

/// The server's `{"error": [...]}` text, or the start of the body.
pub(super) fn error_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        match v.get("error") {
            Some(Value::Array(items)) => {
                return items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| i.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Some(Value::String(s)) => return s.clone(),
            _ => {}
        }
    }
    snippet(body)
}

pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_reads_chef_error_arrays() {
        assert_eq!(error_detail(br#"{"error":["a","b"]}"#), "a; b");
        assert_eq!(error_detail(b""), "(empty body)");
        assert_eq!(error_detail(b"<html>"), "<html>");
    }

    #[test]
    fn object_names_are_paths() {
        assert_eq!(object_name(&["nodes", "web-1"]), "/nodes/web-1");
    }
}
