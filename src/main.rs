//! The `share-hygiene` command: wiring only; every capability lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use share_hygiene::auth::AccountKey;
use share_hygiene::handles::memory::{DEFAULT_CLOSE_BATCH, MemoryStore, Seed};
use share_hygiene::server::{HandleServer, ServerConfig};
use share_hygiene::telemetry::{self, LogFormat};

/// Keeps SMB file shares free of leaked handles.
#[derive(Parser)]
#[command(name = "share-hygiene", version, about)]
struct Cli {
    /// Log line format (logs go to stderr; RUST_LOG filters them).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve List Handles and Force Close Handles over a store, as Azure Files does.
    HandleService(HandleServiceArgs),
}

#[derive(Args)]
struct HandleServiceArgs {
    /// YAML seed that loads the memory store (see docs/seed-format.md).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:10004")]
    listen: SocketAddr,
    /// The storage account name the service poses as.
    #[arg(long, default_value = "devstoreaccount1")]
    account: String,
    /// The account key (base64). Prefer the environment variable: arguments show in `ps`.
    #[arg(long, env = "SHARE_HYGIENE_ACCOUNT_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The most handles one Force Close Handles call closes before answering with x-ms-marker.
    #[arg(long, default_value_t = DEFAULT_CLOSE_BATCH)]
    close_batch: usize,
    /// Put the server's string-to-sign in authentication errors (for client authors; never in
    /// production).
    #[arg(long)]
    debug_auth: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::HandleService(args) => handle_service(args).await,
        }
    })
}

async fn handle_service(args: HandleServiceArgs) -> Result<()> {
    let store = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the seed file {}", path.display()))?;
            let seed = Seed::from_yaml(&text).with_context(|| format!("in {}", path.display()))?;
            MemoryStore::from_seed(&seed, jiff::Timestamp::now(), args.close_batch)
                .with_context(|| format!("in {}", path.display()))?
        }
        None => MemoryStore::new(args.close_batch),
    };
    let key = match &args.key {
        Some(k) => AccountKey::from_base64(k).context("--key / SHARE_HYGIENE_ACCOUNT_KEY")?,
        None => {
            let key = AccountKey::random();
            // The only place a key is ever printed: one the operator did not give, so that a
            // client can be pointed at this service.
            eprintln!("no --key given; generated account key: {}", key.to_base64());
            key
        }
    };
    let stats = store.stats();
    let mut config = ServerConfig::new(&args.account, key);
    config.debug_auth = args.debug_auth;
    let server = Arc::new(HandleServer::memory(config, Arc::new(store)));
    let running = server
        .spawn(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        addr = %running.addr,
        account = %args.account,
        shares = stats.shares,
        handles = stats.handles,
        "handle service ready: http://{}/{}",
        running.addr,
        args.account
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
