//! `share-hygiene controller`: reconcile HandlePolicies in a cluster.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use anyhow::{Context, Result};
use clap::Args;

use super::ExitCode;
use share_hygiene::controller::{ControllerConfig, LeaseSettings, run};
use share_hygiene::handles::client::{ClientOptions, LimiterOptions};
use share_hygiene::sweep::SweepOptions;

/// `controller` options.
#[derive(Args)]
pub struct ControllerArgs {
    /// Watch only this namespace (repeatable); all namespaces when absent.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Only the HandlePolicies this label selector selects (e.g. `shard=a`): one shard of
    /// several controllers, each with its own --lease-name.
    #[arg(long)]
    policy_selector: Option<String>,
    /// The most sweeps that run at once, over all policies.
    #[arg(long, default_value = "8")]
    max_concurrent_sweeps: NonZeroUsize,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Run without leader election (only ever one replica).
    #[arg(long)]
    no_leader_election: bool,
    /// The Lease replicas compete for.
    #[arg(long, default_value = "share-hygiene")]
    lease_name: String,
    /// The Lease's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Shares listed or closed at once per policy.
    #[arg(long, default_value_t = 4)]
    share_concurrency: usize,
    /// Close requests offered at once per share; how many are in flight is decided per
    /// storage account, between --account-concurrency-floor and --account-concurrency-ceiling.
    #[arg(long, default_value_t = SweepOptions::default().close_concurrency)]
    close_concurrency: usize,
    /// Requests in flight to one storage account at least, however hard it throttles.
    #[arg(long, default_value_t = LimiterOptions::default().floor)]
    account_concurrency_floor: usize,
    /// Requests in flight to one storage account at most, from all policies together.
    #[arg(long, default_value_t = LimiterOptions::default().ceiling)]
    account_concurrency_ceiling: usize,
}

/// Runs the controller until SIGINT or SIGTERM.
pub async fn run_controller(args: ControllerArgs) -> Result<ExitCode> {
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok());
    let lease = if args.no_leader_election {
        None
    } else {
        Some(LeaseSettings {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone().context(
                "leader election needs the Lease's namespace: set --lease-namespace or POD_NAMESPACE (or pass --no-leader-election)",
            )?,
            identity: identity.clone().context("leader election needs an identity: set --identity or POD_NAME")?,
            duration_secs: args.lease_duration,
            grace_secs: (args.lease_duration / 3).max(1),
        })
    };
    let concurrency = LimiterOptions {
        floor: args.account_concurrency_floor,
        ceiling: args.account_concurrency_ceiling,
        ..LimiterOptions::default()
    };
    concurrency
        .validate()
        .map_err(anyhow::Error::msg)
        .context("--account-concurrency-floor and --account-concurrency-ceiling")?;
    let config = ControllerConfig {
        namespaces: args.namespaces,
        policy_selector: args.policy_selector.filter(|s| !s.trim().is_empty()),
        max_concurrent_sweeps: args.max_concurrent_sweeps,
        listen: args.listen,
        lease,
        instance: identity,
        sweep: SweepOptions {
            share_concurrency: args.share_concurrency,
            close_concurrency: args.close_concurrency,
            ..SweepOptions::default()
        },
        client: ClientOptions {
            concurrency,
            ..ClientOptions::default()
        },
    };
    run(config, super::handle_service::shutdown_signal()).await?;
    Ok(ExitCode::Ok)
}
