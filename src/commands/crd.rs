//! `share-hygiene crd`: the CustomResourceDefinition, as committed in crds/handlepolicy.yaml.

use anyhow::Result;

use super::ExitCode;

/// Prints the CRD as YAML on stdout.
pub fn run() -> Result<ExitCode> {
    print!("{}", share_hygiene::api::crd_yaml()?);
    Ok(ExitCode::Ok)
}
