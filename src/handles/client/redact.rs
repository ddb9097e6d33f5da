//! Keeps the secrets of a request out of what a service answered: a service (or anything
//! between it and us) may echo the `Authorization` value or the SAS signature in its error
//! message, and that message reaches errors, status conditions, Events and logs.

/// The secret strings of one request.
#[derive(Default)]
pub(super) struct Redactor(Vec<String>);

/// What stands in for a secret.
pub(super) const REDACTED: &str = "<redacted>";

/// The longest service message kept in an error; the rest is cut.
const MAX_MESSAGE_CHARS: usize = 1024;

impl Redactor {
    /// Adds a secret (ignored when too short to be one: it would redact ordinary words).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 8 {
            self.0.push(secret.to_owned());
        }
    }

    /// Adds a secret in the form sent (percent-encoded) and decoded.
    pub fn add_encoded(&mut self, secret: &str) {
        self.add(secret);
        if let Ok(decoded) = percent_encoding::percent_decode_str(secret).decode_utf8() {
            self.add(&decoded);
        }
    }

    /// `text` with every secret replaced, cut to a bounded length.
    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        if out.chars().count() > MAX_MESSAGE_CHARS {
            out = out.chars().take(MAX_MESSAGE_CHARS).collect();
            out.push_str("… (cut)");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_form_and_bounds_the_length() {
        let mut r = Redactor::default();
        r.add_encoded("abc%2Bdef%3D");
        r.add("short");
        let text = "sig 'abc%2Bdef%3D' or 'abc+def=' is wrong; short stays";
        assert_eq!(
            r.clean(text),
            "sig '<redacted>' or '<redacted>' is wrong; short stays"
        );
        let long = "x".repeat(5000);
        assert!(r.clean(&long).chars().count() < 1100);
    }
}
