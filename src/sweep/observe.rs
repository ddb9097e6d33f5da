//! Observe and classify one share: list its roots page by page, classify each handle, and
//! keep only what the plan needs (counts, condemned handles, guard statistics).

use std::collections::{BTreeSet, HashMap};

use futures::TryStreamExt;
use jiff::Timestamp;

use super::report::{HotPath, bump};
use crate::handles::{Error, HandleService, pages};
use crate::policy::{
    ClusterFacts, Condemned, Facts, GuardStat, OrphanLedger, Rules, ShareScope, Verdict, classify,
    client_key, is_within,
};
use crate::protocol::{Handle, Target};

/// Distinct files tracked for the hottest path; beyond this, new files are not counted (the
/// counts of the ones tracked stay exact).
const MAX_TRACKED_FILES: usize = 1_000_000;

/// What one share's observation keeps.
#[derive(Debug, Default)]
pub(super) struct Observation {
    pub seen: u64,
    pub kept: std::collections::BTreeMap<&'static str, u64>,
    /// Condemned handles, with the handle itself for the report.
    pub condemned: Vec<(Condemned, Handle)>,
    pub guards: Vec<GuardStat>,
    pub oldest: Option<Timestamp>,
    pub hottest: Option<HotPath>,
    /// Clients seen that the cluster does not know.
    pub unknown_clients: BTreeSet<String>,
}

/// The rules and facts one sweep classifies with.
pub(super) struct Classifier<'a> {
    pub rules: &'a Rules,
    pub cluster: Option<&'a ClusterFacts>,
    pub ledger: &'a OrphanLedger,
    pub now: Timestamp,
}

/// Lists every root of the share and classifies what it finds.
pub(super) async fn observe(
    index: usize,
    scope: &ShareScope,
    svc: &dyn HandleService,
    c: &Classifier<'_>,
    page_size: u32,
    progress: Option<&dyn super::Progress>,
) -> Result<Observation, Error> {
    let facts = Facts {
        cluster: c.cluster,
        orphans: c.ledger,
    };
    let mut obs = Observation {
        guards: c
            .rules
            .rename_guard
            .iter()
            .map(|g| GuardStat {
                share: index,
                path: g.clone(),
                fully_observed: scope.roots.iter().any(|r| is_within(g, r)),
                directory: false,
                kept: 0,
            })
            .collect(),
        ..Observation::default()
    };
    let mut per_file: HashMap<u64, (u64, String)> = HashMap::new();
    for root in &scope.roots {
        let target = Target::directory(&scope.share, root.clone(), true);
        let mut stream = std::pin::pin!(pages(svc, target, Some(page_size)));
        while let Some(page) = stream.try_next().await? {
            for h in page.handles {
                record(&mut obs, &mut per_file, index, h, c, &facts);
            }
            if let Some(p) = progress {
                p.listed(&scope.share, obs.seen);
            }
        }
    }
    obs.hottest = per_file
        .into_values()
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
        .map(|(handles, path)| HotPath { path, handles });
    Ok(obs)
}

fn record(
    obs: &mut Observation,
    per_file: &mut HashMap<u64, (u64, String)>,
    index: usize,
    h: Handle,
    c: &Classifier<'_>,
    facts: &Facts<'_>,
) {
    obs.seen += 1;
    let held = h.held_since();
    obs.oldest = Some(obs.oldest.map_or(held, |o| o.min(held)));
    // The root directory's FileId is 0 on every share; key it apart from real ids by path.
    let key = if h.path.is_empty() { 0 } else { h.file_id };
    if let Some(entry) = per_file.get_mut(&key) {
        entry.0 += 1;
    } else if per_file.len() < MAX_TRACKED_FILES {
        per_file.insert(key, (1, h.path.clone()));
    }
    if let Some(cluster) = c.cluster
        && !cluster.knows(&h)
    {
        obs.unknown_clients.insert(client_key(&h));
    }
    for g in obs.guards.iter_mut() {
        if h.path.len() > g.path.len() && is_within(&h.path, &g.path) {
            g.directory = true;
        }
    }
    match classify(&h, c.rules, facts, c.now) {
        Verdict::Keep(k) => {
            bump(&mut obs.kept, k.as_str(), 1);
            for g in obs
                .guards
                .iter_mut()
                .filter(|g| is_within(&h.path, &g.path))
            {
                g.kept += 1;
            }
        }
        Verdict::Close(reason) => {
            let condemned = Condemned {
                share: index,
                id: h.handle_id,
                path: h.path.clone(),
                held_since: held,
                reason,
            };
            obs.condemned.push((condemned, h));
        }
    }
}
