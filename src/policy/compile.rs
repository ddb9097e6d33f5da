//! From a `HandlePolicySpec` to a [`Policy`] the engine runs: every duration, glob and CIDR
//! parsed once, every invalid field reported with its path and value.

use std::time::Duration;

use ipnet::IpNet;

use crate::api::{
    AccessRight, FieldError, HandlePolicySpec, IdentityKind, InvalidSpec, Mode, ShareSpec, bounds,
};
use crate::duration::HumanDuration;
use crate::glob::{NameGlob, PathGlob};
use crate::protocol::AccessRights;

/// The shortest interval between sweeps.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Whether closes happen.
    pub mode: Mode,
    /// Time between sweeps.
    pub interval: Duration,
    /// The shares, in spec order.
    pub shares: Vec<ShareScope>,
    /// What counts as leaked and what is protected.
    pub rules: Rules,
    /// Caps on one sweep.
    pub limits: Limits,
}

/// One share and the roots to sweep in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareScope {
    /// The file service endpoint.
    pub endpoint: String,
    /// The share.
    pub share: String,
    /// Where the share's credential comes from.
    pub credentials: ShareCredentials,
    /// Directories swept recursively, normalized (no leading or trailing `/`; empty = root).
    /// Nested roots are dropped so no handle is listed twice.
    pub roots: Vec<String>,
}

/// Where a share's credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareCredentials {
    /// The named Secret: an account key, a SAS or a connection string.
    Secret(String),
    /// AKS workload identity; a client id other than the webhook's, when given.
    Workload {
        /// The identity's client id.
        client_id: Option<String>,
    },
    /// A managed identity: a user-assigned one when a client id is given.
    Managed {
        /// The identity's client id.
        client_id: Option<String>,
    },
    /// A service principal whose tenant, client id and secret are in the named Secret.
    ServicePrincipal {
        /// The Secret's name.
        secret: String,
    },
}

impl ShareCredentials {
    /// The Secret read for the credential, when there is one.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Self::Secret(name) | Self::ServicePrincipal { secret: name } => Some(name),
            Self::Workload { .. } | Self::Managed { .. } => None,
        }
    }
}

/// The credential choice of a share: exactly one of a credentials Secret and an identity.
fn share_credentials(
    errs: &mut Errors,
    field: &dyn Fn(&str) -> String,
    s: &ShareSpec,
) -> ShareCredentials {
    let fallback = ShareCredentials::Secret(String::new());
    let identity = match (&s.credentials_secret_ref, &s.identity) {
        (Some(secret), None) => {
            errs.chars(
                &field("credentialsSecretRef.name"),
                &secret.name,
                bounds::SECRET_NAME_CHARS,
            );
            return ShareCredentials::Secret(secret.name.clone());
        }
        (None, Some(identity)) => identity,
        (Some(_), Some(_)) => {
            errs.push(
                field("identity"),
                "",
                "give exactly one of credentialsSecretRef and identity, not both",
            );
            return fallback;
        }
        (None, None) => {
            errs.push(
                field("credentialsSecretRef"),
                "",
                "give credentialsSecretRef (a key, SAS or connection string) or identity (Entra ID)",
            );
            return fallback;
        }
    };
    if let Some(id) = &identity.client_id {
        let guid = id.len() == 36
            && id.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if !guid {
            errs.push(field("identity.clientId"), id, "not a client id (a GUID)");
        }
    }
    match (identity.kind, &identity.secret_ref) {
        (IdentityKind::ServicePrincipal, Some(secret)) => {
            if identity.client_id.is_some() {
                errs.push(
                    field("identity.clientId"),
                    identity.client_id.as_deref().unwrap_or_default(),
                    "a ServicePrincipal's clientId is in its Secret, not here",
                );
            }
            errs.chars(
                &field("identity.secretRef.name"),
                &secret.name,
                bounds::SECRET_NAME_CHARS,
            );
            ShareCredentials::ServicePrincipal {
                secret: secret.name.clone(),
            }
        }
        (IdentityKind::ServicePrincipal, None) => {
            errs.push(
                field("identity.secretRef"),
                "",
                "a ServicePrincipal needs secretRef (keys tenantId, clientId, clientSecret or clientCertificate)",
            );
            fallback
        }
        (kind, Some(secret)) => {
            errs.push(
                field("identity.secretRef"),
                &secret.name,
                format!("secretRef is for type ServicePrincipal only, not {kind:?}"),
            );
            fallback
        }
        (IdentityKind::Workload, None) => ShareCredentials::Workload {
            client_id: identity.client_id.clone(),
        },
        (IdentityKind::Managed, None) => ShareCredentials::Managed {
            client_id: identity.client_id.clone(),
        },
    }
}

/// The rules of a policy, compiled.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// In scope only if matching one of these (empty: all).
    pub include: Vec<PathGlob>,
    /// Out of scope if matching one of these.
    pub exclude: Vec<PathGlob>,
    /// Held longer than this is stale.
    pub stale: Option<Duration>,
    /// Unknown to the cluster for this long is orphaned.
    pub orphaned: Option<Duration>,
    /// Handles on or below these paths block their rename (normalized paths).
    pub rename_guard: Vec<String>,
    /// Only handles holding one of these rights are condemned.
    pub access: Option<AccessRights>,
    /// Never close handles from these networks.
    pub protect_cidrs: Vec<IpNet>,
    /// Never close handles from clients with matching names.
    pub protect_names: Vec<NameGlob>,
}

/// Caps on one sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most handles one sweep closes.
    pub max_closes: u64,
    /// Close none if more than this percentage of observed handles would close.
    pub safety_valve_percent: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_closes: 1000,
            safety_valve_percent: 50,
        }
    }
}

/// A path as the policy holds it: `/`-separated, no empty segments, no leading or trailing
/// `/`. Refuses `.` and `..` segments, which would make scope checks lie.
pub fn normalize_path(p: &str) -> Result<String, &'static str> {
    let segments: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err("'.' and '..' segments are not allowed");
    }
    Ok(segments.join("/"))
}

/// Whether `path` is `root` or below it (both normalized; the empty root holds everything),
/// compared case-insensitively as Azure Files and SMB compare names.
pub fn is_within(path: &str, root: &str) -> bool {
    if root.is_empty() {
        return true;
    }
    let mut p = path.chars().flat_map(char::to_lowercase);
    for r in root.chars().flat_map(char::to_lowercase) {
        if p.next() != Some(r) {
            return false;
        }
    }
    matches!(p.next(), None | Some('/'))
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(
        &mut self,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.0.push(FieldError {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        });
    }

    /// Refuses a list of more than `max` entries.
    fn items<T>(&mut self, field: &str, list: &[T], max: usize) {
        if list.len() > max {
            self.push(
                field,
                format!("{} entries", list.len()),
                format!("at most {max} are allowed"),
            );
        }
    }

    /// Refuses a string of more than `max` characters (showing only its start); returns
    /// whether it is within the bound.
    fn chars(&mut self, field: &str, value: &str, max: usize) -> bool {
        let n = value.chars().count();
        if n > max {
            self.push(
                field,
                crate::text::truncate(value, 64),
                format!("{n} characters; at most {max} are allowed"),
            );
        }
        n <= max
    }

    fn duration(&mut self, field: &str, value: &str) -> Option<Duration> {
        if !self.chars(field, value, bounds::DURATION_CHARS) {
            return None;
        }
        match value.parse::<HumanDuration>() {
            Ok(d) => Some(d.0),
            Err(e) => {
                self.push(field, value, e.reason);
                None
            }
        }
    }
}

/// Compiles and checks a spec; the error lists every invalid field.
pub fn compile(spec: &HandlePolicySpec) -> Result<Policy, InvalidSpec> {
    let mut errs = Errors(Vec::new());
    let interval = errs
        .duration("spec.interval", &spec.interval)
        .unwrap_or(MIN_INTERVAL);
    if interval < MIN_INTERVAL {
        errs.push("spec.interval", &spec.interval, "must be at least 30s");
    }

    if spec.shares.is_empty() {
        errs.push("spec.shares", "[]", "give at least one share");
    }
    errs.items("spec.shares", &spec.shares, bounds::SHARES);
    let mut shares = Vec::with_capacity(spec.shares.len());
    for (i, s) in spec.shares.iter().enumerate() {
        let field = |f: &str| format!("spec.shares[{i}].{f}");
        errs.chars(&field("endpoint"), &s.endpoint, bounds::ENDPOINT_CHARS);
        let credentials = share_credentials(&mut errs, &field, s);
        errs.items(&field("paths"), &s.paths, bounds::PATHS);
        let scheme_ok = s.endpoint.starts_with("https://") || s.endpoint.starts_with("http://");
        if !scheme_ok || s.endpoint.contains(['?', '#', ' ']) {
            errs.push(field("endpoint"), &s.endpoint, "not an endpoint URL such as https://ACCOUNT.file.core.windows.net or http://HOST:PORT/ACCOUNT");
        }
        if let Err(reason) = crate::protocol::validate_share_name(&s.share) {
            errs.push(field("share"), &s.share, reason);
        }
        if shares.iter().any(|o: &ShareScope| {
            o.endpoint == s.endpoint.trim_end_matches('/') && o.share == s.share
        }) {
            errs.push(
                field("share"),
                &s.share,
                "this endpoint and share appear twice",
            );
        }
        let mut roots: Vec<String> = Vec::new();
        for (j, p) in s.paths.iter().enumerate() {
            if !errs.chars(&field(&format!("paths[{j}]")), p, bounds::PATH_CHARS) {
                continue;
            }
            match normalize_path(p) {
                Ok(p) => roots.push(p),
                Err(reason) => errs.push(field(&format!("paths[{j}]")), p, reason),
            }
        }
        if roots.is_empty() {
            roots.push(String::new());
        }
        roots.sort();
        roots.dedup();
        let outer: Vec<String> = roots
            .iter()
            .filter(|r| !roots.iter().any(|o| o != *r && is_within(r, o)))
            .cloned()
            .collect();
        shares.push(ShareScope {
            endpoint: s.endpoint.trim_end_matches('/').to_owned(),
            share: s.share.clone(),
            credentials,
            roots: outer,
        });
    }

    let mut rules = Rules::default();
    for (list, name, out) in [
        (&spec.match_.include, "include", &mut rules.include),
        (&spec.match_.exclude, "exclude", &mut rules.exclude),
    ] {
        errs.items(&format!("spec.match.{name}"), list, bounds::PATTERNS);
        for (i, g) in list.iter().enumerate() {
            if !errs.chars(&format!("spec.match.{name}[{i}]"), g, bounds::PATH_CHARS) {
                continue;
            }
            match g.parse() {
                Ok(glob) => out.push(glob),
                Err(e) => errs.push(format!("spec.match.{name}[{i}]"), g, e.reason),
            }
        }
    }
    let r = &spec.rules;
    if r.stale.is_none() && r.orphaned.is_none() && r.rename_guard.is_none() {
        errs.push(
            "spec.rules",
            "{}",
            "give at least one rule: stale, orphaned or renameGuard",
        );
    }
    if let Some(stale) = &r.stale {
        rules.stale = errs.duration("spec.rules.stale.openLongerThan", &stale.open_longer_than);
    }
    if let Some(orphaned) = &r.orphaned {
        rules.orphaned = errs.duration("spec.rules.orphaned.gracePeriod", &orphaned.grace_period);
    }
    if let Some(guard) = &r.rename_guard {
        if guard.paths.is_empty() {
            errs.push(
                "spec.rules.renameGuard.paths",
                "[]",
                "give at least one path",
            );
        }
        errs.items("spec.rules.renameGuard.paths", &guard.paths, bounds::PATHS);
        for (i, p) in guard.paths.iter().enumerate() {
            let field = format!("spec.rules.renameGuard.paths[{i}]");
            if !errs.chars(&field, p, bounds::PATH_CHARS) {
                continue;
            }
            match normalize_path(p) {
                Ok(n) if n.is_empty() => errs.push(
                    field,
                    p,
                    "the share root cannot be renamed; name a directory or file",
                ),
                Ok(n) => rules.rename_guard.push(n),
                Err(reason) => errs.push(field, p, reason),
            }
        }
    }
    if !r.access_rights.is_empty() {
        rules.access = Some(
            r.access_rights
                .iter()
                .fold(AccessRights::NONE, |acc, right| {
                    acc.union(match right {
                        AccessRight::Read => AccessRights::READ,
                        AccessRight::Write => AccessRights::WRITE,
                        AccessRight::Delete => AccessRights::DELETE,
                    })
                }),
        );
    }
    let protect = &spec.protect;
    errs.items(
        "spec.protect.clientCIDRs",
        &protect.client_cidrs,
        bounds::PATTERNS,
    );
    errs.items(
        "spec.protect.clientNames",
        &protect.client_names,
        bounds::PATTERNS,
    );
    for (i, c) in protect.client_cidrs.iter().enumerate() {
        let field = format!("spec.protect.clientCIDRs[{i}]");
        if !errs.chars(&field, c, bounds::CIDR_CHARS) {
            continue;
        }
        match c.parse::<IpNet>() {
            Ok(net) => rules.protect_cidrs.push(net),
            Err(_) => errs.push(field, c, "not a CIDR such as 10.1.0.0/16 or fd00::/8"),
        }
    }
    for (i, n) in protect.client_names.iter().enumerate() {
        if !errs.chars(
            &format!("spec.protect.clientNames[{i}]"),
            n,
            bounds::NAME_CHARS,
        ) {
            continue;
        }
        match n.parse() {
            Ok(g) => rules.protect_names.push(g),
            Err(e) => errs.push(format!("spec.protect.clientNames[{i}]"), n, e.reason),
        }
    }

    let l = &spec.limits;
    if !(1..=bounds::MAX_CLOSES).contains(&l.max_closes_per_sweep) {
        errs.push(
            "spec.limits.maxClosesPerSweep",
            l.max_closes_per_sweep.to_string(),
            format!("must be from 1 to {}", bounds::MAX_CLOSES),
        );
    }
    if !(1..=100).contains(&l.safety_valve_percent) {
        errs.push(
            "spec.limits.safetyValvePercent",
            l.safety_valve_percent.to_string(),
            "must be from 1 to 100",
        );
    }
    let limits = Limits {
        max_closes: u64::try_from(l.max_closes_per_sweep).unwrap_or(0),
        safety_valve_percent: u8::try_from(l.safety_valve_percent.clamp(1, 100)).unwrap_or(100),
    };

    if !errs.0.is_empty() {
        return Err(InvalidSpec(errs.0));
    }
    Ok(Policy {
        mode: spec.mode,
        interval,
        shares,
        rules,
        limits,
    })
}
