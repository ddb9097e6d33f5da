//! A share's credential choice: a credentials Secret or an Entra ID identity, exactly one,
//! checked by `compile` as the CRD's CEL rules check it in a cluster (a policy read from a
//! file meets only `compile`).

mod common;

use common::*;
use share_hygiene::api::{
    HandlePolicySpec, IdentityKind, IdentitySpec, RulesSpec, SecretRef, ShareSpec, parse_manifest,
};
use share_hygiene::policy::{ShareCredentials, compile};

/// A change to a share, the field the error names, and a word of its reason.
type Case = (Box<dyn Fn(&mut ShareSpec)>, &'static str, &'static str);

const GUID: &str = "11111111-2222-3333-4444-555555555555";

fn spec_with_share(edit: impl FnOnce(&mut ShareSpec)) -> HandlePolicySpec {
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    edit(&mut spec.shares[0]);
    spec
}

fn identity(
    kind: IdentityKind,
    client_id: Option<&str>,
    secret: Option<&str>,
) -> Option<IdentitySpec> {
    Some(IdentitySpec {
        kind,
        client_id: client_id.map(str::to_owned),
        secret_ref: secret.map(|name| SecretRef { name: name.into() }),
    })
}

#[test]
fn each_choice_compiles_to_its_credential_source() {
    for (id, want) in [
        (None, ShareCredentials::Secret("creds".into())),
        (
            identity(IdentityKind::Workload, None, None),
            ShareCredentials::Workload { client_id: None },
        ),
        (
            identity(IdentityKind::Managed, Some(GUID), None),
            ShareCredentials::Managed {
                client_id: Some(GUID.into()),
            },
        ),
        (
            identity(IdentityKind::ServicePrincipal, None, Some("sp")),
            ShareCredentials::ServicePrincipal {
                secret: "sp".into(),
            },
        ),
    ] {
        let spec = spec_with_share(|s| {
            if id.is_some() {
                s.credentials_secret_ref = None;
            }
            s.identity = id;
        });
        let policy = compile(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.shares[0].credentials, want);
    }
}

#[test]
fn exactly_one_valid_choice_or_an_error_naming_the_field() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|s| s.identity = identity(IdentityKind::Workload, None, None)),
            "spec.shares[0].identity",
            "not both",
        ),
        (
            Box::new(|s| s.credentials_secret_ref = None),
            "spec.shares[0].credentialsSecretRef",
            "or identity",
        ),
        (
            Box::new(|s| {
                s.credentials_secret_ref = None;
                s.identity = identity(IdentityKind::ServicePrincipal, None, None);
            }),
            "spec.shares[0].identity.secretRef",
            "needs secretRef",
        ),
        (
            Box::new(|s| {
                s.credentials_secret_ref = None;
                s.identity = identity(IdentityKind::Managed, None, Some("sp"));
            }),
            "spec.shares[0].identity.secretRef",
            "ServicePrincipal only",
        ),
        (
            Box::new(|s| {
                s.credentials_secret_ref = None;
                s.identity = identity(IdentityKind::ServicePrincipal, Some(GUID), Some("sp"));
            }),
            "spec.shares[0].identity.clientId",
            "in its Secret",
        ),
        (
            Box::new(|s| {
                s.credentials_secret_ref = None;
                s.identity = identity(IdentityKind::Workload, Some("my-identity"), None);
            }),
            "spec.shares[0].identity.clientId",
            "GUID",
        ),
    ];
    for (edit, field, reason) in cases {
        let spec = spec_with_share(edit);
        let err = compile(&spec).expect_err(field);
        assert!(
            err.0
                .iter()
                .any(|e| e.field == field && e.reason.contains(reason)),
            "{field}: {err}"
        );
    }
}

#[test]
fn the_keyless_example_compiles_to_workload_identity() {
    let text = include_str!("../deploy/examples/policy-workload-identity.yaml");
    let hp = parse_manifest(text, "policy-workload-identity.yaml").unwrap();
    let policy = compile(&hp.spec).unwrap();
    assert_eq!(
        policy.shares[0].credentials,
        ShareCredentials::Workload { client_id: None }
    );
    // A misspelled identity field is an error, never ignored.
    let typo = text.replace("type: Workload", "type: Workload\n        tenant: contoso");
    let err = parse_manifest(&typo, "typo.yaml").unwrap_err().to_string();
    assert!(err.contains("tenant"), "{err}");
}

#[test]
fn a_service_principals_secret_is_watched_like_a_credentials_secret() {
    let keyed = spec_with_share(|_| {});
    assert_eq!(
        keyed.shares[0].secret_names().collect::<Vec<_>>(),
        ["creds"]
    );
    let sp = spec_with_share(|s| {
        s.credentials_secret_ref = None;
        s.identity = identity(IdentityKind::ServicePrincipal, None, Some("sp-secret"));
    });
    assert_eq!(
        sp.shares[0].secret_names().collect::<Vec<_>>(),
        ["sp-secret"]
    );
    let workload = spec_with_share(|s| {
        s.credentials_secret_ref = None;
        s.identity = identity(IdentityKind::Workload, None, None);
    });
    assert_eq!(workload.shares[0].secret_names().count(), 0);
}
