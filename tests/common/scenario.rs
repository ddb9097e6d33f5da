//! Random scenarios for the property tests: a directory tree, clients, handles, rules, cluster
//! facts, a ledger and limits; and the policy plus reference model built from one.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::*;
use share_hygiene::api::{
    AccessRight, HandlePolicySpec, LimitsSpec, MatchSpec, Mode, ProtectSpec, RulesSpec,
};
use share_hygiene::policy::{ClusterFacts, OrphanLedger, Policy, compile};

/// A fixed seed keeps runs reproducible; set `PROPTEST_RNG_SEED` to explore other cases.
pub fn config(cases: u32) -> Config {
    let mut config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x05ee_d0f5_ba1e);
    }
    config
}

pub fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

/// Segment names chosen to collide with the globs and guards below: near-miss prefixes
/// (`v4`/`v42`), case pairs (`Data`/`data`), dots and non-ASCII.
pub const SEGMENTS: &[&str] = &[
    "a", "b", "logs", "releases", "v4", "v42", "x.log", "Data", "data", "é", "日本", "tmp",
];

pub const V4: &[&str] = &[
    "10.1.2.3",
    "10.1.9.9",
    "10.2.0.1",
    "192.168.1.20",
    "172.16.0.5",
];
pub const V6: &[&str] = &[
    "fd00::1",
    "fd00:1::5",
    "2001:db8::7",
    "fe80::1",
    "2001:db8:ffff::1",
];
pub const NAMES: &[&str] = &["aks-node-1", "AKS-NODE-2", "backup-01", "ws01", "laptop-é"];

pub fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SEGMENTS), 1..=4).prop_map(|s| s.join("/"))
}

/// A directory tree: a set of paths (their prefixes are directories).
pub fn arb_tree() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(arb_path(), 1..10).prop_map(|s| s.into_iter().collect())
}

/// Every path of the tree and all their ancestors, plus the root.
pub fn all_nodes(tree: &[String]) -> Vec<String> {
    let mut out = BTreeSet::new();
    out.insert(String::new());
    for p in tree {
        let segs: Vec<&str> = p.split('/').collect();
        for k in 1..=segs.len() {
            out.insert(segs[..k].join("/"));
        }
    }
    out.into_iter().collect()
}

/// A glob built from the segment alphabet and wildcards.
pub fn arb_glob() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        4 => prop::sample::select(SEGMENTS).prop_map(str::to_owned),
        2 => Just("**".to_owned()),
        1 => Just("*".to_owned()),
        1 => Just("v*".to_owned()),
        1 => Just("?".to_owned()),
        1 => Just("*.log".to_owned()),
        1 => Just("?4*".to_owned()),
        1 => Just("*本".to_owned()),
    ];
    prop::collection::vec(seg, 1..=3).prop_map(|s| s.join("/"))
}

pub fn ip_of(v6: bool, i: usize) -> IpAddr {
    if v6 {
        V6[i % V6.len()]
    } else {
        V4[i % V4.len()]
    }
    .parse()
    .unwrap()
}

#[derive(Debug, Clone)]
pub struct GenClient {
    /// `Some((v6, index))`, or `None` for a field holding a machine name instead of an address.
    pub addr: Option<(bool, usize)>,
    /// 0: bare; 1: with a port; 2: uppercase with a port (IPv6) or padded with spaces.
    pub form: u8,
    pub port: u16,
    pub name: Option<usize>,
}

impl GenClient {
    fn raw(&self) -> String {
        match self.addr {
            None => "NODE-7".to_owned(),
            Some((v6, i)) => {
                let ip = ip_of(v6, i).to_string();
                match (v6, self.form) {
                    (_, 0) => ip,
                    (false, 1) => format!("{ip}:{}", self.port),
                    (false, _) => format!(" {ip}:{} ", self.port),
                    (true, 1) => format!("[{ip}]:{}", self.port),
                    (true, _) => format!("[{}]:{}", ip.to_uppercase(), self.port),
                }
            }
        }
    }

    fn reference(&self) -> RefClient {
        RefClient {
            ip: self.addr.map(|(v6, i)| ip_of(v6, i)),
            raw: self.raw(),
            name: self.name.map(|n| NAMES[n].to_owned()),
        }
    }
}

pub fn arb_client() -> impl Strategy<Value = GenClient> {
    (
        prop::option::weighted(0.9, (any::<bool>(), 0..5usize)),
        0..3u8,
        1..65535u16,
        prop::option::of(0..NAMES.len()),
    )
        .prop_map(|(addr, form, port, name)| GenClient {
            addr,
            form,
            port,
            name,
        })
}

#[derive(Debug, Clone)]
pub struct GenHandle {
    /// Index into the tree's nodes (ancestors included, root included).
    pub node: usize,
    pub client: usize,
    /// Seconds relative to now (negative: in the past).
    pub open: i64,
    pub reconnect: Option<i64>,
    pub access: Option<u8>,
}

pub fn arb_handle() -> impl Strategy<Value = GenHandle> {
    let offset = prop_oneof![
        3 => -200_000i64..0,
        1 => -4000i64..4000,
        1 => prop::sample::select(vec![-7200i64, -3600, -3599, -3601, -600, -601, -599, 0, 1]),
    ];
    (
        any::<prop::sample::Index>(),
        0..6usize,
        offset.clone(),
        prop::option::of(offset),
        prop::option::weighted(0.9, 0..8u8),
    )
        .prop_map(|(node, client, open, reconnect, access)| GenHandle {
            node: node.index(usize::MAX),
            client,
            open,
            reconnect,
            access,
        })
}

#[derive(Debug, Clone)]
pub struct GenRules {
    pub stale: Option<i64>,
    pub orphan: Option<i64>,
    /// Guards: a node of the tree (by index) or a near miss (`<node>2`).
    pub guards: Vec<(prop::sample::Index, bool)>,
    pub access: Vec<AccessRight>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub cidrs: Vec<(bool, usize, u8)>,
    pub names: Vec<String>,
}

pub fn arb_rules() -> impl Strategy<Value = GenRules> {
    let secs = prop::sample::select(vec![0i64, 1, 599, 600, 3600, 86_400]);
    let right = prop::sample::select(vec![
        AccessRight::Read,
        AccessRight::Write,
        AccessRight::Delete,
    ]);
    let name_glob = prop::sample::select(vec![
        "aks-node-*",
        "AKS-*",
        "backup-??",
        "WS01",
        "*-é",
        "*",
        "laptop-?",
    ])
    .prop_map(str::to_owned);
    (
        prop::option::of(secs.clone()),
        prop::option::of(secs),
        prop_oneof![
            1 => Just(Vec::new()),
            2 => prop::collection::vec(
                (any::<prop::sample::Index>(), prop::bool::weighted(0.2)),
                1..3,
            ),
        ],
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(right, 1..3),
        ],
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(arb_glob(), 1..3),
        ],
        prop_oneof![
            1 => Just(Vec::new()),
            1 => prop::collection::vec(arb_glob(), 1..3),
        ],
        prop::collection::vec(
            (
                any::<bool>(),
                0..5usize,
                prop::sample::select(vec![0u8, 8, 16, 24, 32, 48, 64, 128]),
            ),
            0..2,
        ),
        prop::collection::vec(name_glob, 0..2),
    )
        .prop_map(
            |(stale, orphan, guards, access, include, exclude, cidrs, names)| GenRules {
                stale,
                orphan,
                guards,
                access,
                include,
                exclude,
                cidrs,
                names,
            },
        )
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub tree: Vec<String>,
    pub clients: Vec<GenClient>,
    pub handles: Vec<GenHandle>,
    pub rules: GenRules,
    /// The cluster: which clients' addresses and names it knows.
    pub cluster: Option<(Vec<bool>, Vec<bool>)>,
    /// Ledger: first-seen offsets for some clients.
    pub ledger: Vec<Option<i64>>,
    pub max_closes: i32,
    pub valve: i32,
    pub mode: Mode,
    /// Seconds since the epoch for "now": anywhere from 1971 to 2100.
    pub now: i64,
    /// The share's `paths`: directories of the tree, by index (none: the whole share).
    pub roots: Vec<prop::sample::Index>,
}

pub fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (
        arb_tree(),
        prop::collection::vec(arb_client(), 6),
        prop::collection::vec(arb_handle(), 0..40),
        arb_rules(),
        prop::option::weighted(
            0.7,
            (
                prop::collection::vec(any::<bool>(), 6),
                prop::collection::vec(any::<bool>(), 6),
            ),
        ),
        prop::collection::vec(prop::option::of(-4000i64..100), 6),
        prop_oneof![1i32..5, 1i32..60, Just(1_000_000)],
        prop_oneof![1i32..=100, Just(100), Just(50)],
        prop_oneof![Just(Mode::DryRun), Just(Mode::Enforce)],
        prop_oneof![Just(t0().as_second()), 31_536_000i64..4_102_444_800i64,],
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(any::<prop::sample::Index>(), 1..3),
        ],
    )
        .prop_map(
            |(
                tree,
                clients,
                handles,
                rules,
                cluster,
                ledger,
                max_closes,
                valve,
                mode,
                now,
                roots,
            )| {
                Scenario {
                    roots,
                    tree,
                    clients,
                    handles,
                    rules,
                    cluster,
                    ledger,
                    max_closes,
                    valve,
                    mode,
                    now,
                }
            },
        )
}

/// Whether `node` is a directory of the tree (the root, or a strict prefix of another node).
pub fn is_dir(nodes: &[String], node: &str) -> bool {
    node.is_empty()
        || nodes
            .iter()
            .any(|n| n.len() > node.len() && ref_within(n, node))
}

/// The directories the scenario sweeps (`paths` of its share), unnormalized on purpose.
pub fn root_paths(s: &Scenario, nodes: &[String]) -> Vec<String> {
    let dirs: Vec<&String> = nodes
        .iter()
        .filter(|n| !n.is_empty() && is_dir(nodes, n))
        .collect();
    if dirs.is_empty() {
        return Vec::new();
    }
    s.roots
        .iter()
        .enumerate()
        .map(|(k, ix)| {
            let d = dirs[ix.index(dirs.len())];
            // Spell some of them the way people do.
            if k % 2 == 1 {
                format!("/{d}/")
            } else {
                d.clone()
            }
        })
        .collect()
}

pub fn guard_paths(s: &Scenario, nodes: &[String]) -> Vec<String> {
    s.rules
        .guards
        .iter()
        .map(|(ix, near)| {
            // The root cannot be guarded; use the first real node instead.
            let mut p = nodes[1 + ix.index(nodes.len() - 1)].clone();
            if *near {
                p.push('2');
            }
            p
        })
        .collect()
}

pub fn spec_of(s: &Scenario, nodes: &[String]) -> HandlePolicySpec {
    let guards = guard_paths(s, nodes);
    let mut spec = spec_with(RulesSpec {
        stale: s.rules.stale.map(|d| share_hygiene::api::StaleRule {
            open_longer_than: format!("{d}s"),
        }),
        orphaned: s.rules.orphan.map(|d| share_hygiene::api::OrphanedRule {
            grace_period: format!("{d}s"),
        }),
        rename_guard: (!guards.is_empty())
            .then_some(share_hygiene::api::RenameGuardRule { paths: guards }),
        access_rights: s.rules.access.clone(),
    });
    // Always at least one rule.
    if spec.rules.stale.is_none()
        && spec.rules.orphaned.is_none()
        && spec.rules.rename_guard.is_none()
    {
        spec.rules.stale = stale("3600s");
    }
    spec.mode = s.mode;
    spec.shares[0].paths = root_paths(s, nodes);
    spec.match_ = MatchSpec {
        include: s.rules.include.clone(),
        exclude: s.rules.exclude.clone(),
    };
    spec.protect = ProtectSpec {
        client_cidrs: s
            .rules
            .cidrs
            .iter()
            .map(|&(v6, i, p)| format!("{}/{}", ip_of(v6, i), if v6 { p } else { p.min(32) }))
            .collect(),
        client_names: s.rules.names.clone(),
    };
    spec.limits = LimitsSpec {
        max_closes_per_sweep: s.max_closes,
        safety_valve_percent: s.valve,
    };
    spec
}

/// A scenario compiled, and its reference model.
pub struct Model {
    /// Every node of the tree, the root first.
    pub nodes: Vec<String>,
    pub spec: HandlePolicySpec,
    pub policy: Policy,
    pub ref_rules: RefRules,
    /// One per generated handle, in order.
    pub refs: Vec<RefHandle>,
    pub cluster: Option<ClusterFacts>,
    pub ref_cluster: Option<RefCluster>,
    pub ledger: OrphanLedger,
    pub ref_ledger: BTreeMap<String, i64>,
    pub now: Timestamp,
    /// Normalized roots (empty: the whole share).
    pub roots: Vec<String>,
}

impl Model {
    /// The reference verdict on handle `i`.
    pub fn expected(&self, i: usize) -> Result<&'static str, &'static str> {
        ref_classify(
            &self.refs[i],
            &self.ref_rules,
            self.ref_cluster.as_ref(),
            &self.ref_ledger,
            self.now.as_second(),
        )
    }

    /// Whether handle `i` lies under a swept root.
    pub fn observed(&self, i: usize) -> bool {
        self.roots.is_empty() || self.roots.iter().any(|r| ref_within(&self.refs[i].path, r))
    }

    /// Whether a guard path lies within a swept root.
    pub fn fully_observed(&self, path: &str) -> bool {
        self.roots.is_empty() || self.roots.iter().any(|r| ref_within(path, r))
    }
}

pub fn model(s: &Scenario) -> Model {
    let nodes = all_nodes(&s.tree);
    let spec = spec_of(s, &nodes);
    let policy = compile(&spec).unwrap_or_else(|e| panic!("generated spec must compile: {e}"));
    let secs = |d: &str| d.trim_end_matches('s').parse::<i64>().unwrap();
    let ref_rules = RefRules {
        include: spec.match_.include.clone(),
        exclude: spec.match_.exclude.clone(),
        stale_secs: spec.rules.stale.as_ref().map(|r| secs(&r.open_longer_than)),
        orphan_secs: spec.rules.orphaned.as_ref().map(|r| secs(&r.grace_period)),
        guards: guard_paths(s, &nodes),
        access: (!s.rules.access.is_empty()).then(|| rights(&s.rules.access).bits()),
        cidrs: s
            .rules
            .cidrs
            .iter()
            .map(|&(v6, i, p)| (ip_of(v6, i), if v6 { p } else { p.min(32) }))
            .collect(),
        names: s.rules.names.clone(),
    };
    let now = s.now;
    let refs = s
        .handles
        .iter()
        .map(|g| RefHandle {
            path: nodes[g.node % nodes.len()].clone(),
            client: s.clients[g.client].reference(),
            open: now + g.open,
            reconnect: g.reconnect.map(|r| now + r),
            access: g.access,
        })
        .collect();
    let (cluster, ref_cluster) = match &s.cluster {
        None => (None, None),
        Some((ips, names)) => {
            let mut rc = RefCluster::default();
            for (i, c) in s.clients.iter().enumerate() {
                if ips[i]
                    && let Some((v6, ix)) = c.addr
                {
                    rc.ips.insert(ip_of(v6, ix));
                }
                if names[i]
                    && let Some(n) = c.name
                {
                    // The cluster spells names its own way (case differs).
                    rc.names.push(NAMES[n].to_ascii_uppercase());
                }
            }
            let facts = ClusterFacts::new(rc.ips.iter().copied(), rc.names.iter().cloned());
            (Some(facts), Some(rc))
        }
    };
    let mut ledger = OrphanLedger::default();
    let mut ref_ledger = BTreeMap::new();
    for (i, c) in s.clients.iter().enumerate() {
        if let Some(off) = s.ledger[i] {
            let key = c.reference().key();
            ledger.0.insert(key.clone(), ts(now + off));
            ref_ledger.insert(key, now + off);
        }
    }
    let roots = root_paths(s, &nodes)
        .iter()
        .map(|r| r.trim_matches('/').to_owned())
        .collect();
    Model {
        nodes,
        spec,
        policy,
        ref_rules,
        refs,
        cluster,
        ref_cluster,
        ledger,
        ref_ledger,
        now: ts(now),
        roots,
    }
}
