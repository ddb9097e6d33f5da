//! What the caller knows about the world: which clients belong to the cluster, and since
//! when unknown clients have been seen (carried between sweeps).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::protocol::Handle;

/// The cluster's nodes and pods, as far as handles can name them: addresses and names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    ips: HashSet<IpAddr>,
    /// Lowercased: SMB machine names are case-insensitive.
    names: HashSet<String>,
}

impl ClusterFacts {
    /// Facts from addresses and names (node InternalIP/ExternalIP/hostname, pod IPs/host IP).
    pub fn new(
        ips: impl IntoIterator<Item = IpAddr>,
        names: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            ips: ips.into_iter().collect(),
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether the handle's client is a node or pod of the cluster, by address or name.
    pub fn knows(&self, h: &Handle) -> bool {
        h.client_addr().is_some_and(|ip| self.ips.contains(&ip))
            || h.client_name
                .as_deref()
                .is_some_and(|n| self.names.contains(&n.to_ascii_lowercase()))
    }
}

/// The key a client is remembered by: its address, else its name, else the raw field.
pub fn client_key(h: &Handle) -> String {
    match (h.client_addr(), &h.client_name) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(name)) if !name.is_empty() => name.to_ascii_lowercase(),
        _ => h.client_ip.clone(),
    }
}

/// When each unknown client was first seen unknown, carried from sweep to sweep (the
/// controller keeps it in status, the CLI in a state file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrphanLedger(pub BTreeMap<String, Timestamp>);

impl OrphanLedger {
    /// When `key` was first seen unknown.
    pub fn first_seen(&self, key: &str) -> Option<Timestamp> {
        self.0.get(key).copied()
    }
}
