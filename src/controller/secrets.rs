//! Credentials from the Secret a share names, read at every sweep so that a rotated key takes
//! effect at the next one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::auth::{Credential, credential_from_keys};
use crate::handles::Error as HandleError;

/// Reads `name` in `namespace` and turns its keys into a credential for an endpoint of
/// `account`. A missing or malformed Secret is a credential error naming it (never its values).
pub async fn credential(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    account: &str,
) -> Result<Credential, HandleError> {
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
    credential_from_keys(&keys, account)
        .map(|(c, _)| c)
        .map_err(|e| HandleError::Credential {
            message: format!("Secret {namespace}/{name}: {e}"),
        })
}
