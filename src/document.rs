//! Documents read from files and requests (policy manifests, seeds, credentials files, admin
//! bodies), parsed strictly: the types they land in refuse unknown fields, and a failure names
//! the document, the field's path inside it (`spec.protect.clientCidrs`), its line and what
//! serde expected there ("expected one of clientCIDRs, clientNames").
//!
//! Errors quote no lines of the document (no snippet around the failure: the lines of a
//! credentials file are secrets), only what serde's message names: a key, or a value of the
//! wrong type. YAML is read within serde-saphyr's default budget (250,000 nodes, depth 64,
//! 50,000 aliases), so an alias bomb is an error, not an exhausted machine.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_saphyr::MessageFormatter;

/// A document that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DocumentError {
    /// The document: a file name, or `the request body`.
    pub document: String,
    /// The field's path inside the document, as in `spec.shares[0].share`; empty at the root.
    pub path: String,
    /// Line and column (1-based) of the failure, when the parser knows them.
    pub position: Option<(u64, u64)>,
    /// What is wrong.
    pub reason: String,
}

impl DocumentError {
    /// An error at `path` of `document`, without a position.
    pub fn new(
        document: impl Into<String>,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            document: document.into(),
            path: path.into(),
            position: None,
            reason: reason.into(),
        }
    }

    /// The same error, at a line and column.
    pub fn at(mut self, line: u64, column: u64) -> Self {
        self.position = Some((line, column));
        self
    }
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.document)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        if let Some((line, column)) = self.position {
            write!(f, " (line {line}, column {column})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The path as `spec.shares[0].share`: serde_path_to_error's segments without its `.` for the
/// root and `?` for a step it could not name (a duplicate key's map).
fn path_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out += &format!("[{index}]"),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out += &printable(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// `s` with its control characters escaped: a message quotes keys and values of the document,
/// and a hostile one must not reach a terminal or a log line raw.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Parses one YAML document (JSON is YAML too) into `T`. Duplicate keys and a second document
/// are refused, as are unknown fields of types that deny them.
pub fn from_yaml<T: DeserializeOwned>(text: &str, document: &str) -> Result<T, DocumentError> {
    let mut options = serde_saphyr::Options::default();
    // A snippet quotes the lines around the failure, and a credentials file's lines are secrets.
    options.with_snippet = false;
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = path_of(e.path());
            e.into_inner()
        })
    })
    .map_err(|e| {
        let reason = serde_saphyr::UserMessageFormatter.format_message(&e);
        let err = DocumentError::new(document, path, printable(&reason));
        match e.location() {
            Some(l) => err.at(l.line(), l.column()),
            None => err,
        }
    })
}

/// Parses a JSON document into `T`, with nothing after it.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8], document: &str) -> Result<T, DocumentError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut path = String::new();
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            path = path_of(e.path());
            e.into_inner()
        })
        .and_then(|value| de.end().map(|()| value))
        .map_err(|e| {
            // serde_json appends the position to its message; it is kept apart here.
            let shown = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let reason = shown.strip_suffix(&suffix).unwrap_or(&shown);
            let err = DocumentError::new(document, path, printable(reason));
            if e.line() == 0 {
                err
            } else {
                err.at(e.line() as u64, e.column() as u64)
            }
        })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Outer {
        inner: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Inner {
        #[serde(default)]
        client_names: Vec<String>,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn yaml_errors_name_the_document_path_line_and_the_allowed_fields() {
        let err = from_yaml::<Outer>("inner:\n  - count: 1\n  - clientname: [a]\n", "policy.yaml")
            .unwrap_err();
        assert_eq!(err.path, "inner[1].clientname");
        assert_eq!(err.position, Some((3, 5)));
        assert_eq!(
            err.to_string(),
            "policy.yaml: inner[1].clientname (line 3, column 5): unknown field `clientname`, expected one of clientNames, count"
        );
    }

    #[test]
    fn yaml_refuses_duplicate_keys_and_second_documents() {
        let err = from_yaml::<Outer>("inner: []\ninner: []\n", "f").unwrap_err();
        assert!(err.reason.contains("duplicate"), "{err}");
        let err = from_yaml::<Outer>("inner: []\n---\ninner: []\n", "f").unwrap_err();
        assert!(err.reason.contains("multiple"), "{err}");
    }

    #[test]
    fn yaml_errors_never_quote_other_lines() {
        let err =
            from_yaml::<Outer>("inner:\n  - count: 1\n    secret: hunter2\n", "creds").unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("inner[0].secret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn control_characters_are_escaped_and_quotes_kept() {
        let err = from_json::<Inner>(b"{\"a\\u001b[2J\\\"b\": 1}", "b").unwrap_err();
        assert_eq!(err.path, "a\\u{1b}[2J\"b", "{err}");
        assert!(err.reason.contains("a\\u{1b}[2J\"b"), "{err}");
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }

    #[test]
    fn json_errors_name_the_path_and_keep_the_position_apart() {
        let err = from_json::<Inner>(br#"{"count": 1, "clientName": "x"}"#, "the request body")
            .unwrap_err();
        assert_eq!(err.path, "clientName");
        assert_eq!(err.position, Some((1, 25)));
        assert!(
            err.reason
                .starts_with("unknown field `clientName`, expected `clientNames` or `count`"),
            "{err}"
        );
        let err = from_json::<Inner>(br#"{"count": 4294967296}"#, "b").unwrap_err();
        assert_eq!(err.path, "count");
        let err = from_json::<Inner>(br#"{} {}"#, "b").unwrap_err();
        assert!(err.reason.contains("trailing"), "{err}");
        let ok: Outer =
            from_json(br#"{"inner": [{"clientNames": ["a"], "count": 2}]}"#, "b").unwrap();
        assert_eq!((ok.inner[0].client_names.len(), ok.inner[0].count), (1, 2));
    }
}
