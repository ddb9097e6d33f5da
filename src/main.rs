//! The `share-hygiene` command: wiring only; every capability lives in the library.

mod commands;

use clap::{Parser, Subcommand};

use commands::exit_code_for;
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
    HandleService(commands::handle_service::HandleServiceArgs),
    /// List or force-close open handles on a share (Azure Files or a handle service).
    #[command(subcommand)]
    Handles(commands::handles::HandlesCommand),
    /// Sweep a HandlePolicy once, outside Kubernetes (or on the embedded handle service).
    Sweep(commands::sweep::SweepArgs),
    /// Reconcile HandlePolicies in a Kubernetes cluster.
    Controller(commands::controller::ControllerArgs),
    /// Print the HandlePolicy CustomResourceDefinition (YAML).
    Crd,
}

fn main() {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    share_hygiene::install_crypto_provider();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async move {
                match cli.command {
                    Command::HandleService(args) => commands::handle_service::run(args).await,
                    Command::Handles(cmd) => commands::handles::run(cmd).await,
                    Command::Sweep(args) => commands::sweep::run(args).await,
                    Command::Controller(args) => commands::controller::run_controller(args).await,
                    Command::Crd => commands::crd::run(),
                }
            })
        });
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit_code_for(&err)
        }
    };
    std::process::exit(code as i32);
}
