//! A share's credential: from the Secret it names, read at every sweep so that a rotated key
//! takes effect at the next one, or an Entra ID identity (whose tokens the client caches).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::auth::entra::{self, Identity};
use crate::auth::{Credential, CredentialError, credential_from_keys};
use crate::handles::Error as HandleError;
use crate::policy::ShareCredentials;

/// The credential of a share on an endpoint of `account`: its Secret's keys, or its identity.
/// A missing or malformed Secret, or an identity the environment cannot serve, is a
/// credential error naming it (never a secret's values).
pub async fn credential(
    client: &kube::Client,
    namespace: &str,
    credentials: &ShareCredentials,
    account: &str,
) -> Result<Credential, HandleError> {
    let keys = match credentials.secret() {
        Some(name) => Some((name, secret_keys(client, namespace, name).await?)),
        None => None,
    };
    let env = |name: &str| std::env::var(name).ok();
    let resolved = match (credentials, &keys) {
        (ShareCredentials::Secret(_), Some((_, keys))) => {
            credential_from_keys(keys, account).map(|(c, _)| c)
        }
        (_, keys) => {
            share_identity(credentials, keys.as_ref().map(|(_, k)| k), env).map(Credential::Entra)
        }
    };
    resolved.map_err(|e| HandleError::Credential {
        message: match &keys {
            Some((name, _)) => format!("Secret {namespace}/{name}: {e}"),
            None => e.to_string(),
        },
    })
}

/// The Entra ID identity of a share that names one: workload identity from the environment
/// the AKS webhook injects (`env` looks it up), the managed identity, or a service principal
/// from `keys` (its Secret's).
pub fn share_identity(
    credentials: &ShareCredentials,
    keys: Option<&BTreeMap<String, String>>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Identity, CredentialError> {
    match credentials {
        ShareCredentials::Workload { client_id } => {
            Identity::workload_from_env(env, client_id.as_deref())
        }
        ShareCredentials::Managed { client_id } => Identity::managed(client_id.as_deref()),
        ShareCredentials::ServicePrincipal { .. } => {
            let empty = BTreeMap::new();
            let authority = env(entra::env::AUTHORITY_HOST);
            Identity::service_principal_from_keys(keys.unwrap_or(&empty), authority.as_deref())
        }
        ShareCredentials::Secret(_) => Err(CredentialError::Invalid(
            "the share names a credentials Secret, not an identity".into(),
        )),
    }
}

/// A Secret's keys, as text.
async fn secret_keys(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, HandleError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(HandleError::Credential {
                message: format!("Secret {namespace}/{name} not found"),
            });
        }
        Err(e) => {
            return Err(HandleError::Credential {
                message: format!("reading Secret {namespace}/{name}: {e}"),
            });
        }
    };
    let mut keys = BTreeMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        let value = String::from_utf8(v.0).map_err(|_| HandleError::Credential {
            message: format!("Secret {namespace}/{name}: key {k:?} is not UTF-8"),
        })?;
        keys.insert(k, value);
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        keys.insert(k, v);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_of_shares() {
        let env = |name: &str| {
            [
                (entra::env::CLIENT_ID, "c-env"),
                (entra::env::TENANT_ID, "t-env"),
                (entra::env::FEDERATED_TOKEN_FILE, "/tokens/t"),
            ]
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
        };
        let id =
            share_identity(&ShareCredentials::Workload { client_id: None }, None, env).unwrap();
        assert!(matches!(id, Identity::Workload { ref client_id, .. } if client_id == "c-env"));
        let id = share_identity(
            &ShareCredentials::Managed {
                client_id: Some("c-1".into()),
            },
            None,
            env,
        )
        .unwrap();
        assert!(
            matches!(id, Identity::Managed { ref endpoint, .. } if endpoint == entra::IMDS_TOKEN_ENDPOINT)
        );
        let sp = ShareCredentials::ServicePrincipal {
            secret: "sp".into(),
        };
        let err = share_identity(&sp, Some(&BTreeMap::new()), env).unwrap_err();
        assert!(err.to_string().contains("tenantId"), "{err}");
        let err = share_identity(
            &ShareCredentials::Workload { client_id: None },
            None,
            |_| None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("AZURE_CLIENT_ID"), "{err}");
    }
}
