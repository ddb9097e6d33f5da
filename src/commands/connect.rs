//! Credential flags shared by commands that talk to a share, and building a client from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use share_hygiene::auth::entra::{self, Identity};
use share_hygiene::auth::{Credential, SasToken, credential_from_keys};
use share_hygiene::document::from_yaml;
use share_hygiene::handles::client::{ClientOptions, HandleClient, ShareUrl};

/// A secret command-line value: boxed at once, so it never reaches `Debug` or an error.
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(value.into())
}

/// How to authenticate: flags, then the environment variables `az` uses, then a file.
/// `Debug` shows the secrets as `[REDACTED]`.
#[derive(Args, Debug, Clone, Default)]
pub struct CredentialArgs {
    /// The storage account name (defaults to the one in the URL).
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT")]
    pub account_name: Option<String>,
    /// The account key (base64).
    #[arg(long, env = "AZURE_STORAGE_KEY", hide_env_values = true, value_parser = secret)]
    pub account_key: Option<SecretString>,
    /// A SAS token (the query string).
    #[arg(long, env = "AZURE_STORAGE_SAS_TOKEN", hide_env_values = true, value_parser = secret)]
    pub sas_token: Option<SecretString>,
    /// A storage connection string.
    #[arg(long, env = "AZURE_STORAGE_CONNECTION_STRING", hide_env_values = true, value_parser = secret)]
    pub connection_string: Option<SecretString>,
    /// A YAML or JSON file with the keys of a credentials Secret: accountName + accountKey,
    /// sasToken, or connectionString.
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// A file holding an OAuth bearer token (re-read when it changes), as workload identity
    /// projects it.
    #[arg(long)]
    pub bearer_token_file: Option<PathBuf>,
    /// `login`: authenticate with an Entra ID identity (no key), as `az storage --auth-mode
    /// login`; `key`: with the key, SAS or connection string given.
    #[arg(long, env = "AZURE_STORAGE_AUTH_MODE", value_enum, default_value_t = AuthMode::Key)]
    pub auth_mode: AuthMode,
    /// Which identity `--auth-mode login` uses (implies it). Default: workload identity when
    /// AZURE_FEDERATED_TOKEN_FILE is set, a service principal when AZURE_CLIENT_SECRET is,
    /// else the managed identity.
    #[arg(long, value_enum)]
    pub identity: Option<IdentityKind>,
    /// The identity's client id: a user-assigned managed identity, the application of a
    /// service principal, or another identity federated with the service account.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The tenant of a workload identity or service principal.
    #[arg(long, env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// A service principal's client secret.
    #[arg(long, env = "AZURE_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    pub client_secret: Option<SecretString>,
    /// A PEM file with a service principal's certificate and RSA private key (instead of a
    /// client secret).
    #[arg(long, env = "AZURE_CLIENT_CERTIFICATE_PATH")]
    pub client_certificate: Option<PathBuf>,
}

/// How to authenticate, as `az storage --auth-mode` names it.
#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// A key, SAS, connection string or bearer token file.
    #[default]
    Key,
    /// An Entra ID identity.
    Login,
}

/// Which Entra ID identity to use.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// AKS workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE).
    Workload,
    /// The VM's or node pool's managed identity, through the instance metadata service.
    Managed,
    /// A service principal with a client secret or certificate (--client-id, --tenant-id,
    /// --client-secret or --client-certificate).
    ServicePrincipal,
}

impl CredentialArgs {
    /// The Entra ID identity `--auth-mode login` / `--identity` ask for; `env` looks up the
    /// variables the workload identity webhook sets.
    fn identity(&self, env: impl Fn(&str) -> Option<String>) -> Result<Identity> {
        let kind = self.identity.unwrap_or_else(|| {
            if env(entra::env::FEDERATED_TOKEN_FILE).is_some() {
                IdentityKind::Workload
            } else if self.client_secret.is_some() || self.client_certificate.is_some() {
                IdentityKind::ServicePrincipal
            } else {
                IdentityKind::Managed
            }
        });
        let client_id = self.client_id.as_deref();
        Ok(match kind {
            IdentityKind::Workload => {
                let lookup = |name: &str| match name {
                    entra::env::TENANT_ID => self.tenant_id.clone().or_else(|| env(name)),
                    _ => env(name),
                };
                Identity::workload_from_env(lookup, client_id).context("--identity workload")?
            }
            IdentityKind::Managed => Identity::managed(client_id).context("--identity managed")?,
            IdentityKind::ServicePrincipal => {
                let mut keys = BTreeMap::new();
                for (key, value) in [
                    ("clientId", self.client_id.clone()),
                    ("tenantId", self.tenant_id.clone()),
                    (
                        "clientSecret",
                        self.client_secret
                            .as_ref()
                            .map(|s| s.expose_secret().to_owned()),
                    ),
                ] {
                    if let Some(v) = value {
                        keys.insert(key.to_owned(), v);
                    }
                }
                if let Some(path) = &self.client_certificate {
                    let pem =
                        SecretString::from(std::fs::read_to_string(path).with_context(|| {
                            format!("reading the client certificate {}", path.display())
                        })?);
                    keys.insert(
                        "clientCertificate".to_owned(),
                        pem.expose_secret().to_owned(),
                    );
                }
                let authority = env(entra::env::AUTHORITY_HOST);
                Identity::service_principal_from_keys(&keys, authority.as_deref())
                    .context("--identity service-principal (--client-id / AZURE_CLIENT_ID, --tenant-id / AZURE_TENANT_ID, --client-secret / AZURE_CLIENT_SECRET or --client-certificate / AZURE_CLIENT_CERTIFICATE_PATH)")?
            }
        })
    }

    /// The credential these flags give for an endpoint of `account`.
    pub fn credential(&self, url_sas: Option<&str>, account: &str) -> Result<Credential> {
        if self.auth_mode == AuthMode::Login || self.identity.is_some() {
            let keyed = self.account_key.is_some()
                || self.sas_token.is_some()
                || self.connection_string.is_some()
                || self.credentials_file.is_some()
                || self.bearer_token_file.is_some();
            if keyed {
                bail!(
                    "--auth-mode login (or --identity) authenticates with an Entra ID identity: drop --account-key, --sas-token, --connection-string, --credentials-file and --bearer-token-file (and their environment variables)"
                );
            }
            let identity = self.identity(|name| std::env::var(name).ok())?;
            return Ok(Credential::Entra(identity));
        }
        if let Some(name) = &self.account_name
            && name != account
        {
            bail!(
                "--account-name / AZURE_STORAGE_ACCOUNT is {name:?} but the URL is account {account:?}"
            );
        }
        let given = [
            self.account_key.is_some(),
            self.sas_token.is_some(),
            self.connection_string.is_some(),
            self.credentials_file.is_some(),
            self.bearer_token_file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            bail!(
                "give one credential: --account-key, --sas-token, --connection-string, --credentials-file or --bearer-token-file (or their environment variables)"
            );
        }
        let mut data = BTreeMap::new();
        if let Some(key) = &self.account_key {
            data.insert("accountKey".to_owned(), key.expose_secret().to_owned());
        } else if let Some(sas) = &self.sas_token {
            data.insert("sasToken".to_owned(), sas.expose_secret().to_owned());
        } else if let Some(cs) = &self.connection_string {
            data.insert("connectionString".to_owned(), cs.expose_secret().to_owned());
        } else if let Some(path) = &self.credentials_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the credentials file {}", path.display()))?;
            data = from_yaml(&text, &path.display().to_string())
                .context("the credentials file is not a YAML/JSON map of strings")?;
            let (credential, _) = credential_from_keys(&data, account)
                .with_context(|| format!("the credentials file {}", path.display()))?;
            return Ok(credential);
        } else if let Some(path) = &self.bearer_token_file {
            return Ok(Credential::BearerTokenFile(path.clone()));
        } else if let Some(sas) = url_sas {
            return Ok(Credential::Sas(SasToken::new(sas)?));
        } else {
            bail!(
                "no credential: give --auth-mode login (an Entra ID identity), --account-key, --sas-token, --connection-string, --credentials-file or --bearer-token-file, or set AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING"
            );
        }
        let (credential, _) = credential_from_keys(&data, account).context("credentials")?;
        Ok(credential)
    }
}

/// A client for the share at `url`, and the parsed URL.
pub fn client_for(
    url: &str,
    creds: &CredentialArgs,
    options: ClientOptions,
) -> Result<(HandleClient, ShareUrl)> {
    let share_url = ShareUrl::parse(url).context("--share-url")?;
    let url_sas = share_url.sas.as_ref().map(ExposeSecret::expose_secret);
    let credential = creds.credential(url_sas, share_url.endpoint.account())?;
    let client = HandleClient::new(share_url.endpoint.clone(), credential, options)?;
    Ok((client, share_url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        creds: CredentialArgs,
    }

    const KEY: &str = "c2VjcmV0LWFjY291bnQta2V5LWJ5dGVzLTEyMzQ1Njc4";
    const SIG: &str = "c2VjcmV0LXNhcy1zaWduYXR1cmU%3D";

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn debug_shows_no_key_sas_or_connection_string() {
        let sas = format!("sv=2026-10-06&sp=rl&sig={SIG}");
        let cs = format!("AccountName=acct;AccountKey={KEY}");
        for args in [
            ["--account-key", KEY],
            ["--sas-token", sas.as_str()],
            ["--connection-string", cs.as_str()],
        ] {
            let cli = parse(&args);
            let shown = format!("{cli:?} {:?}", cli.creds.clone());
            assert!(
                !shown.contains(&KEY[..12]) && !shown.contains(&SIG[..12]),
                "{shown}"
            );
            assert!(shown.contains("REDACTED"), "{shown}");
            let credential = cli.creds.credential(None, "acct").unwrap();
            let shown = format!("{credential:?}");
            assert!(
                !shown.contains(&KEY[..12]) && !shown.contains(&SIG[..12]),
                "{shown}"
            );
        }
    }

    #[test]
    fn login_picks_the_identity_from_flags_and_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let webhook: &[(&str, &str)] = &[
            ("AZURE_CLIENT_ID", "c-from-env"),
            ("AZURE_TENANT_ID", "t-from-env"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/t",
            ),
        ];
        let args = |a: &[&str]| {
            let mut all = vec!["--auth-mode", "login"];
            all.extend_from_slice(a);
            parse(&all).creds
        };
        let id = args(&[]).identity(env(webhook)).unwrap();
        assert!(
            matches!(id, Identity::Workload { ref client_id, ref tenant_id, .. } if client_id == "c-from-env" && tenant_id == "t-from-env"),
            "{id:?}"
        );
        let id = args(&["--client-id", "c2", "--tenant-id", "t2"])
            .identity(env(webhook))
            .unwrap();
        assert!(
            matches!(id, Identity::Workload { ref client_id, ref tenant_id, .. } if client_id == "c2" && tenant_id == "t2"),
            "{id:?}"
        );
        let id = args(&["--client-id", "c3"]).identity(env(&[])).unwrap();
        assert!(
            matches!(id, Identity::Managed { ref client_id, ref endpoint } if client_id.as_deref() == Some("c3") && endpoint == entra::IMDS_TOKEN_ENDPOINT),
            "{id:?}"
        );
        let sp = args(&[
            "--client-id",
            "c4",
            "--tenant-id",
            "t4",
            "--client-secret",
            "s3cr3t-v",
        ]);
        assert!(!format!("{sp:?}").contains("s3cr3t"));
        let id = sp.identity(env(&[])).unwrap();
        assert!(matches!(id, Identity::ServicePrincipal { .. }), "{id:?}");
        let err = parse(&["--identity", "service-principal", "--client-id", "c5"])
            .creds
            .identity(env(&[]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("\"tenantId\""), "{err:#}");
        let err = parse(&["--identity", "workload"])
            .creds
            .identity(env(&[]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("AZURE_CLIENT_ID"), "{err:#}");
        let err = args(&["--account-key", KEY])
            .credential(None, "acct")
            .unwrap_err();
        assert!(err.to_string().contains("drop --account-key"), "{err}");
    }

    #[test]
    fn a_malformed_credentials_file_is_located_not_quoted() {
        let path = std::env::temp_dir().join(format!("creds-{}.yaml", std::process::id()));
        std::fs::write(&path, format!("accountName: acct\naccountKey: [{KEY}\n")).unwrap();
        let cli = parse(&["--credentials-file", path.to_str().unwrap()]);
        let err = format!("{:#}", cli.creds.credential(None, "acct").unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains(&KEY[..12]), "{err}");
    }

    #[test]
    fn errors_from_a_bad_key_sas_or_connection_string_hold_no_part_of_it() {
        let bad_key = "c2VjcmV0LWFj!Y291bnQta2V5";
        let bad_sas = "sv=2026-10-06&sp=rl&signature=c2VjcmV0LXNhcy1zaWduYXR1cmU";
        let bad_cs = "AccountName=acct;c2VjcmV0LWFjY291bnQta2V5";
        for (args, secret) in [
            (["--account-key", bad_key], bad_key),
            (["--sas-token", bad_sas], "c2VjcmV0LXNhcy1zaWduYXR1cmU"),
            (["--connection-string", bad_cs], "c2VjcmV0LWFjY291bnQta2V5"),
        ] {
            let err = parse(&args).creds.credential(None, "acct").unwrap_err();
            let text = format!("{err:#} {err:?}");
            let chars: Vec<char> = secret.chars().collect();
            for piece in chars.windows(6) {
                let piece: String = piece.iter().collect();
                assert!(!text.contains(&piece), "{args:?}: {text} holds {piece:?}");
            }
        }
    }
}
