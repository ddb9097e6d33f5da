//! `share-hygiene handles list|close`: what `az storage share list-handle/close-handle` do,
//! with filters, a dry run, paging that scales, and useful exit codes.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use futures::TryStreamExt;
use ipnet::IpNet;
use jiff::Timestamp;
use serde::Serialize;

use super::connect::{CredentialArgs, client_for};
use super::{ExitCode, table};
use share_hygiene::duration::HumanDuration;
use share_hygiene::glob::NameGlob;
use share_hygiene::handles::client::ClientOptions;
use share_hygiene::handles::{
    CloseOutcome, Error as HandleError, ErrorCategory, HandleService, close_all, pages,
};
use share_hygiene::protocol::{Handle, HandleId, HandleSelector, ServiceVersion, Target};

/// List or close open handles on a share.
#[derive(Subcommand)]
pub enum HandlesCommand {
    /// List open handles.
    List(ListArgs),
    /// Force-close handles.
    Close(CloseArgs),
}

/// Where the handles are.
#[derive(Args)]
pub struct Location {
    /// The share's URL: https://ACCOUNT.file.core.windows.net/SHARE or http://HOST:PORT/ACCOUNT/SHARE.
    #[arg(long)]
    share_url: String,
    /// A directory or file below the share root (default: the root).
    #[arg(long, default_value = "")]
    path: String,
    /// Include everything below the path (the path must be a directory).
    #[arg(long)]
    recursive: bool,
    /// The x-ms-version to send.
    #[arg(long, default_value_t = ServiceVersion::DEFAULT.to_string())]
    service_version: String,
    #[command(flatten)]
    creds: CredentialArgs,
}

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON with every protocol field.
    Json,
    /// YAML with every protocol field.
    Yaml,
}

/// `handles list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    location: Location,
    /// Only handles held longer than this (from the last reconnect when newer than the open).
    #[arg(long)]
    older_than: Option<HumanDuration>,
    /// Only handles from clients in this network (repeatable), e.g. 10.244.0.0/16.
    #[arg(long = "client-ip")]
    client_ip: Vec<IpNet>,
    /// Only handles whose client name matches this glob (repeatable, case-insensitive).
    #[arg(long = "client-name")]
    client_name: Vec<NameGlob>,
    /// Handles per List Handles page (1 to 5000).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    page_size: u32,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
}

/// `handles close`.
#[derive(Args)]
pub struct CloseArgs {
    #[command(flatten)]
    location: Location,
    /// Close this handle: at --path when it is open there (one request), else found below
    /// --path (or the root) and closed through its own path.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    handle_id: Option<u64>,
    /// Close every handle on the path (and below it with --recursive), with Force Close
    /// Handles requests only: nothing is listed first.
    #[arg(long)]
    all: bool,
    /// List what would be closed; send no Force Close Handles request.
    #[arg(long)]
    dry_run: bool,
    /// Output format of the summary.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
}

impl Location {
    fn options(&self) -> Result<ClientOptions> {
        let version = self.service_version.parse().context("--service-version")?;
        Ok(ClientOptions {
            version,
            ..ClientOptions::default()
        })
    }

    /// The share URL's path joined with --path.
    fn full_path(&self, url_path: &str) -> String {
        [url_path, self.path.as_str()]
            .iter()
            .flat_map(|p| p.split('/'))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    }

    fn target(&self, share: &str, path: String) -> Target {
        // The root is a directory; elsewhere only --recursive says "directory", so no
        // x-ms-recursive header is ever sent to a file.
        match (path.is_empty(), self.recursive) {
            (true, r) => Target::directory(share, path, r),
            (false, true) => Target::directory(share, path, true),
            (false, false) => Target::resource(share, path),
        }
    }
}

/// Runs a `handles` subcommand.
pub async fn run(cmd: HandlesCommand) -> Result<ExitCode> {
    match cmd {
        HandlesCommand::List(args) => list(args).await,
        HandlesCommand::Close(args) => close(args).await,
    }
}

struct Filters {
    older_than: Option<(HumanDuration, Timestamp)>,
    nets: Vec<IpNet>,
    names: Vec<NameGlob>,
}

impl Filters {
    fn keep(&self, h: &Handle) -> bool {
        let old_enough = self.older_than.is_none_or(|(d, now)| {
            let age = now.duration_since(h.held_since());
            age.is_positive() && age.unsigned_abs() >= d.0
        });
        let in_net = self.nets.is_empty()
            || h.client_addr()
                .is_some_and(|ip| self.nets.iter().any(|n| n.contains(&ip)));
        let named = self.names.is_empty()
            || h.client_name
                .as_deref()
                .is_some_and(|n| self.names.iter().any(|g| g.matches(n)));
        old_enough && in_net && named
    }
}

/// Lists every page, keeping what `keep` accepts; progress on stderr after the first page.
async fn collect(
    svc: &dyn HandleService,
    target: Target,
    page_size: u32,
    keep: impl Fn(&Handle) -> bool,
) -> Result<Vec<Handle>> {
    let mut stream = std::pin::pin!(pages(svc, target, Some(page_size)));
    let (mut kept, mut seen, mut n_pages) = (Vec::new(), 0usize, 0usize);
    let progress = std::io::stderr().is_terminal();
    while let Some(page) = stream.try_next().await? {
        n_pages += 1;
        seen += page.handles.len();
        kept.extend(page.handles.into_iter().filter(|h| keep(h)));
        if n_pages > 1 {
            let line = format!(
                "listed {seen} handles in {n_pages} pages, {} match",
                kept.len()
            );
            if progress {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
    if progress && n_pages > 1 {
        eprintln!();
    }
    Ok(kept)
}

async fn list(args: ListArgs) -> Result<ExitCode> {
    let (client, url) = client_for(
        &args.location.share_url,
        &args.location.creds,
        args.location.options()?,
    )?;
    let target = args
        .location
        .target(&url.share, args.location.full_path(&url.path));
    let filters = Filters {
        older_than: args.older_than.map(|d| (d, Timestamp::now())),
        nets: args.client_ip,
        names: args.client_name,
    };
    let handles = collect(&client, target, args.page_size, |h| filters.keep(h)).await?;
    print_handles(&handles, args.output)?;
    Ok(ExitCode::Ok)
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct CloseSummary {
    closed: u64,
    failed: u64,
    requests: u64,
}

/// `handles close`: sends only what the close needs. `--all` sends Force Close Handles with
/// `x-ms-handle-id: *` (following `x-ms-marker`) and lists nothing; `--handle-id` closes at
/// `--path` at once and searches below it only when the handle is not there. Only `--dry-run`
/// lists what would be closed.
async fn close(args: CloseArgs) -> Result<ExitCode> {
    let loc = &args.location;
    let (client, url) = client_for(&loc.share_url, &loc.creds, loc.options()?)?;
    let path = loc.full_path(&url.path);
    if args.dry_run {
        let in_scope = match args.handle_id {
            Some(id) => vec![locate(&client, &url.share, &path, id).await?],
            None => collect(&client, loc.target(&url.share, path), 5000, |_| true).await?,
        };
        print_handles(&in_scope, args.output)?;
        eprintln!(
            "dry run: {} handle(s) would be closed; nothing was sent",
            in_scope.len()
        );
        return Ok(ExitCode::Ok);
    }
    let mut summary = CloseSummary::default();
    let (target, selector) = match args.handle_id {
        // A handle is closed through its own path: --path names it (a file, or a directory's
        // own handle), as `az storage share close-handle --handle-id ID --path P` does.
        Some(id) if !path.is_empty() && !loc.recursive => {
            let target = Target::resource(&url.share, path.clone());
            let first = close_all(&client, target, HandleSelector::Id(HandleId(id))).await;
            summary.add(&first);
            if first.error.is_some() || first.closed + first.failed > 0 {
                return finish(summary, first.error, args.output);
            }
            // Not on the path itself: when the path is a directory, it may be below it.
            let handle = find_below(&client, &url.share, &path, id).await?;
            (
                Target::resource(&url.share, handle.path),
                HandleSelector::Id(HandleId(id)),
            )
        }
        Some(id) => {
            let handle = find_below(&client, &url.share, &path, id).await?;
            (
                Target::resource(&url.share, handle.path),
                HandleSelector::Id(HandleId(id)),
            )
        }
        None => (loc.target(&url.share, path), HandleSelector::All),
    };
    let outcome = close_all(&client, target, selector).await;
    summary.add(&outcome);
    finish(summary, outcome.error, args.output)
}

impl CloseSummary {
    fn add(&mut self, outcome: &CloseOutcome) {
        self.closed += outcome.closed;
        self.failed += outcome.failed;
        self.requests += outcome.calls;
    }
}

/// Prints the summary; the exit code says whether every handle closed.
fn finish(summary: CloseSummary, error: Option<HandleError>, output: Output) -> Result<ExitCode> {
    print_summary(&summary, output)?;
    if let Some(e) = error {
        return Err(e).context(format!(
            "closing stopped after {} closed, {} failed",
            summary.closed, summary.failed
        ));
    }
    Ok(if summary.failed > 0 {
        ExitCode::SomeCloseFailed
    } else {
        ExitCode::Ok
    })
}

/// Finds handle `id` on `path` itself (listed without x-ms-recursive, which a file refuses),
/// else below it.
async fn locate(client: &dyn HandleService, share: &str, path: &str, id: u64) -> Result<Handle> {
    if !path.is_empty() {
        let own = Target::resource(share, path.to_owned());
        let found = collect(client, own, 5000, |h| h.handle_id == HandleId(id)).await?;
        if let Some(handle) = found.into_iter().next() {
            return Ok(handle);
        }
    }
    find_below(client, share, path, id).await
}

/// Finds handle `id` on or below `path` (the share root when empty); a path that is a file
/// refuses the recursive listing, and then the handle is not there.
async fn find_below(
    client: &dyn HandleService,
    share: &str,
    path: &str,
    id: u64,
) -> Result<Handle> {
    let search = Target::directory(share, path.to_owned(), true);
    let found = match collect(client, search, 5000, |h| h.handle_id == HandleId(id)).await {
        Ok(found) => found,
        Err(e)
            if !path.is_empty()
                && e.downcast_ref::<HandleError>()
                    .is_some_and(|e| e.category() == ErrorCategory::InvalidRequest) =>
        {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let Some(handle) = found.into_iter().next() else {
        bail!("handle {id} is not open on or below {share}/{path}");
    };
    Ok(handle)
}

fn print_summary(s: &CloseSummary, output: Output) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Table => writeln!(
            out,
            "closed {} handle(s), {} failed, in {} request(s)",
            s.closed, s.failed, s.requests
        )?,
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(s)?)?,
        Output::Yaml => write!(out, "{}", serde_saphyr::to_string(s)?)?,
    }
    Ok(())
}

fn print_handles(handles: &[Handle], output: Output) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(handles)?)?,
        Output::Yaml => write!(out, "{}", serde_saphyr::to_string(&handles)?)?,
        Output::Table => write!(out, "{}", table(handles, Timestamp::now()))?,
    }
    Ok(())
}

/// Aligned columns: id, path, client, name, age, rights.
pub fn table(handles: &[Handle], now: Timestamp) -> String {
    let mut rows = vec![
        [
            "HANDLE ID",
            "PATH",
            "CLIENT",
            "CLIENT NAME",
            "HELD",
            "RIGHTS",
        ]
        .map(str::to_owned),
    ];
    for h in handles {
        rows.push([
            h.handle_id.to_string(),
            if h.path.is_empty() {
                "/".to_owned()
            } else {
                h.path.clone()
            },
            h.client_ip.clone(),
            h.client_name.clone().unwrap_or_else(|| "-".into()),
            table::held(now, h.held_since()),
            h.access_rights
                .map_or_else(|| "-".into(), |r| r.names().collect::<Vec<_>>().join(",")),
        ]);
    }
    let mut out = table::render(&rows, "");
    out.push_str(&format!("{} handle(s)\n", handles.len()));
    out
}
