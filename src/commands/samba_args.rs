//! The command-line options of the Samba store, flattened into `handle-service`.

use std::path::PathBuf;
use std::time::Duration;

use share_hygiene::handles::samba::{Credentials, CredentialsError, SambaConfig};

/// Environment variable with the RPC user (`DOMAIN\user` or `user`), used when no
/// credentials file is given.
pub const USER_ENV: &str = "SHARE_HYGIENE_SAMBA_USER";
/// Environment variable with the RPC password. There is deliberately no flag for it:
/// arguments show in `ps`.
pub const PASSWORD_ENV: &str = "SHARE_HYGIENE_SAMBA_PASSWORD";

/// Options of `--backend samba`.
#[derive(Debug, Clone, clap::Args)]
pub struct SambaArgs {
    /// The Samba server's smb.conf (--backend samba); its disk shares are the shares served.
    #[arg(long, default_value = "/etc/samba/smb.conf")]
    pub smb_conf: PathBuf,
    /// File with the login for NetFileEnum/NetFileClose, in Samba's auth-file format
    /// (`username = ...`, `password = ...`, optional `domain = ...`); the user must be in
    /// BUILTIN\Administrators. Without it, SHARE_HYGIENE_SAMBA_USER and
    /// SHARE_HYGIENE_SAMBA_PASSWORD are read.
    #[arg(long, env = "SHARE_HYGIENE_SAMBA_CREDENTIALS_FILE")]
    pub samba_credentials_file: Option<PathBuf>,
    /// The address `net rpc` dials for NetFileEnum and NetFileClose (always port 445).
    #[arg(long, default_value = "127.0.0.1")]
    pub samba_rpc_host: String,
    /// NetFileClose calls in flight at once.
    #[arg(long, default_value_t = 4)]
    pub samba_close_parallelism: usize,
    /// Seconds one Force Close Handles call keeps starting NetFileClose calls before it
    /// answers with x-ms-marker (the rest follow in the next call). 0 starts one close per
    /// call.
    #[arg(long, default_value_t = 20)]
    pub samba_close_budget_secs: u64,
    /// Seconds one Samba tool run (smbstatus, net, testparm) may take.
    #[arg(long, default_value_t = 60)]
    pub samba_tool_timeout_secs: u64,
}

impl SambaArgs {
    /// The store configuration; `close_batch` is the service's `--close-batch`.
    pub fn config(&self, close_batch: usize) -> Result<SambaConfig, CredentialsError> {
        let credentials = match &self.samba_credentials_file {
            Some(path) => Credentials::from_file(path)?,
            None => Credentials::from_env(USER_ENV, PASSWORD_ENV)?,
        };
        let mut config = SambaConfig::new(&self.smb_conf, credentials);
        config.rpc_host = self.samba_rpc_host.clone();
        config.close_batch = close_batch.max(1);
        config.close_parallelism = self.samba_close_parallelism.max(1);
        config.close_time_budget = Duration::from_secs(self.samba_close_budget_secs);
        config.tool_timeout = Duration::from_secs(self.samba_tool_timeout_secs.max(1));
        Ok(config)
    }
}
