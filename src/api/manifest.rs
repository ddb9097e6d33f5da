//! A HandlePolicy manifest as a file holds it (`share-hygiene sweep -f`), read as strictly as
//! a cluster's strict field validation reads it: an unknown or misspelled field anywhere, a
//! wrong `apiVersion` or `kind`, a duplicate key or a second document is an error naming the
//! field, never a field silently dropped.
//!
//! The status of an exported object (`kubectl get hpol NAME -o yaml`) and the metadata the API
//! server fills in are accepted and not read: the sweep runs the spec.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

use super::{GROUP, HandlePolicy, HandlePolicySpec, VERSION};
use crate::document::{DocumentError, from_yaml};

/// The kind a manifest must have.
const KIND: &str = "HandlePolicy";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Manifest {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    metadata: Metadata,
    spec: HandlePolicySpec,
    /// The status of an exported object: accepted, not read (the sweep reports its own).
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
}

/// `ObjectMeta`'s fields, strictly: k8s-openapi's own type ignores unknown ones.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    // Fields the API server fills in, as an exported object carries them; not read.
    #[serde(default, rename = "generateName")]
    _generate_name: Option<IgnoredAny>,
    #[serde(default, rename = "uid")]
    _uid: Option<IgnoredAny>,
    #[serde(default, rename = "resourceVersion")]
    _resource_version: Option<IgnoredAny>,
    #[serde(default, rename = "generation")]
    _generation: Option<IgnoredAny>,
    #[serde(default, rename = "creationTimestamp")]
    _creation_timestamp: Option<IgnoredAny>,
    #[serde(default, rename = "deletionTimestamp")]
    _deletion_timestamp: Option<IgnoredAny>,
    #[serde(default, rename = "deletionGracePeriodSeconds")]
    _deletion_grace_period_seconds: Option<IgnoredAny>,
    #[serde(default, rename = "finalizers")]
    _finalizers: Option<IgnoredAny>,
    #[serde(default, rename = "ownerReferences")]
    _owner_references: Option<IgnoredAny>,
    #[serde(default, rename = "managedFields")]
    _managed_fields: Option<IgnoredAny>,
    #[serde(default, rename = "selfLink")]
    _self_link: Option<IgnoredAny>,
}

/// Parses a HandlePolicy manifest from `text`; `document` names it in errors (a file name).
pub fn parse_manifest(text: &str, document: &str) -> Result<HandlePolicy, DocumentError> {
    let m: Manifest = from_yaml(text, document)?;
    let want_version = format!("{GROUP}/{VERSION}");
    for (field, got, want) in [
        ("apiVersion", &m.api_version, want_version.as_str()),
        ("kind", &m.kind, KIND),
    ] {
        if got.value != want {
            let at = got.referenced;
            return Err(DocumentError::new(
                document,
                field,
                format!(
                    "{:?} is not a HandlePolicy's; expected {field}: {want}",
                    got.value
                ),
            )
            .at(at.line(), at.column()));
        }
    }
    let metadata = ObjectMeta {
        name: m.metadata.name,
        namespace: m.metadata.namespace,
        labels: m.metadata.labels,
        annotations: m.metadata.annotations,
        ..ObjectMeta::default()
    };
    let mut policy = HandlePolicy::new("", m.spec);
    policy.metadata = metadata;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: sharehygiene.io/v1alpha1
kind: HandlePolicy
metadata:
  name: team-files
  namespace: storage
spec:
  mode: Enforce
  shares:
    - endpoint: https://teamfiles.file.core.windows.net
      share: projects
      credentialsSecretRef: { name: teamfiles-key }
  rules:
    stale:
      openLongerThan: 24h
  protect:
    clientCIDRs: [10.50.0.0/24]
    clientNames: [\"backup-*\"]
";

    fn refused(from: &str, to: &str) -> DocumentError {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "{from:?} is not in the manifest");
        parse_manifest(&text, "policy.yaml").expect_err(&format!("{to:?} must be refused"))
    }

    #[test]
    fn reads_a_good_manifest() {
        let hp = parse_manifest(GOOD, "policy.yaml").unwrap();
        assert_eq!(hp.metadata.name.as_deref(), Some("team-files"));
        assert_eq!(hp.metadata.namespace.as_deref(), Some("storage"));
        assert_eq!(hp.spec.protect.client_cidrs, ["10.50.0.0/24"]);
    }

    #[test]
    fn refuses_misspelled_protections_naming_the_path_and_the_allowed_names() {
        let err = refused("clientCIDRs:", "clientCidrs:");
        assert_eq!(err.path, "spec.protect.clientCidrs");
        assert_eq!(err.position, Some((16, 5)));
        assert_eq!(
            err.to_string(),
            "policy.yaml: spec.protect.clientCidrs (line 16, column 5): unknown field `clientCidrs`, expected one of clientCIDRs, clientNames"
        );
        let err = refused("clientNames:", "clientname:");
        assert_eq!(err.path, "spec.protect.clientname");
        assert!(
            err.reason
                .contains("expected one of clientCIDRs, clientNames"),
            "{err}"
        );
    }

    #[test]
    fn refuses_unknown_fields_at_every_level() {
        for (from, to, path, allowed) in [
            (
                "openLongerThan:",
                "olderThan:",
                "spec.rules.stale.olderThan",
                "expected one of openLongerThan",
            ),
            (
                "  mode: Enforce",
                "  mode: Enforce\n  dryRun: true",
                "spec.dryRun",
                "expected one of mode, interval, shares, match, rules, protect, limits",
            ),
            (
                "kind: HandlePolicy",
                "kind: HandlePolicy\nselector: {}",
                "selector",
                "expected one of apiVersion, kind, metadata, spec, status",
            ),
            (
                "  namespace: storage",
                "  namespcae: storage",
                "metadata.namespcae",
                "expected one of name, namespace, labels",
            ),
            (
                "      share: projects",
                "      share: projects\n      path: [a]",
                "spec.shares[0].path",
                "expected one of endpoint, share, credentialsSecretRef, identity, paths",
            ),
            (
                "{ name: teamfiles-key }",
                "{ name: teamfiles-key, key: k }",
                "spec.shares[0].credentialsSecretRef.key",
                "expected one of name",
            ),
        ] {
            let err = refused(from, to);
            assert_eq!(err.path, path, "{err}");
            assert!(err.reason.contains(allowed), "{err}");
            assert!(err.position.is_some(), "{err}");
        }
    }

    #[test]
    fn refuses_another_kind_or_version() {
        let err = refused("kind: HandlePolicy", "kind: Deployment");
        assert_eq!(
            err.to_string(),
            "policy.yaml: kind (line 2, column 7): \"Deployment\" is not a HandlePolicy's; expected kind: HandlePolicy"
        );
        let err = refused("sharehygiene.io/v1alpha1", "sharehygiene.io/v1");
        assert_eq!(err.path, "apiVersion");
        assert!(
            err.reason
                .contains("expected apiVersion: sharehygiene.io/v1alpha1"),
            "{err}"
        );
        let err = refused("apiVersion: sharehygiene.io/v1alpha1\n", "");
        assert!(err.reason.contains("missing field `apiVersion`"), "{err}");
    }

    #[test]
    fn accepts_an_exported_object() {
        let exported = GOOD.replacen(
            "  namespace: storage\n",
            "  namespace: storage\n  uid: 0b5c\n  generation: 3\n  resourceVersion: \"42\"\n  managedFields: [{manager: kubectl}]\n",
            1,
        ) + "status:\n  observedGeneration: 3\n  someFutureField: 1\n";
        let hp = parse_manifest(&exported, "policy.yaml").unwrap();
        assert_eq!(hp.metadata.name.as_deref(), Some("team-files"));
        assert!(hp.status.is_none(), "the sweep does not read status");
    }

    #[test]
    fn refuses_duplicate_keys_and_second_documents() {
        let err = refused("  mode: Enforce", "  mode: Enforce\n  mode: DryRun");
        assert_eq!(err.path, "spec");
        assert!(err.reason.contains("duplicate"), "{err}");
        let text = format!("{GOOD}---\n{GOOD}");
        let err = parse_manifest(&text, "policy.yaml").unwrap_err();
        assert!(err.reason.contains("multiple"), "{err}");
    }
}
