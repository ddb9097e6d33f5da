//! The seed file that loads a memory store (see `docs/seed-format.md`).

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::{MAX_CLIENT_NAME_CHARS, MemoryStore, NodeKind, OpenSpec};
use crate::document::{DocumentError, from_yaml};
use crate::duration::HumanDuration;
use crate::protocol::AccessRights;

/// A memory store's initial content.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The shares.
    #[serde(default)]
    pub shares: Vec<SeedShare>,
}

/// One share of a seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedShare {
    /// The share's name (Azure's rules: 3-63 lowercase letters, digits, hyphens).
    pub name: String,
    /// Directories to create (parents are created too).
    #[serde(default)]
    pub directories: Vec<String>,
    /// Files to create without handles.
    #[serde(default)]
    pub files: Vec<String>,
    /// Open handles.
    #[serde(default)]
    pub handles: Vec<SeedHandle>,
}

/// One or more identical open handles of a seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedHandle {
    /// Path below the share root; empty or absent for the root directory. Created when missing.
    #[serde(default)]
    pub path: String,
    /// Whether a missing path is created as a directory rather than a file.
    #[serde(default)]
    pub directory: bool,
    /// The client's `ip:port`.
    pub client: String,
    /// The client's machine name.
    #[serde(default)]
    pub client_name: Option<String>,
    /// The SMB session id; derived from the client when absent.
    #[serde(default)]
    pub session: Option<u64>,
    /// How long ago the handle was opened (stands in for `openTime`, so demo data stays fresh).
    #[serde(default)]
    pub age: Option<HumanDuration>,
    /// When the handle was opened (RFC 3339).
    #[serde(default)]
    pub open_time: Option<Timestamp>,
    /// How long ago the client last reconnected the handle.
    #[serde(default)]
    pub reconnected_ago: Option<HumanDuration>,
    /// When the client last reconnected the handle (RFC 3339).
    #[serde(default)]
    pub last_reconnect_time: Option<Timestamp>,
    /// The rights held: any of `Read`, `Write`, `Delete`. Default `[Read]`.
    #[serde(default)]
    pub access: Option<AccessRights>,
    /// How many identical handles to open. Default 1; at most [`super::MAX_OPEN_COUNT`].
    #[serde(default)]
    pub count: Option<u32>,
    /// The store refuses to force-close these handles (they count as failed).
    #[serde(default)]
    pub fail_close: bool,
}

/// A seed that cannot be read or applied, naming the place and the value.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file is not valid YAML of the seed's shape (an unknown field, a wrong type).
    #[error("invalid seed: {0}")]
    Parse(DocumentError),
    /// An entry is invalid.
    #[error("invalid seed: shares[{share}] ({name}): {reason}")]
    Invalid {
        /// Index of the share.
        share: usize,
        /// Its name.
        name: String,
        /// What is wrong, naming the field and value.
        reason: String,
    },
}

impl Seed {
    /// Parses a seed from YAML; `document` names it in errors (the file name).
    pub fn from_yaml(text: &str, document: &str) -> Result<Self, SeedError> {
        from_yaml(text, document).map_err(SeedError::Parse)
    }

    /// Creates the seed's shares, nodes and handles in `store`, ages measured from `now`.
    pub fn apply(&self, store: &MemoryStore, now: Timestamp) -> Result<(), SeedError> {
        for (i, share) in self.shares.iter().enumerate() {
            let invalid = |reason: String| SeedError::Invalid {
                share: i,
                name: share.name.clone(),
                reason,
            };
            store
                .create_share(&share.name)
                .map_err(|e| invalid(e.to_string()))?;
            for dir in &share.directories {
                store
                    .create(&share.name, dir, NodeKind::Directory)
                    .map_err(|e| invalid(format!("directories: {e}")))?;
            }
            for file in &share.files {
                store
                    .create(&share.name, file, NodeKind::File)
                    .map_err(|e| invalid(format!("files: {e}")))?;
            }
            for (j, h) in share.handles.iter().enumerate() {
                let spec = h
                    .to_spec(now)
                    .map_err(|r| invalid(format!("handles[{j}]: {r}")))?;
                store
                    .open(&share.name, &h.path, &spec)
                    .map_err(|e| invalid(format!("handles[{j}]: {e}")))?;
            }
        }
        Ok(())
    }
}

impl SeedHandle {
    pub(crate) fn to_spec(&self, now: Timestamp) -> Result<OpenSpec, String> {
        let ago = |d: HumanDuration, field: &str| {
            SignedDuration::try_from(d.0)
                .ok()
                .and_then(|d| now.checked_sub(d).ok())
                .ok_or_else(|| format!("{field}: {d} reaches before the year -9999"))
        };
        let open_time = match (self.age, self.open_time) {
            (Some(_), Some(_)) => return Err("give either age or openTime, not both".into()),
            (Some(age), None) => ago(age, "age")?,
            (None, Some(t)) => t,
            (None, None) => now,
        };
        let last_reconnect_time = match (self.reconnected_ago, self.last_reconnect_time) {
            (Some(_), Some(_)) => {
                return Err("give either reconnectedAgo or lastReconnectTime, not both".into());
            }
            (Some(d), None) => Some(ago(d, "reconnectedAgo")?),
            (None, t) => t,
        };
        for (field, value) in [
            ("client", Some(&self.client)),
            ("clientName", self.client_name.as_ref()),
        ] {
            if let Some(v) = value
                && v.chars()
                    .any(|c| c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
            {
                return Err(format!(
                    "{field} {v:?} holds a control or non-character; SMB clients send none"
                ));
            }
        }
        if let Some(name) = &self.client_name
            && name.chars().count() > MAX_CLIENT_NAME_CHARS
        {
            return Err(format!(
                "clientName of {} characters is longer than the bound of {MAX_CLIENT_NAME_CHARS}",
                name.chars().count()
            ));
        }
        if crate::protocol::parse_client_ip(&self.client).is_none() {
            return Err(format!(
                "client {:?} is not an address like 10.0.0.1:445",
                self.client
            ));
        }
        let count = self.count.unwrap_or(1);
        if count == 0 {
            return Err("count: 0 opens nothing; use 1 or more".into());
        }
        Ok(OpenSpec {
            client_ip: self.client.clone(),
            client_name: self.client_name.clone(),
            session_id: self.session,
            open_time,
            last_reconnect_time,
            access_rights: self.access.unwrap_or(AccessRights::READ),
            directory: self.directory,
            count,
            fail_close: self.fail_close,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<MemoryStore, SeedError> {
        let seed = Seed::from_yaml(text, "seed.yaml")?;
        MemoryStore::from_seed(&seed, Timestamp::UNIX_EPOCH, 1000)
    }

    #[test]
    fn a_huge_count_is_refused_naming_the_entry_and_the_bound() {
        let err = load(
            "shares:\n  - name: data\n    handles:\n      - { path: f, client: 10.0.0.1:445 }\n      - { path: f, client: 10.0.0.1:445, count: 4294967295 }\n",
        )
        .err()
        .expect("must be refused");
        assert_eq!(
            err.to_string(),
            "invalid seed: shares[0] (data): handles[1]: count 4294967295 is above the bound of 1000000 handles per open"
        );
    }

    #[test]
    fn long_client_names_and_unknown_fields_are_refused() {
        let name = "n".repeat(256);
        let err = load(&format!(
            "shares:\n  - name: data\n    handles:\n      - {{ client: 10.0.0.1:445, clientName: {name} }}\n"
        ))
        .err()
        .expect("must be refused");
        assert!(
            err.to_string()
                .contains("clientName of 256 characters is longer than the bound of 255"),
            "{err}"
        );
        let err = load(
            "shares:\n  - name: data\n    handles:\n      - { client: 10.0.0.1:445, cout: 2 }\n",
        )
        .err()
        .expect("must be refused");
        assert!(
            err.to_string()
                .starts_with("invalid seed: seed.yaml: shares[0].handles[0].cout (line 4, column "),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("expected one of path, directory, client"),
            "{err}"
        );
    }
}
