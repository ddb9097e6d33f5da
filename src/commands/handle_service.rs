//! `share-hygiene handle-service`: serve List Handles and Force Close Handles over a store.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::ExitCode;
use super::samba_args::SambaArgs;
use share_hygiene::auth::AccountKey;
use share_hygiene::duration::HumanDuration;
use share_hygiene::handles::memory::{DEFAULT_CLOSE_BATCH, MemoryStore, Seed};
use share_hygiene::handles::samba::SambaStore;
use share_hygiene::listener::{Limits, TlsFiles};
use share_hygiene::server::{
    Addressing, DEFAULT_MAX_REQUESTS_IN_FLIGHT, HandleServer, OAuthConfig, ServerConfig,
};

/// `handle-service` options.
#[derive(Args)]
pub struct HandleServiceArgs {
    /// YAML seed that loads the memory store (see docs/seed-format.md).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Address to listen on. Any address but loopback needs --tls-cert and --tls-key, or
    /// --allow-insecure-http.
    #[arg(long, default_value = "127.0.0.1:10004")]
    listen: SocketAddr,
    /// The storage account name the service poses as.
    #[arg(long, default_value = "devstoreaccount1")]
    account: String,
    /// Serve host-style (`http://ACCOUNT.example/SHARE/...`) for this host name instead of
    /// path-style (`http://HOST:PORT/ACCOUNT/SHARE/...`); repeat for more names. Requests naming
    /// any other host are refused. Its first label must be the account.
    #[arg(long = "host-name", value_name = "NAME")]
    host_names: Vec<String>,
    /// The account key (base64) clients sign with; required. Prefer the environment
    /// variable: arguments show in `ps`.
    #[arg(long, env = "SHARE_HYGIENE_ACCOUNT_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The most handles one Force Close Handles call closes before answering with x-ms-marker.
    #[arg(long, default_value_t = DEFAULT_CLOSE_BATCH)]
    close_batch: usize,
    /// Put the server's string-to-sign in authentication errors (for client authors; never in
    /// production).
    #[arg(long)]
    debug_auth: bool,
    /// The store behind the service: the in-memory table, or the Samba server of --smb-conf.
    #[arg(long, value_enum, default_value = "memory")]
    backend: Backend,
    #[command(flatten)]
    samba: SambaArgs,
    #[command(flatten)]
    listen_args: ListenArgs,
    #[command(flatten)]
    oauth: OAuthArgs,
}

/// Who may call with an OAuth bearer token (see docs/handle-service.md, "OAuth").
#[derive(Args)]
struct OAuthArgs {
    /// Accept bearer tokens issued by this issuer (for Entra ID,
    /// https://login.microsoftonline.com/TENANT/v2.0); its keys are read through
    /// ISSUER/.well-known/openid-configuration.
    #[arg(long, value_name = "URL", requires = "oauth_tenant")]
    oauth_issuer: Option<String>,
    /// The tenant id tokens must carry in `tid`.
    #[arg(long, value_name = "ID", requires = "oauth_issuer")]
    oauth_tenant: Option<String>,
    /// An accepted token audience; repeat for more. Default https://storage.azure.com (with or
    /// without the trailing slash); https://ACCOUNT.file.core.windows.net is always accepted.
    #[arg(long = "oauth-audience", value_name = "URL", requires = "oauth_issuer")]
    oauth_audiences: Vec<String>,
    /// A principal (object id or client id, or role:NAME for tokens whose roles claim holds
    /// NAME) that may list handles, like "Storage File Data Privileged Reader"; repeat for more.
    #[arg(long = "oauth-reader", value_name = "ID", requires = "oauth_issuer")]
    oauth_readers: Vec<String>,
    /// A principal (as for --oauth-reader) that may list and force-close handles, like
    /// "Storage File Data Privileged Contributor"; repeat for more.
    #[arg(
        long = "oauth-contributor",
        value_name = "ID",
        requires = "oauth_issuer"
    )]
    oauth_contributors: Vec<String>,
    /// Refuse Shared Key and SAS on the handle APIs (403 KeyBasedAuthenticationNotPermitted),
    /// as an account with key access disabled does; only bearer tokens are accepted.
    #[arg(long, requires = "oauth_issuer")]
    no_shared_key: bool,
}

impl OAuthArgs {
    /// Puts the options into `config`.
    fn apply(&self, config: &mut ServerConfig) -> Result<()> {
        config.allow_shared_key_access = !self.no_shared_key;
        let (Some(issuer), Some(tenant)) = (&self.oauth_issuer, &self.oauth_tenant) else {
            return Ok(());
        };
        anyhow::ensure!(
            !tenant.trim().is_empty(),
            "--oauth-tenant is empty; give the tenant id tokens carry in tid"
        );
        let mut oauth = OAuthConfig::new(issuer, tenant.trim()).context("--oauth-issuer")?;
        if !self.oauth_audiences.is_empty() {
            oauth.audiences = self.oauth_audiences.clone();
        }
        oauth.readers = self.oauth_readers.clone();
        oauth.contributors = self.oauth_contributors.clone();
        if oauth.readers.is_empty() && oauth.contributors.is_empty() {
            tracing::warn!(
                "--oauth-issuer without --oauth-reader or --oauth-contributor: every bearer token will be refused with AuthorizationPermissionMismatch"
            );
        }
        tracing::info!(
            issuer = %oauth.issuer,
            tenant = %oauth.tenant,
            readers = oauth.readers.len(),
            contributors = oauth.contributors.len(),
            shared_key = !self.no_shared_key,
            "accepting OAuth bearer tokens"
        );
        config.oauth = Some(oauth);
        Ok(())
    }
}

/// How the service's port is protected: TLS and connection limits (see
/// docs/handle-service.md, "Limits and TLS").
#[derive(Args)]
struct ListenArgs {
    /// PEM certificate chain to serve HTTPS with (with --tls-key); re-read when the file
    /// changes.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; re-read when the file changes.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback --listen address (for a port that only a network
    /// policy or a TLS-terminating proxy reaches); logged as a warning.
    #[arg(long)]
    allow_insecure_http: bool,
    /// The most time one request (head and body; with TLS, the handshake too) may take to
    /// arrive, from its first byte.
    #[arg(long, default_value_t = HumanDuration(Limits::default().request_read_timeout))]
    request_read_timeout: HumanDuration,
    /// The most time a kept-alive connection may wait for its next request.
    #[arg(long, default_value_t = HumanDuration(Limits::default().idle_timeout))]
    idle_timeout: HumanDuration,
    /// The most connections open at once; past it, new connections are closed at once.
    #[arg(long, default_value_t = NonZeroUsize::new(Limits::default().max_connections).expect("default is not zero"))]
    max_connections: NonZeroUsize,
    /// The most requests handled at once; past it, 503 ServerBusy with Retry-After.
    #[arg(long, default_value_t = NonZeroUsize::new(DEFAULT_MAX_REQUESTS_IN_FLIGHT).expect("default is not zero"))]
    max_requests_in_flight: NonZeroUsize,
}

impl ListenArgs {
    /// Puts the options into `config`.
    fn apply(&self, config: &mut ServerConfig) -> Result<()> {
        for (flag, value) in [
            ("--request-read-timeout", self.request_read_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            anyhow::ensure!(
                !value.0.is_zero(),
                "{flag} {value} would cut every connection at once; give a positive duration"
            );
        }
        config.limits.request_read_timeout = self.request_read_timeout.0;
        config.limits.idle_timeout = self.idle_timeout.0;
        config.limits.max_connections = self.max_connections.get();
        config.max_requests_in_flight = self.max_requests_in_flight.get();
        config.allow_insecure_http = self.allow_insecure_http;
        config.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        Ok(())
    }
}

/// Which store `handle-service` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The in-memory table (seeded by --seed, changed through the admin endpoint).
    Memory,
    /// The open handles of a Samba server on this host (see docs/samba.md).
    Samba,
}

/// Loads a seed file into a new memory store, ages measured from now.
pub fn load_seed(path: &Path, close_batch: usize) -> Result<MemoryStore> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the seed file {}", path.display()))?;
    let seed = Seed::from_yaml(&text, &path.display().to_string())?;
    MemoryStore::from_seed(&seed, jiff::Timestamp::now(), close_batch)
        .with_context(|| format!("in {}", path.display()))
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(args: HandleServiceArgs) -> Result<ExitCode> {
    let mut config = ServerConfig::new(&args.account, account_key(args.key.as_deref())?);
    config.debug_auth = args.debug_auth;
    if !args.host_names.is_empty() {
        config.addressing =
            Addressing::host_style(&args.host_names, &args.account).context("--host-name")?;
    }
    let addressing = config.addressing.clone();
    args.listen_args.apply(&mut config)?;
    args.oauth.apply(&mut config)?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let (server, description) = match args.backend {
        Backend::Memory => {
            let store = match &args.seed {
                Some(path) => load_seed(path, args.close_batch)?,
                None => MemoryStore::new(args.close_batch),
            };
            let stats = store.stats();
            let description = format!(
                "memory store: {} share(s), {} handle(s)",
                stats.shares, stats.handles
            );
            (HandleServer::memory(config, Arc::new(store)), description)
        }
        Backend::Samba => {
            anyhow::ensure!(
                args.seed.is_none(),
                "--seed loads the memory store; it does not apply to --backend samba"
            );
            let samba = args.samba.config(args.close_batch).context(
                "the Samba login (--samba-credentials-file, or SHARE_HYGIENE_SAMBA_USER and SHARE_HYGIENE_SAMBA_PASSWORD)",
            )?;
            let store = SambaStore::open(samba).await.context("--backend samba")?;
            let description = format!(
                "Samba server of {}: {} share(s)",
                args.samba.smb_conf.display(),
                store.shares().shares.len()
            );
            (
                HandleServer::new(config, Arc::new(store), None),
                description,
            )
        }
    };
    let running = Arc::new(server).spawn(args.listen).await.with_context(|| {
        format!(
            "listening on {} (--listen; --tls-cert and --tls-key, or --allow-insecure-http)",
            args.listen
        )
    })?;
    let endpoint = match addressing {
        Addressing::PathStyle => {
            format!("path-style at {scheme}://{}/{}", running.addr, args.account)
        }
        Addressing::HostStyle(names) => format!(
            "host-style at {scheme}://{}",
            names.join(&format!(", {scheme}://"))
        ),
    };
    tracing::info!(addr = %running.addr, account = %args.account, "handle service ready over the {description}, {endpoint}");
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(ExitCode::Ok)
}

/// The account key given. The service never makes one up: a generated key would have to be
/// shown to someone, and in a pod whatever the service prints lands in the logs.
fn account_key(key: Option<&str>) -> Result<AccountKey> {
    let key = key.context(
        "no account key: set SHARE_HYGIENE_ACCOUNT_KEY (or --key) to a base64 key that clients will sign with, for example the output of `head -c 32 /dev/urandom | base64`",
    )?;
    AccountKey::from_base64(key).context("--key / SHARE_HYGIENE_ACCOUNT_KEY")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
