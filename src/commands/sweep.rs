//! `share-hygiene sweep`: one sweep of a HandlePolicy outside Kubernetes, on real shares or
//! on the embedded handle service, printing every decision with its reason.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use jiff::Timestamp;
use serde::Deserialize;

use super::connect::CredentialArgs;
use super::handle_service::load_seed;
use super::{ExitCode, table};
use share_hygiene::api::{Mode, parse_manifest};
use share_hygiene::auth::entra::Identity;
use share_hygiene::auth::{AccountKey, Credential, SECRET_KEYS, credential_from_keys};
use share_hygiene::controller::share_identity;
use share_hygiene::document::{DocumentError, from_yaml, printable};
use share_hygiene::handles::client::{
    ClientOptions, ClientPool, DEFAULT_IDLE_AFTER, Endpoint, HandleClient,
};
use share_hygiene::handles::memory::DEFAULT_CLOSE_BATCH;
use share_hygiene::handles::{Error as HandleError, HandleService};
use share_hygiene::policy::{ClusterFacts, OrphanLedger, Policy, ShareCredentials, compile};
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};
use share_hygiene::sweep::{
    Outcome, Progress, SweepInput, SweepOptions, SweepReport, format_counts, sweep,
};

/// The account the embedded service poses as.
const EMBEDDED_ACCOUNT: &str = "embedded";

/// `sweep` options.
#[derive(Args)]
pub struct SweepArgs {
    /// The HandlePolicy manifest (YAML).
    #[arg(short = 'f', long = "filename")]
    policy: PathBuf,
    /// Start the handle service in-process on a loopback port over this seed, with a random
    /// key, and point every share of the policy at it.
    #[arg(long)]
    embedded: Option<PathBuf>,
    /// Report what would be closed; close nothing (overrides the policy's mode).
    #[arg(long)]
    dry_run: bool,
    /// Cluster facts for the orphaned rule: a YAML file listing nodes and pods (see
    /// docs/sweep.md). Without it the orphaned rule condemns nothing.
    #[arg(long)]
    cluster_facts: Option<PathBuf>,
    /// A file keeping unknown clients' first-seen times between sweeps (read, then written).
    #[arg(long)]
    state: Option<PathBuf>,
    /// A YAML file mapping each credentialsSecretRef name to its keys (accountName +
    /// accountKey, sasToken, or connectionString). Shares whose Secret is not in it use the
    /// credential flags.
    #[arg(long)]
    secrets: Option<PathBuf>,
    #[command(flatten)]
    creds: CredentialArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
}

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    /// Sections and aligned columns for people.
    Table,
    /// The whole SweepReport as JSON.
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FactsFile {
    #[serde(default)]
    nodes: Vec<Member>,
    #[serde(default)]
    pods: Vec<Member>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    name: String,
    #[serde(default)]
    addresses: Vec<std::net::IpAddr>,
}

/// Reads a YAML file strictly: an error names the file, the field's path and its line.
fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} {}", path.display()))?;
    from_yaml(&text, &path.display().to_string()).with_context(|| format!("invalid {what}"))
}

/// Reads and compiles a HandlePolicy manifest.
pub fn load_policy(path: &Path) -> Result<(String, Policy)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    let hp = parse_manifest(&text, &path.display().to_string()).context("invalid policy")?;
    let name = hp.metadata.name.clone().unwrap_or_else(|| "unnamed".into());
    let policy =
        compile(&hp.spec).with_context(|| format!("policy {name} in {}", path.display()))?;
    Ok((name, policy))
}

/// The --secrets file: Secret names (a share's credentialsSecretRef or its service
/// principal's secretRef) to a Secret's keys. Every entry's keys are checked when the file is
/// read, so a misspelled key fails the sweep even in an entry no share uses today.
fn read_secrets(path: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let secrets: BTreeMap<String, BTreeMap<String, String>> = read_yaml(path, "secrets file")?;
    for (name, keys) in &secrets {
        let known = |k: &String| {
            SECRET_KEYS.contains(&k.as_str()) || Identity::SECRET_KEYS.contains(&k.as_str())
        };
        if let Some(unknown) = keys.keys().find(|k| !known(k)) {
            let err = DocumentError::new(
                path.display().to_string(),
                printable(&format!("{name}.{unknown}")),
                format!(
                    "unknown key, expected one of {} (accountName + accountKey, sasToken, or connectionString), or {} (a service principal)",
                    SECRET_KEYS.join(", "),
                    Identity::SECRET_KEYS.join(", ")
                ),
            );
            return Err(anyhow::Error::new(err).context("invalid secrets file"));
        }
    }
    Ok(secrets)
}

/// Runs one sweep.
pub async fn run(args: SweepArgs) -> Result<ExitCode> {
    let (name, mut policy) = load_policy(&args.policy)?;
    if args.dry_run {
        policy.mode = Mode::DryRun;
    }
    let cluster = match &args.cluster_facts {
        Some(path) => {
            let f: FactsFile = read_yaml(path, "cluster facts file")?;
            let members = f.nodes.iter().chain(&f.pods);
            Some(ClusterFacts::new(
                members.clone().flat_map(|m| m.addresses.iter().copied()),
                members.map(|m| m.name.clone()),
            ))
        }
        None => None,
    };
    let orphans = match &args.state {
        Some(path) if path.exists() => read_yaml(path, "state file")?,
        _ => OrphanLedger::default(),
    };

    // With --embedded, the handle service runs in this process and every share points at it.
    let embedded = match &args.embedded {
        Some(seed) => Some(start_embedded(seed).await?),
        None => None,
    };
    let services = match &embedded {
        Some((running, key)) => {
            let running_addr = running.addr;
            let endpoint = Endpoint::parse(&format!("http://{running_addr}/{EMBEDDED_ACCOUNT}"))?;
            let credential = Credential::SharedKey {
                account: EMBEDDED_ACCOUNT.into(),
                key: key.clone(),
            };
            let client: Arc<dyn HandleService> = Arc::new(HandleClient::new(
                endpoint,
                credential,
                ClientOptions::default(),
            )?);
            policy
                .shares
                .iter_mut()
                .for_each(|s| s.endpoint = format!("http://{running_addr}/{EMBEDDED_ACCOUNT}"));
            policy.shares.iter().map(|_| Ok(client.clone())).collect()
        }
        None => share_services(&policy, &args)?,
    };

    let progress = Arc::new(StderrProgress::new());
    let options = SweepOptions {
        progress: Some(progress.clone()),
        ..SweepOptions::default()
    };
    // Ctrl-C or SIGTERM: the close request in flight finishes, the rest are skipped.
    let flag = Arc::new(AtomicBool::new(false));
    let on_signal = flag.clone();
    tokio::spawn(async move {
        super::handle_service::shutdown_signal().await;
        eprintln!("stopping: the close in flight finishes, the rest are skipped");
        on_signal.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let stop = share_hygiene::sweep::stop_on(flag);
    let input = SweepInput {
        policy: &policy,
        services,
        cluster: cluster.as_ref(),
        orphans,
        now: Timestamp::now(),
        stop,
    };
    let report = sweep(input, &options).await;
    progress.finish();
    if let Some((running, _)) = embedded {
        running.shutdown().await;
    }

    if let Some(path) = &args.state {
        let text = serde_saphyr::to_string(&report.orphans)?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the state file {}", path.display()))?;
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", render(&name, &policy, &report, Timestamp::now())),
    }
    Ok(exit_code(&report))
}

/// 0 all well; 6 safety valve tripped; 5 some closes failed; 1 a share failed.
fn exit_code(report: &SweepReport) -> ExitCode {
    if !report.all_shares_ok() {
        ExitCode::Failure
    } else if report.safety_valve.is_some() {
        ExitCode::SafetyValve
    } else if report.failed() > 0 {
        ExitCode::SomeCloseFailed
    } else {
        ExitCode::Ok
    }
}

/// Starts the handle service over `seed` on a loopback port with a random key.
async fn start_embedded(seed: &Path) -> Result<(RunningServer, AccountKey)> {
    let store = load_seed(seed, DEFAULT_CLOSE_BATCH)?;
    let key = AccountKey::random();
    let config = ServerConfig::new(EMBEDDED_ACCOUNT, key.clone());
    let server = Arc::new(HandleServer::memory(config, Arc::new(store)));
    let running = server
        .spawn("127.0.0.1:0".parse()?)
        .await
        .context("starting the embedded handle service")?;
    eprintln!(
        "embedded handle service on http://{}/{EMBEDDED_ACCOUNT} (seed {})",
        running.addr,
        seed.display()
    );
    Ok((running, key))
}

fn share_services(
    policy: &Policy,
    args: &SweepArgs,
) -> Result<Vec<Result<Arc<dyn HandleService>, HandleError>>> {
    let secrets: BTreeMap<String, BTreeMap<String, String>> = match &args.secrets {
        Some(path) => read_secrets(path)?,
        None => BTreeMap::new(),
    };
    // Shares of one account share one client per credential, and one limit of requests in
    // flight and one retry budget.
    let pool = ClientPool::new(ClientOptions::default(), DEFAULT_IDLE_AFTER);
    let mut out = Vec::new();
    for scope in &policy.shares {
        let endpoint =
            Endpoint::parse(&scope.endpoint).with_context(|| format!("share {}", scope.share))?;
        let secrets_file = || {
            args.secrets
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let credential = match (&scope.credentials, scope.credentials.secret()) {
            (ShareCredentials::Secret(name), _) => match secrets.get(name) {
                Some(keys) => credential_from_keys(keys, endpoint.account())
                    .map(|(c, _)| c)
                    .with_context(|| format!("secret {name} in {}", secrets_file()))?,
                None => args.creds.credential(None, endpoint.account()).with_context(|| {
                    format!("share {}: its Secret {name:?} is not in --secrets, and the credential flags give none", scope.share)
                })?,
            },
            (identity, secret) => {
                let keys = match secret {
                    Some(name) => Some(secrets.get(name).with_context(|| {
                        format!("share {}: its service principal's Secret {name:?} is not in --secrets", scope.share)
                    })?),
                    None => None,
                };
                let identity = share_identity(identity, keys, |name| std::env::var(name).ok())
                    .with_context(|| format!("share {}: identity", scope.share))?;
                Credential::Entra(identity)
            }
        };
        let client: Arc<dyn HandleService> = pool.client(endpoint, credential)?;
        out.push(Ok(client));
    }
    if out.is_empty() {
        bail!("the policy has no shares");
    }
    Ok(out)
}

/// Progress on stderr, at most once a second, only for long sweeps.
struct StderrProgress {
    started: Instant,
    last: Mutex<Option<Instant>>,
    tty: bool,
}

impl StderrProgress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: Mutex::new(None),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn finish(&self) {
        if self.tty && self.last.lock().expect("lock poisoned").is_some() {
            eprintln!();
        }
    }
}

impl Progress for StderrProgress {
    fn listed(&self, share: &str, seen: u64) {
        let mut last = self.last.lock().expect("lock poisoned");
        let due = last.map_or(self.started.elapsed() >= Duration::from_secs(1), |l| {
            l.elapsed() >= Duration::from_secs(1)
        });
        if due {
            *last = Some(Instant::now());
            if self.tty {
                eprint!("\rlisting {share}: {seen} handles");
            } else {
                eprintln!("listing {share}: {seen} handles");
            }
        }
    }
}

/// The human report: what was seen per share, every decision, wildcards, and the summary.
pub fn render(name: &str, policy: &Policy, r: &SweepReport, now: Timestamp) -> String {
    let mut out = String::new();
    let mode = match r.mode {
        Mode::DryRun => "DryRun: nothing is closed",
        Mode::Enforce => "Enforce",
    };
    out += &format!(
        "Sweep of policy {name} ({mode}) over {} share(s)\n\n",
        r.shares.len()
    );
    out += "SEEN\n";
    for s in &r.shares {
        match &s.error {
            Some(e) => {
                out += &format!(
                    "  {}: FAILED ({}): {}\n",
                    s.share,
                    e.category.as_str(),
                    e.message
                )
            }
            None => {
                out += &format!(
                    "  {}: {} handle(s); kept: {}; condemned: {}\n",
                    s.share,
                    s.seen,
                    format_counts(&s.kept),
                    format_counts(&s.condemned)
                );
                if let Some(h) = &s.hottest {
                    out += &format!(
                        "    most handles on one path: {} on {:?}\n",
                        h.handles, h.path
                    );
                }
            }
        }
    }
    out += "\nDECISIONS (every condemned handle)\n";
    if r.decisions.is_empty() {
        out += "  none: no rule condemns any handle\n";
    } else {
        // Identical decisions (same share, path, client, age, reason and outcome) share a row;
        // the JSON output keeps every one.
        let mut rows = vec![
            [
                "SHARE",
                "HANDLE IDS",
                "PATH",
                "CLIENT",
                "CLIENT NAME",
                "HELD",
                "REASON",
                "OUTCOME",
            ]
            .map(str::to_owned),
        ];
        let mut groups: Vec<(Vec<u64>, [String; 7])> = Vec::new();
        for d in &r.decisions {
            let key = [
                d.share.clone(),
                if d.path.is_empty() {
                    "/".into()
                } else {
                    d.path.clone()
                },
                d.client_ip.clone(),
                d.client_name.clone().unwrap_or_else(|| "-".into()),
                table::held(now, d.held_since),
                d.reason.as_str().into(),
                d.outcome.as_str().into(),
            ];
            match groups.last_mut() {
                Some((ids, k)) if *k == key => ids.push(d.handle_id.0),
                _ => groups.push((vec![d.handle_id.0], key)),
            }
        }
        for (ids, k) in groups {
            let ids = match ids.as_slice() {
                [one] => one.to_string(),
                [first, .., last] if last - first + 1 == ids.len() as u64 => {
                    format!("{first}-{last} ({})", ids.len())
                }
                [first, ..] => format!("{first},... ({})", ids.len()),
                [] => String::new(),
            };
            let [share, path, client, name, held, reason, outcome] = k;
            rows.push([share, ids, path, client, name, held, reason, outcome]);
        }
        out += &table::render(&rows, "  ");
    }
    if !r.wildcards.is_empty() {
        out += "\nWILDCARD CLOSES (a rename guard condemns the whole subtree; nothing under it is protected)\n";
        for w in &r.wildcards {
            out += &format!(
                "  {}/{}: covers {} observed, closed {}, failed {}\n",
                w.share, w.path, w.covers, w.closed, w.failed
            );
        }
    }
    if let Some(v) = &r.safety_valve {
        out += &format!(
            "\nSAFETY VALVE: {} of {} observed handles ({}%) would close, above the policy's {}%; nothing was closed\n",
            v.condemned,
            v.observed,
            v.condemned * 100 / v.observed.max(1),
            v.limit_percent
        );
    }
    let would = r
        .decisions
        .iter()
        .filter(|d| {
            d.outcome
                == Outcome::NotClosed(share_hygiene::sweep::NotClosed::Skipped(
                    share_hygiene::policy::SkipCause::DryRun,
                ))
        })
        .count();
    out += &format!(
        "\nSUMMARY: seen {}, condemned {} ({}), closed {}, failed {}, gone {}, not closed: {}{} in {:.2}s (limits: {} closes per sweep, safety valve {}%)\n",
        r.seen(),
        r.condemned().values().sum::<u64>(),
        format_counts(&r.condemned()),
        r.closed(),
        r.failed(),
        r.shares.iter().map(|s| s.gone).sum::<u64>(),
        format_counts(&r.not_closed()),
        if would > 0 {
            format!("; {would} would close in enforce mode")
        } else {
            String::new()
        },
        r.duration.as_secs_f64(),
        policy.limits.max_closes,
        policy.limits.safety_valve_percent,
    );
    out
}
