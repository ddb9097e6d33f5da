//! `share-hygiene handle-service`: serve List Handles and Force Close Handles over a store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::ExitCode;
use super::samba_args::SambaArgs;
use share_hygiene::auth::AccountKey;
use share_hygiene::handles::memory::{DEFAULT_CLOSE_BATCH, MemoryStore, Seed};
use share_hygiene::handles::samba::SambaStore;
use share_hygiene::server::{Addressing, HandleServer, ServerConfig};

/// `handle-service` options.
#[derive(Args)]
pub struct HandleServiceArgs {
    /// YAML seed that loads the memory store (see docs/seed-format.md).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Address to listen on.
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
    /// The account key (base64). Prefer the environment variable: arguments show in `ps`.
    /// Without one, a random key is generated and printed.
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
    let running = Arc::new(server)
        .spawn(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let endpoint = match addressing {
        Addressing::PathStyle => format!("path-style at http://{}/{}", running.addr, args.account),
        Addressing::HostStyle(names) => format!("host-style at http://{}", names.join(", http://")),
    };
    tracing::info!(addr = %running.addr, account = %args.account, "handle service ready over the {description}, {endpoint}");
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(ExitCode::Ok)
}

/// The account key given, or a random one that is printed.
fn account_key(key: Option<&str>) -> Result<AccountKey> {
    match key {
        Some(k) => AccountKey::from_base64(k).context("--key / SHARE_HYGIENE_ACCOUNT_KEY"),
        None => {
            let key = AccountKey::random();
            // The only place a key is ever printed: one the operator did not give, so that a
            // client can be pointed at this service.
            eprintln!("no --key given; generated account key: {}", key.to_base64());
            Ok(key)
        }
    }
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
