//! Credential flags shared by commands that talk to a share, and building a client from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use share_hygiene::auth::{Credential, SasToken, credential_from_keys};
use share_hygiene::document::from_yaml;
use share_hygiene::handles::client::{ClientOptions, HandleClient, ShareUrl};

/// How to authenticate: flags, then the environment variables `az` uses, then a file.
#[derive(Args, Debug, Clone, Default)]
pub struct CredentialArgs {
    /// The storage account name (defaults to the one in the URL).
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT")]
    pub account_name: Option<String>,
    /// The account key (base64).
    #[arg(long, env = "AZURE_STORAGE_KEY", hide_env_values = true)]
    pub account_key: Option<String>,
    /// A SAS token (the query string).
    #[arg(long, env = "AZURE_STORAGE_SAS_TOKEN", hide_env_values = true)]
    pub sas_token: Option<String>,
    /// A storage connection string.
    #[arg(long, env = "AZURE_STORAGE_CONNECTION_STRING", hide_env_values = true)]
    pub connection_string: Option<String>,
    /// A YAML or JSON file with the keys of a credentials Secret: accountName + accountKey,
    /// sasToken, or connectionString.
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// A file holding an OAuth bearer token (re-read when it changes), as workload identity
    /// projects it.
    #[arg(long)]
    pub bearer_token_file: Option<PathBuf>,
}

impl CredentialArgs {
    /// The credential these flags give for an endpoint of `account`.
    pub fn credential(&self, url_sas: Option<&str>, account: &str) -> Result<Credential> {
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
            data.insert("accountKey".to_owned(), key.clone());
        } else if let Some(sas) = &self.sas_token {
            data.insert("sasToken".to_owned(), sas.clone());
        } else if let Some(cs) = &self.connection_string {
            data.insert("connectionString".to_owned(), cs.clone());
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
                "no credential: give --account-key, --sas-token, --connection-string, --credentials-file or --bearer-token-file, or set AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING"
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
    let credential = creds.credential(share_url.sas.as_deref(), share_url.endpoint.account())?;
    let client = HandleClient::new(share_url.endpoint.clone(), credential, options)?;
    Ok((client, share_url))
}
