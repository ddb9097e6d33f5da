//! The login the RPC calls use: a user in BUILTIN\Administrators (NetFileEnum needs that SID;
//! members also hold SeDiskOperatorPrivilege, which NetFileClose needs).
//!
//! The password never appears in an argument list, a log line, an error or `Debug` output: it
//! is handed to `net` in the child's environment only.

use std::fmt;
use std::path::Path;

/// A Samba login for MS-SRVS calls.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name, without domain.
    pub username: String,
    /// The domain or workgroup, when one is needed.
    pub domain: Option<String>,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why credentials could not be read. Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The credentials file could not be read.
    #[error("reading the Samba credentials file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// The file or the environment lacks a field.
    #[error("{source_name} has no {field}")]
    Missing {
        /// Where we looked.
        source_name: String,
        /// `username` or `password`.
        field: &'static str,
    },
    /// A line of the file is not `key = value`.
    #[error("{path} line {line}: expected `username = ...`, `password = ...` or `domain = ...`")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
    },
    /// A line's key is none of the file format's.
    #[error(
        "{path} line {line}: unknown key {key}, expected one of username, password, domain (or user, workgroup)"
    )]
    UnknownKey {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The key, quoted; `(not shown)` when it does not look like a key and may be part of
        /// a secret.
        key: String,
    },
    /// A key is given twice (Samba would keep the last; a second password is more likely a
    /// mistake than an intent).
    #[error("{path} line {line}: {key} is given a second time")]
    Repeated {
        /// The file.
        path: String,
        /// 1-based line number of the second one.
        line: usize,
        /// `username`, `password` or `domain`.
        key: &'static str,
    },
}

/// A key as an error may show it: quoted when it looks like a key (at most 32 letters, digits,
/// `_` or `-`); otherwise it may be a password line missing its `password =`, and is not shown.
fn shown_key(key: &str) -> String {
    let key_like = !key.is_empty()
        && key.len() <= 32
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if key_like {
        format!("{key:?}")
    } else {
        "(not shown)".to_owned()
    }
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        domain: Option<String>,
    ) -> Self {
        Self {
            username: username.into(),
            domain: domain.filter(|d| !d.is_empty()),
            password: password.into(),
        }
    }

    /// Reads a file in Samba's authentication-file format (the one `smbclient -A` reads):
    /// `username = NAME`, `password = SECRET`, optional `domain = NAME`; `#` comments. A
    /// `DOMAIN\user` user name is split.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CredentialsError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &shown)
    }

    fn parse(text: &str, shown: &str) -> Result<Self, CredentialsError> {
        let (mut user, mut password, mut domain) = (None, None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(CredentialsError::Malformed {
                    path: shown.to_owned(),
                    line: i + 1,
                });
            };
            // Samba keeps the value's inner spaces; only the padding around `=` goes.
            let value = value.trim().to_owned();
            let key = key.trim();
            let (name, slot) = match key.to_ascii_lowercase().as_str() {
                "username" | "user" => ("username", &mut user),
                "password" => ("password", &mut password),
                "domain" | "workgroup" => ("domain", &mut domain),
                _ => {
                    return Err(CredentialsError::UnknownKey {
                        path: shown.to_owned(),
                        line: i + 1,
                        key: shown_key(key),
                    });
                }
            };
            if slot.replace(value).is_some() {
                return Err(CredentialsError::Repeated {
                    path: shown.to_owned(),
                    line: i + 1,
                    key: name,
                });
            }
        }
        Self::assemble(user, password, domain, shown)
    }

    /// Reads `user_var` (optionally `DOMAIN\user`) and `password_var` from the environment.
    pub fn from_env(user_var: &str, password_var: &str) -> Result<Self, CredentialsError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self::assemble(
            get(user_var),
            get(password_var),
            None,
            &format!("the environment ({user_var}, {password_var})"),
        )
    }

    fn assemble(
        user: Option<String>,
        password: Option<String>,
        domain: Option<String>,
        shown: &str,
    ) -> Result<Self, CredentialsError> {
        let missing = |field| CredentialsError::Missing {
            source_name: shown.to_owned(),
            field,
        };
        let user = user
            .filter(|u| !u.is_empty())
            .ok_or_else(|| missing("username"))?;
        let password = password.ok_or_else(|| missing("password"))?;
        let (domain, user) = match user.split_once(['\\', '/']) {
            Some((d, u)) if domain.is_none() => (Some(d.to_owned()), u.to_owned()),
            _ => (domain, user),
        };
        Ok(Self::new(user, password, domain))
    }

    /// The environment `net` reads a login from (Samba's `USER` and `PASSWD` convention), so
    /// that the password stays out of `ps`.
    pub(super) fn child_env(&self) -> Vec<(&'static str, String)> {
        let user = match &self.domain {
            Some(d) => format!("{d}\\{}", self.username),
            None => self.username.clone(),
        };
        vec![("USER", user), ("PASSWD", self.password.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_samba_auth_file_format() {
        let c = Credentials::parse(
            "# admin for NetFileClose\nusername = admin\npassword =  pa ss=word \ndomain = WG\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.username, "admin");
        assert_eq!(c.domain.as_deref(), Some("WG"));
        assert_eq!(c.password, "pa ss=word");

        let c = Credentials::parse("username = SRV\\admin\npassword = x\n", "f").unwrap();
        assert_eq!(
            (c.username.as_str(), c.domain.as_deref()),
            ("admin", Some("SRV"))
        );

        assert_eq!(
            Credentials::parse("username = a\n", "f")
                .unwrap_err()
                .to_string(),
            "f has no password"
        );
        assert_eq!(
            Credentials::parse("username a\n", "f").unwrap_err(),
            CredentialsError::Malformed {
                path: "f".into(),
                line: 1
            }
        );
    }

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let c = Credentials::new("admin", "hunter2-secret", None);
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let err = Credentials::parse("password = hunter2-secret\nbogus line\n", "f").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn refuses_unknown_and_repeated_keys_naming_them() {
        let err = Credentials::parse("username = a\npasword = x\n", "creds").unwrap_err();
        assert_eq!(
            err.to_string(),
            "creds line 2: unknown key \"pasword\", expected one of username, password, domain (or user, workgroup)"
        );
        let err = Credentials::parse("username = a\nhunter2 secret = x\n", "creds").unwrap_err();
        assert!(err.to_string().contains("unknown key (not shown)"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err =
            Credentials::parse("user = a\npassword = x\nusername = b\n", "creds").unwrap_err();
        assert_eq!(
            err.to_string(),
            "creds line 3: username is given a second time"
        );
    }
}
