//! `HandlePolicy` (`sharehygiene.io/v1alpha1`): which shares and paths to keep clean, what
//! counts as a leaked handle, how careful to be, and what the last sweep saw and did.
//!
//! The schema says what it can (types, enums, ranges, patterns); CEL rules say what it
//! cannot (an interval of at least 30s, at least one rule, unique shares, valid CIDRs). The
//! operator compiles and checks the rest (globs) in `policy::compile`, and a policy that fails
//! gets a `Degraded` condition with reason `InvalidSpec` naming the field and the value.

mod manifest;
mod status;

use std::collections::BTreeMap;
use std::fmt;

use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use manifest::parse_manifest;
pub use status::{
    CONDITION_DEGRADED, CONDITION_READY, HandlePolicyStatus, LastRequest, LastSweep, OrphanRecord,
    RequestOutcome, SWEEP_REQUESTED_ANNOTATION, ShareStatus,
};

/// The API group.
pub const GROUP: &str = "sharehygiene.io";
/// The API version.
pub const VERSION: &str = "v1alpha1";

/// Bounds on a spec. The CRD's schema states them, so the API server enforces them in a
/// cluster; `policy::compile` checks them again for a policy read from a file (`sweep -f`).
/// Lengths count characters, as the schema's `maxLength` does.
pub mod bounds {
    /// Shares per policy.
    pub const SHARES: usize = 64;
    /// Paths per share, and rename-guard paths.
    pub const PATHS: usize = 64;
    /// Entries of each pattern list: include and exclude globs, client CIDRs, client names.
    pub const PATTERNS: usize = 256;
    /// A path or path glob (Azure Files' bound on a path).
    pub const PATH_CHARS: usize = 2048;
    /// An endpoint URL.
    pub const ENDPOINT_CHARS: usize = 2048;
    /// A Secret's name (a DNS subdomain).
    pub const SECRET_NAME_CHARS: usize = 253;
    /// A client-name glob.
    pub const NAME_CHARS: usize = 255;
    /// A CIDR (the longest IPv6 one has 43).
    pub const CIDR_CHARS: usize = 64;
    /// A duration such as `1h30m`.
    pub const DURATION_CHARS: usize = 32;
    /// The most handles one sweep may close.
    pub const MAX_CLOSES: i32 = 1_000_000;
}

/// Durations as Kubernetes writes them (Go's syntax, which CEL's `duration()` parses):
/// `30s`, `5m`, `1h30m`, `500ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// A policy: which shares to sweep, how often, what counts as leaked, and the limits.
// `printcolumn(...)` repeats `name`, `type_` and `json_path` by design of kube's derive.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sharehygiene.io",
    version = "v1alpha1",
    kind = "HandlePolicy",
    plural = "handlepolicies",
    shortname = "hpol",
    category = "sharehygiene",
    namespaced,
    status = "HandlePolicyStatus",
    doc = "Keeps SMB file shares free of leaked handles: sweeps the shares on a schedule and force-closes the handles its rules condemn.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Shares", type_ = "string", json_path = ".spec.shares[*].share"),
    printcolumn(
        name = "Last Sweep",
        type_ = "date",
        json_path = ".status.lastSweep.startTime"
    ),
    printcolumn(name = "Seen", type_ = "integer", json_path = ".status.lastSweep.seen"),
    printcolumn(
        name = "Closed",
        type_ = "integer",
        json_path = ".status.lastSweep.closed"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("duration(self.interval) >= duration('30s')").message("interval must be at least 30s").field_path(".interval"))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HandlePolicySpec {
    /// `DryRun` reports what would be closed and closes nothing; `Enforce` closes.
    pub mode: Mode,
    /// How often to sweep (at least 30s).
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = bounds::DURATION_CHARS))]
    pub interval: String,
    /// The shares to sweep.
    #[schemars(length(min = 1, max = bounds::SHARES))]
    #[x_kube(validation = Rule::new("self.all(x, self.exists_one(y, y.endpoint == x.endpoint && y.share == x.share))").message("each endpoint and share may appear once"))]
    pub shares: Vec<ShareSpec>,
    /// Which paths are in scope, below the shares' roots.
    #[serde(default, rename = "match", skip_serializing_if = "MatchSpec::is_empty")]
    pub match_: MatchSpec,
    /// What counts as leaked.
    pub rules: RulesSpec,
    /// Clients whose handles are never closed.
    #[serde(default, skip_serializing_if = "ProtectSpec::is_empty")]
    pub protect: ProtectSpec,
    /// Caps on how much one sweep may close.
    #[serde(default)]
    pub limits: LimitsSpec,
}

fn default_interval() -> String {
    "5m".to_owned()
}

/// Whether closes happen.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Mode {
    /// Report what would be closed; send no Force Close Handles request, ever.
    DryRun,
    /// Close what the rules condemn, within the limits.
    Enforce,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DryRun => "DryRun",
            Self::Enforce => "Enforce",
        })
    }
}

/// One share to sweep.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.credentialsSecretRef) != has(self.identity)").message("give exactly one of credentialsSecretRef and identity"))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShareSpec {
    /// The file service endpoint: `https://ACCOUNT.file.core.windows.net` for Azure Files, or a
    /// handle service's `http://HOST:PORT/ACCOUNT`.
    #[schemars(
        regex(pattern = r"^https?://[^/?#\s]+(/[^/?#\s]+)?/?$"),
        length(max = bounds::ENDPOINT_CHARS)
    )]
    pub endpoint: String,
    /// The share's name.
    #[schemars(regex(pattern = r"^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$"))]
    pub share: String,
    /// The Secret in the policy's namespace holding the credential: keys `accountName` +
    /// `accountKey`, or `sasToken`, or `connectionString`. Give this or `identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// A Microsoft Entra ID identity the controller gets OAuth tokens for (no key: for
    /// accounts with Shared Key access disabled). Give this or `credentialsSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// Directories to sweep, recursively (default: the whole share).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::PATHS), inner(length(max = bounds::PATH_CHARS)))]
    pub paths: Vec<String>,
}

impl ShareSpec {
    /// The Secrets this share reads: its credentials Secret or its service principal's.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        let identity = self.identity.as_ref().and_then(|i| i.secret_ref.as_ref());
        self.credentials_secret_ref
            .iter()
            .chain(identity)
            .map(|r| r.name.as_str())
    }
}

/// An Entra ID identity for a share. The controller asks Entra ID for tokens of the scope
/// `https://storage.azure.com/.default` and sends them with `x-ms-file-request-intent: backup`;
/// the identity needs the role Storage File Data Privileged Contributor on the account or share.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("(self.type == 'ServicePrincipal') == has(self.secretRef)").message("secretRef is required with type ServicePrincipal and allowed only there"))]
#[x_kube(validation = Rule::new("!(self.type == 'ServicePrincipal' && has(self.clientId))").message("a ServicePrincipal's clientId is in its Secret, not here"))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdentitySpec {
    /// `Workload`: AKS workload identity, federated with the controller's service account
    /// (the chart's `workloadIdentity` values); `Managed`: the node's managed identity through
    /// the instance metadata service; `ServicePrincipal`: an application and its client secret
    /// or certificate from `secretRef`.
    #[serde(rename = "type")]
    pub kind: IdentityKind,
    /// The identity's client id (a GUID). `Workload`: another identity federated with the
    /// service account than the one the webhook names; `Managed`: a user-assigned identity
    /// (default: the system-assigned one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"))]
    pub client_id: Option<String>,
    /// `ServicePrincipal` only: a Secret with the keys `tenantId`, `clientId`, and
    /// `clientSecret` or `clientCertificate` (PEM: the certificate and its RSA key), and
    /// optionally `authorityHost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// The kinds of Entra ID identity.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum IdentityKind {
    /// AKS workload identity (the projected service-account token).
    Workload,
    /// A managed identity (IMDS).
    Managed,
    /// A service principal with a client secret.
    ServicePrincipal,
}

/// A Secret in the policy's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = bounds::SECRET_NAME_CHARS))]
    pub name: String,
}

/// Path globs, relative to the share root: `*` and `?` within a segment, `**` across segments
/// (`logs/**` is `logs` and everything below it). Matched case-insensitively, as Azure Files
/// and SMB match names.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Only paths matching one of these are in scope (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::PATTERNS), inner(length(max = bounds::PATH_CHARS)))]
    pub include: Vec<String>,
    /// Paths matching one of these are out of scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::PATTERNS), inner(length(max = bounds::PATH_CHARS)))]
    pub exclude: Vec<String>,
}

impl MatchSpec {
    fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

/// What counts as a leaked handle. A handle is condemned when any rule condemns it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.stale) || has(self.orphaned) || has(self.renameGuard)").message("give at least one rule: stale, orphaned or renameGuard"))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RulesSpec {
    /// Handles held longer than this (from the last reconnect when it is newer than the open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<StaleRule>,
    /// Handles whose client is no node or pod of the cluster, for at least the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned: Option<OrphanedRule>,
    /// Paths whose rename must not be blocked: every handle on or below them is condemned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_guard: Option<RenameGuardRule>,
    /// Only handles holding at least one of these rights are condemned (default: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_rights: Vec<AccessRight>,
}

/// The stale rule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaleRule {
    /// How long a handle may be held, e.g. `12h`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = bounds::DURATION_CHARS))]
    pub open_longer_than: String,
}

/// The orphaned rule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrphanedRule {
    /// How long a client must have been unknown to the cluster, across sweeps (`0s`: at once).
    #[serde(default = "default_grace")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = bounds::DURATION_CHARS))]
    pub grace_period: String,
}

fn default_grace() -> String {
    "10m".to_owned()
}

/// The rename guard.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameGuardRule {
    /// Paths (files or directories) that must stay renameable (compared case-insensitively).
    #[schemars(
        length(min = 1, max = bounds::PATHS),
        inner(length(max = bounds::PATH_CHARS))
    )]
    pub paths: Vec<String>,
}

/// An access right a handle holds.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AccessRight {
    /// Read.
    Read,
    /// Write.
    Write,
    /// Delete.
    Delete,
}

/// Clients whose handles are never closed, whatever the rules say.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtectSpec {
    /// Client networks, IPv4 or IPv6 CIDRs (`10.1.0.0/16`, `fd00::/8`).
    #[serde(default, rename = "clientCIDRs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::PATTERNS), inner(length(max = bounds::CIDR_CHARS)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("every entry must be a CIDR such as 10.1.0.0/16"))]
    pub client_cidrs: Vec<String>,
    /// Client name globs, case-insensitive (`backup-*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::PATTERNS), inner(length(max = bounds::NAME_CHARS)))]
    pub client_names: Vec<String>,
}

impl ProtectSpec {
    fn is_empty(&self) -> bool {
        self.client_cidrs.is_empty() && self.client_names.is_empty()
    }
}

/// Caps on one sweep.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSpec {
    /// The most handles one sweep closes; the rest wait for the next sweep.
    #[serde(default = "default_max_closes")]
    #[schemars(range(min = 1, max = bounds::MAX_CLOSES))]
    pub max_closes_per_sweep: i32,
    /// If more than this percentage of the observed handles would close, close none and say
    /// why (100 turns the valve off).
    #[serde(default = "default_safety_valve")]
    #[schemars(range(min = 1, max = 100))]
    pub safety_valve_percent: i32,
}

fn default_max_closes() -> i32 {
    1000
}

fn default_safety_valve() -> i32 {
    50
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_closes_per_sweep: default_max_closes(),
            safety_valve_percent: default_safety_valve(),
        }
    }
}

/// One invalid field: its path in the spec, the value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as in `spec.rules.stale.openLongerThan`.
    pub field: String,
    /// The offending value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}: {}", self.field, self.value, self.reason)
    }
}

/// A spec that cannot be used, with every invalid field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HandlePolicy: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSpec(pub Vec<FieldError>);

/// Counts keyed by a bounded name (reason, cause), serialized in a stable order.
pub type Counts = BTreeMap<String, i64>;

/// The CustomResourceDefinition as YAML, with a header saying how it is made.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    let body = serde_saphyr::to_string(&HandlePolicy::crd())?;
    Ok(format!(
        "# Generated by `share-hygiene crd`; do not edit.\n{body}"
    ))
}
