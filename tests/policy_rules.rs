//! Unit tests for each rule's edges: the stale clock and reconnects, exact boundaries, handles
//! from the future, globs, CIDRs and client address forms, rename-guard prefixes, and compile
//! errors that name every invalid field at once.

mod common;

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};

use common::*;
use share_hygiene::api::{
    AccessRight, HandlePolicySpec, LimitsSpec, MatchSpec, Mode, ProtectSpec, RulesSpec,
};
use share_hygiene::glob::{NameGlob, PathGlob};
use share_hygiene::policy::{
    ClusterFacts, Facts, Keep, OrphanLedger, Policy, Reason, Verdict, classify, client_key,
    compile, in_scope, is_protected, is_within, normalize_path,
};
use share_hygiene::protocol::{AccessRights, Handle};

fn compile_ok(spec: &HandlePolicySpec) -> Policy {
    match compile(spec) {
        Ok(p) => p,
        Err(e) => panic!("spec should compile: {e}"),
    }
}

fn verdict_at(policy: &Policy, h: &Handle, now: Timestamp) -> Verdict {
    let ledger = OrphanLedger::default();
    let facts = Facts {
        cluster: None,
        orphans: &ledger,
    };
    classify(h, &policy.rules, &facts, now)
}

fn stale_policy(d: &str) -> Policy {
    compile_ok(&spec_with(RulesSpec {
        stale: stale(d),
        ..RulesSpec::default()
    }))
}

fn ns(n: i64) -> SignedDuration {
    SignedDuration::from_nanos(n)
}

// ----- stale: reconnects and boundaries -----------------------------------------------------

#[test]
fn newer_reconnect_resets_the_stale_clock() {
    let p = stale_policy("1h");
    let mut h = handle(1, "a/f", "10.0.0.1:445", at(-2 * 3600));
    assert_eq!(verdict_at(&p, &h, t0()), Verdict::Close(Reason::Stale));
    h.last_reconnect_time = Some(at(-600));
    assert_eq!(h.held_since(), at(-600));
    assert_eq!(
        verdict_at(&p, &h, t0()),
        Verdict::Keep(Keep::NotCondemned),
        "a reconnect 10m ago restarts the 1h clock"
    );
}

#[test]
fn older_or_equal_reconnect_does_not_reset_the_stale_clock() {
    let p = stale_policy("1h");
    let mut h = handle(1, "a/f", "10.0.0.1:445", at(-2 * 3600));
    for reconnect in [at(-3 * 3600), at(-2 * 3600), Timestamp::UNIX_EPOCH] {
        h.last_reconnect_time = Some(reconnect);
        assert_eq!(h.held_since(), h.open_time, "reconnect {reconnect}");
        assert_eq!(verdict_at(&p, &h, t0()), Verdict::Close(Reason::Stale));
    }
}

#[test]
fn stale_is_strictly_longer_than() {
    let p = stale_policy("1h");
    let exactly = handle(1, "f", "10.0.0.1", at(-3600));
    assert_eq!(
        verdict_at(&p, &exactly, t0()),
        Verdict::Keep(Keep::NotCondemned),
        "held exactly 1h is not longer than 1h"
    );
    let one_ns_more = handle(2, "f", "10.0.0.1", at(-3600) - ns(1));
    assert_eq!(
        verdict_at(&p, &one_ns_more, t0()),
        Verdict::Close(Reason::Stale)
    );
    let one_s_more = handle(3, "f", "10.0.0.1", at(-3601));
    assert_eq!(
        verdict_at(&p, &one_s_more, t0()),
        Verdict::Close(Reason::Stale)
    );
    // Reconnect boundary, the same way.
    let mut r = handle(4, "f", "10.0.0.1", at(-86_400));
    r.last_reconnect_time = Some(at(-3600));
    assert_eq!(verdict_at(&p, &r, t0()), Verdict::Keep(Keep::NotCondemned));
    r.last_reconnect_time = Some(at(-3600) - ns(1));
    assert_eq!(verdict_at(&p, &r, t0()), Verdict::Close(Reason::Stale));
}

#[test]
fn zero_stale_limit_condemns_anything_held_at_all() {
    let p = stale_policy("0s");
    assert_eq!(
        verdict_at(&p, &handle(1, "f", "10.0.0.1", t0()), t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
    assert_eq!(
        verdict_at(&p, &handle(2, "f", "10.0.0.1", t0() - ns(1)), t0()),
        Verdict::Close(Reason::Stale)
    );
}

#[test]
fn handles_from_the_future_are_never_stale() {
    let p = stale_policy("0s");
    let future = handle(1, "f", "10.0.0.1", at(3600));
    assert_eq!(
        verdict_at(&p, &future, t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
    // An old open with a reconnect in the future: held since the reconnect, so not stale.
    let mut r = handle(2, "f", "10.0.0.1", at(-86_400 * 365));
    r.last_reconnect_time = Some(at(60));
    assert_eq!(verdict_at(&p, &r, t0()), Verdict::Keep(Keep::NotCondemned));
}

#[test]
fn classification_uses_the_given_now_not_the_clock() {
    let p = stale_policy("1h");
    // A handle opened in 1990, judged in 1990: not stale, whatever the wall clock says.
    let base = Timestamp::from_second(631_152_000).unwrap(); // 1990-01-01
    let h = handle(1, "f", "10.0.0.1", base);
    let later = base + SignedDuration::from_secs(1800);
    assert_eq!(verdict_at(&p, &h, later), Verdict::Keep(Keep::NotCondemned));
    let much_later = base + SignedDuration::from_secs(7200);
    assert_eq!(
        verdict_at(&p, &h, much_later),
        Verdict::Close(Reason::Stale)
    );
    // And a handle opened "now" judged far in the future is stale.
    let far = Timestamp::from_second(4_102_444_800).unwrap(); // 2100-01-01
    assert_eq!(
        verdict_at(&p, &handle(2, "f", "10.0.0.1", t0()), far),
        Verdict::Close(Reason::Stale)
    );
}

// ----- orphaned: grace boundaries, ledger keys ----------------------------------------------

fn orphan_policy(grace: &str) -> Policy {
    compile_ok(&spec_with(RulesSpec {
        orphaned: orphaned(grace),
        ..RulesSpec::default()
    }))
}

fn orphan_verdict(
    p: &Policy,
    h: &Handle,
    cluster: Option<&ClusterFacts>,
    ledger: &OrphanLedger,
    now: Timestamp,
) -> Verdict {
    let facts = Facts {
        cluster,
        orphans: ledger,
    };
    classify(h, &p.rules, &facts, now)
}

fn ledger(entries: &[(&str, Timestamp)]) -> OrphanLedger {
    OrphanLedger(entries.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect())
}

fn cluster(ips: &[&str], names: &[&str]) -> ClusterFacts {
    ClusterFacts::new(
        ips.iter().map(|i| i.parse::<IpAddr>().unwrap()),
        names.iter().map(|n| (*n).to_owned()),
    )
}

#[test]
fn orphan_grace_is_at_least() {
    let p = orphan_policy("10m");
    let c = cluster(&["10.0.0.1"], &[]);
    let h = handle(1, "f", "10.9.9.9:50123", at(-86_400));
    // Never seen before: first seen now, so not yet orphaned.
    assert_eq!(
        orphan_verdict(&p, &h, Some(&c), &OrphanLedger::default(), t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
    // Exactly the grace period ago: orphaned.
    let exactly = ledger(&[("10.9.9.9", at(-600))]);
    assert_eq!(
        orphan_verdict(&p, &h, Some(&c), &exactly, t0()),
        Verdict::Close(Reason::Orphaned)
    );
    // One nanosecond short: not yet.
    let short = ledger(&[("10.9.9.9", at(-600) + ns(1))]);
    assert_eq!(
        orphan_verdict(&p, &h, Some(&c), &short, t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
    // First seen in the future (a clock step back): not orphaned.
    let future = ledger(&[("10.9.9.9", at(60))]);
    assert_eq!(
        orphan_verdict(&p, &h, Some(&c), &future, t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
}

#[test]
fn zero_grace_condemns_unknown_clients_at_once() {
    let p = orphan_policy("0s");
    let c = cluster(&["10.0.0.1"], &["aks-node-1"]);
    let unknown = handle(1, "f", "10.9.9.9:1", at(-1));
    assert_eq!(
        orphan_verdict(&p, &unknown, Some(&c), &OrphanLedger::default(), t0()),
        Verdict::Close(Reason::Orphaned)
    );
    let known = handle(2, "f", "10.0.0.1:1", at(-1));
    assert_eq!(
        orphan_verdict(&p, &known, Some(&c), &OrphanLedger::default(), t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
    // Known by name, case-insensitively, even from an unknown address.
    let mut by_name = handle(3, "f", "10.9.9.9:1", at(-1));
    by_name.client_name = Some("AKS-Node-1".into());
    assert_eq!(
        orphan_verdict(&p, &by_name, Some(&c), &OrphanLedger::default(), t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
}

#[test]
fn orphaned_rule_is_idle_outside_a_cluster() {
    let p = orphan_policy("0s");
    let h = handle(1, "f", "10.9.9.9:1", at(-86_400));
    let old = ledger(&[("10.9.9.9", at(-86_400))]);
    assert_eq!(
        orphan_verdict(&p, &h, None, &old, t0()),
        Verdict::Keep(Keep::NotCondemned)
    );
}

#[test]
fn ledger_keys_ignore_the_port_and_normalize_addresses() {
    let cases = [
        ("10.9.9.9:50000", None, "10.9.9.9"),
        ("10.9.9.9", None, "10.9.9.9"),
        ("[FD00:0:0::1]:445", None, "fd00::1"),
        ("fd00::1", None, "fd00::1"),
        ("WS01", Some("Laptop-7"), "laptop-7"),
        ("WS01", None, "WS01"),
        ("WS01", Some(""), "WS01"),
    ];
    for (ip, name, key) in cases {
        let mut h = handle(1, "f", ip, t0());
        h.client_name = name.map(str::to_owned);
        assert_eq!(client_key(&h), key, "{ip} {name:?}");
    }
    // A client that came back on another port keeps its first-seen time.
    let p = orphan_policy("10m");
    let c = cluster(&[], &[]);
    let l = ledger(&[("fd00::1", at(-3600))]);
    let h = handle(1, "f", "[fd00::1]:61234", at(-60));
    assert_eq!(
        orphan_verdict(&p, &h, Some(&c), &l, t0()),
        Verdict::Close(Reason::Orphaned)
    );
}

#[test]
fn reason_priority_is_rename_then_orphaned_then_stale() {
    let p = compile_ok(&spec_with(RulesSpec {
        stale: stale("1h"),
        orphaned: orphaned("0s"),
        rename_guard: guard(&["releases/v4"]),
        ..RulesSpec::default()
    }));
    let c = cluster(&[], &[]);
    let none = OrphanLedger::default();
    let old = at(-86_400);
    let all_three = handle(1, "releases/v4/app.bin", "10.9.9.9:1", old);
    assert_eq!(
        orphan_verdict(&p, &all_three, Some(&c), &none, t0()),
        Verdict::Close(Reason::RenameBlocking)
    );
    let orphan_and_stale = handle(2, "other/app.bin", "10.9.9.9:1", old);
    assert_eq!(
        orphan_verdict(&p, &orphan_and_stale, Some(&c), &none, t0()),
        Verdict::Close(Reason::Orphaned)
    );
    assert_eq!(
        orphan_verdict(&p, &orphan_and_stale, None, &none, t0()),
        Verdict::Close(Reason::Stale)
    );
}

// ----- keep reasons and their precedence ----------------------------------------------------

#[test]
fn out_of_scope_beats_protected_beats_access_beats_rules() {
    let mut spec = spec_with(RulesSpec {
        rename_guard: guard(&["g"]),
        access_rights: vec![AccessRight::Delete],
        ..RulesSpec::default()
    });
    spec.match_ = MatchSpec {
        include: vec!["g/**".into()],
        exclude: vec!["g/tmp/**".into()],
    };
    spec.protect.client_cidrs = vec!["10.1.0.0/16".into()];
    let p = compile_ok(&spec);
    let mut h = handle(1, "g/tmp/x", "10.1.2.3:445", at(-1));
    h.access_rights = Some(AccessRights::READ);
    assert_eq!(verdict_at(&p, &h, t0()), Verdict::Keep(Keep::OutOfScope));
    h.path = "g/x".into();
    assert_eq!(verdict_at(&p, &h, t0()), Verdict::Keep(Keep::Protected));
    h.client_ip = "10.2.0.1:445".into();
    assert_eq!(verdict_at(&p, &h, t0()), Verdict::Keep(Keep::AccessRights));
    h.access_rights = Some(AccessRights::READ.union(AccessRights::DELETE));
    assert_eq!(
        verdict_at(&p, &h, t0()),
        Verdict::Close(Reason::RenameBlocking)
    );
    h.path = "elsewhere".into();
    assert_eq!(verdict_at(&p, &h, t0()), Verdict::Keep(Keep::OutOfScope));
}

#[test]
fn access_filter_narrows_and_unreported_rights_are_kept() {
    let p = compile_ok(&spec_with(RulesSpec {
        stale: stale("0s"),
        access_rights: vec![AccessRight::Write, AccessRight::Delete],
        ..RulesSpec::default()
    }));
    let mut h = handle(1, "f", "10.0.0.1", at(-10));
    for (rights, want) in [
        (Some(AccessRights::READ), Verdict::Keep(Keep::AccessRights)),
        (Some(AccessRights::NONE), Verdict::Keep(Keep::AccessRights)),
        (None, Verdict::Keep(Keep::AccessRights)),
        (Some(AccessRights::WRITE), Verdict::Close(Reason::Stale)),
        (Some(AccessRights::DELETE), Verdict::Close(Reason::Stale)),
        (
            Some(AccessRights::READ.union(AccessRights::WRITE)),
            Verdict::Close(Reason::Stale),
        ),
    ] {
        h.access_rights = rights;
        assert_eq!(verdict_at(&p, &h, t0()), want, "{rights:?}");
    }
    // Without a filter, unreported rights do not matter.
    let any = stale_policy("0s");
    h.access_rights = None;
    assert_eq!(verdict_at(&any, &h, t0()), Verdict::Close(Reason::Stale));
}

// ----- globs --------------------------------------------------------------------------------

fn pg(g: &str) -> PathGlob {
    g.parse().unwrap_or_else(|e| panic!("{g}: {e}"))
}

#[test]
fn double_star_at_start_middle_and_end() {
    let cases = [
        // start
        ("**/x.log", "x.log", true),
        ("**/x.log", "a/b/x.log", true),
        ("**/x.log", "a/b/x.log/c", false),
        ("**/b", "b", true),
        ("**/b", "ab", false),
        // middle
        ("a/**/z", "a/z", true),
        ("a/**/z", "a/b/c/z", true),
        ("a/**/z", "a/b/c/z/d", false),
        ("a/**/z", "b/a/z", false),
        ("a/**/b/**/c", "a/b/c", true),
        ("a/**/b/**/c", "a/x/b/y/z/c", true),
        ("a/**/b/**/c", "a/x/c", false),
        // end
        ("logs/**", "logs", true),
        ("logs/**", "logs/a", true),
        ("logs/**", "logs/a/b/c.txt", true),
        ("logs/**", "logsx", false),
        ("logs/**", "logs-old/a", false),
        ("logs/**", "x/logs/a", false),
        ("logs/**", "", false),
        // alone and doubled
        ("**", "", true),
        ("**", "a/b/c", true),
        ("**/**", "a", true),
        ("**/**", "", true),
        ("a/**/**/b", "a/b", true),
        // single-segment wildcards do not cross '/'
        ("*", "a", true),
        ("*", "a/b", false),
        ("a/*", "a", false),
        ("a/*", "a/b", true),
        ("a/*", "a/b/c", false),
        ("a/?", "a/b", true),
        ("a/?", "a/bc", false),
        ("a?b", "a/b", false),
        ("*.log", "x.log", true),
        ("*.log", ".log", true),
        ("*.log", "x.log.1", false),
        ("v*", "v42", true),
        ("v?", "v42", false),
        // slashes in the glob are normalized
        ("/logs//**/", "logs/a", true),
    ];
    for (g, p, want) in cases {
        assert_eq!(pg(g).matches(p), want, "{g:?} vs {p:?}");
        assert_eq!(
            ref_path_glob(g, p),
            want,
            "reference model disagrees: {g:?} vs {p:?}"
        );
    }
}

#[test]
fn path_and_name_globs_are_case_insensitive() {
    // Azure Files and SMB names are case-insensitive: `Scratch/x` is in `scratch/**`.
    assert!(pg("Data/**").matches("Data/x"));
    assert!(pg("Data/**").matches("data/x"));
    assert!(pg("data/*.LOG").matches("DATA/a.log"));
    assert!(
        pg("Émile/*").matches("émile/x"),
        "non-ASCII letters fold too"
    );
    let n: NameGlob = "Backup-*".parse().unwrap();
    assert!(n.matches("backup-01") && n.matches("BACKUP-01") && n.matches("BaCkUp-"));
    assert!(!n.matches("xbackup-01") && !n.matches("backup"));
    let exact: NameGlob = "ws01".parse().unwrap();
    assert!(exact.matches("WS01") && !exact.matches("WS012"));
}

#[test]
fn unicode_in_globs_and_paths() {
    let cases = [
        ("données/**", "données/x", true),
        ("données/**", "donnees/x", false),
        ("dir/?.txt", "dir/é.txt", true),
        ("dir/?.txt", "dir/日.txt", true),
        ("dir/?.txt", "dir/😀.txt", true),
        ("dir/??.txt", "dir/日本.txt", true),
        ("dir/?.txt", "dir/日本.txt", false),
        ("dir/*本.txt", "dir/日本.txt", true),
        ("dir/*é", "dir/café", true),
        ("dir/*é", "dir/cafe", false),
        ("日本/**/*.log", "日本/a/b.log", true),
    ];
    for (g, p, want) in cases {
        assert_eq!(pg(g).matches(p), want, "{g:?} vs {p:?}");
        assert_eq!(ref_path_glob(g, p), want, "{g:?} vs {p:?}");
    }
    // Name globs fold ASCII case only; non-ASCII letters must match exactly.
    let n: NameGlob = "café-*".parse().unwrap();
    assert!(n.matches("CAFé-1"));
    assert!(n.matches("café-?"));
    let q: NameGlob = "?-node".parse().unwrap();
    assert!(q.matches("é-node") && !q.matches("éé-node"));
}

#[test]
fn invalid_globs_are_refused() {
    for g in ["", "/", "//", "a/**b", "a/b**", "***"] {
        assert!(g.parse::<PathGlob>().is_err(), "{g:?} should be refused");
    }
    assert!("".parse::<NameGlob>().is_err());
}

#[test]
fn in_scope_uses_include_then_exclude() {
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    spec.match_ = MatchSpec {
        include: vec!["logs/**".into(), "**/*.tmp".into()],
        exclude: vec!["logs/keep/**".into()],
    };
    let p = compile_ok(&spec);
    for (path, want) in [
        ("logs", true),
        ("logs/a", true),
        ("logs/keep", false),
        ("logs/keep/a", false),
        ("logs/keeper/a", true),
        ("x/y.tmp", true),
        ("logs/keep/y.tmp", false),
        ("other/a", false),
        ("", false),
    ] {
        assert_eq!(in_scope(path, &p.rules), want, "{path:?}");
    }
    // No include: everything in scope but the excluded.
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    spec.match_.exclude = vec!["**/.snapshot/**".into()];
    let p = compile_ok(&spec);
    assert!(in_scope("", &p.rules));
    assert!(in_scope("a/b", &p.rules));
    assert!(!in_scope("a/.snapshot", &p.rules));
    assert!(!in_scope(".snapshot/x", &p.rules));
}

// ----- CIDRs, client address forms, names ---------------------------------------------------

fn protect_policy(cidrs: &[&str], names: &[&str]) -> Policy {
    let mut spec = spec_with(RulesSpec {
        stale: stale("0s"),
        ..RulesSpec::default()
    });
    spec.protect = ProtectSpec {
        client_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        client_names: names.iter().map(|c| (*c).to_owned()).collect(),
    };
    compile_ok(&spec)
}

fn protected(p: &Policy, client_ip: &str, name: Option<&str>) -> bool {
    let mut h = handle(1, "f", client_ip, at(-10));
    h.client_name = name.map(str::to_owned);
    let by_fn = is_protected(&h, &p.rules);
    let verdict = verdict_at(p, &h, t0());
    assert_eq!(
        by_fn,
        verdict == Verdict::Keep(Keep::Protected),
        "is_protected and classify disagree on {client_ip}"
    );
    by_fn
}

#[test]
fn ipv4_cidrs_with_and_without_ports() {
    let p = protect_policy(&["10.1.0.0/16", "192.168.7.7/32"], &[]);
    for (ip, want) in [
        ("10.1.2.3:445", true),
        ("10.1.2.3", true),
        (" 10.1.2.3:445 ", true),
        ("10.1.255.255:1", true),
        ("10.2.0.1:445", false),
        ("10.0.255.255", false),
        ("192.168.7.7:50000", true),
        ("192.168.7.8:50000", false),
        ("WS01", false),
        ("", false),
        ("10.1.2.3:notaport", false),
    ] {
        assert_eq!(protected(&p, ip, None), want, "{ip:?}");
    }
}

#[test]
fn ipv6_cidrs_with_and_without_ports() {
    let p = protect_policy(&["fd00::/8", "2001:db8:1::/48"], &[]);
    for (ip, want) in [
        ("[fd12:3456::1]:445", true),
        ("fd12:3456::1", true),
        ("[FD12:3456::1]:445", true),
        ("fe80::1", false),
        ("[2001:db8:1:ffff::9]:50000", true),
        ("[2001:db8:2::9]:50000", false),
        // An IPv4 client is not in an IPv6 network, nor the other way around.
        ("10.1.2.3:445", false),
    ] {
        assert_eq!(protected(&p, ip, None), want, "{ip:?}");
    }
    let all_v4 = protect_policy(&["0.0.0.0/0"], &[]);
    assert!(protected(&all_v4, "203.0.113.9:1", None));
    assert!(!protected(&all_v4, "[2001:db8::1]:1", None));
    let all_v6 = protect_policy(&["::/0"], &[]);
    assert!(protected(&all_v6, "[2001:db8::1]:1", None));
    assert!(!protected(&all_v6, "203.0.113.9:1", None));
}

#[test]
fn cidr_with_host_bits_set_is_its_network() {
    let p = protect_policy(&["10.1.2.3/16"], &[]);
    assert!(protected(&p, "10.1.200.200:1", None));
    assert!(!protected(&p, "10.2.2.3:1", None));
}

/// An IPv4 client seen through a dual-stack socket is reported as `::ffff:a.b.c.d`. It is the
/// same client: a protected IPv4 network must still protect it, and a cluster node's IPv4
/// address must still make it known (else a node's handles are condemned as orphaned).
#[test]
fn ipv4_mapped_ipv6_clients_match_their_ipv4_address() {
    let p = protect_policy(&["10.1.0.0/16"], &[]);
    assert!(
        protected(&p, "[::ffff:10.1.2.3]:445", None),
        "::ffff:10.1.2.3 is 10.1.2.3, inside the protected 10.1.0.0/16"
    );
    let c = cluster(&["10.240.0.4"], &[]);
    let h = handle(1, "f", "[::ffff:10.240.0.4]:445", at(-10));
    assert!(
        c.knows(&h),
        "the node 10.240.0.4 connecting as ::ffff:10.240.0.4 is a known client"
    );
}

#[test]
fn name_globs_protect_case_insensitively() {
    let p = protect_policy(&[], &["backup-*", "WS0?"]);
    for (name, want) in [
        (Some("backup-01"), true),
        (Some("BACKUP-nightly"), true),
        (Some("ws01"), true),
        (Some("WS012"), false),
        (Some("my-backup-01"), false),
        (None, false),
    ] {
        assert_eq!(protected(&p, "10.0.0.1:445", name), want, "{name:?}");
    }
}

// ----- rename guard prefixes ----------------------------------------------------------------

#[test]
fn rename_guard_prefix_is_segment_safe() {
    let p = compile_ok(&spec_with(RulesSpec {
        rename_guard: guard(&["releases/v4", "/cfg//app.yaml/"]),
        ..RulesSpec::default()
    }));
    assert_eq!(p.rules.rename_guard, ["releases/v4", "cfg/app.yaml"]);
    for (path, want) in [
        ("releases/v4", true),
        ("releases/v4/app.bin", true),
        ("releases/v4/a/b/c", true),
        ("releases/v42", false),
        ("releases/v42/app.bin", false),
        ("releases/v4-old", false),
        ("releases/v4.bak", false),
        ("releases", false),
        ("", false),
        ("Releases/V4", true),
        ("x/releases/v4", false),
        ("cfg/app.yaml", true),
        ("cfg/app.yaml.swp", false),
    ] {
        let h = handle(1, path, "10.0.0.1", at(-1));
        let want = if want {
            Verdict::Close(Reason::RenameBlocking)
        } else {
            Verdict::Keep(Keep::NotCondemned)
        };
        assert_eq!(verdict_at(&p, &h, t0()), want, "{path:?}");
    }
    assert!(is_within("a/b", "a") && is_within("a", "a") && is_within("a", ""));
    assert!(!is_within("ab", "a") && !is_within("a", "a/b"));
}

#[test]
fn normalize_path_refuses_dot_segments() {
    assert_eq!(normalize_path("/a//b/").unwrap(), "a/b");
    assert_eq!(normalize_path("").unwrap(), "");
    assert_eq!(normalize_path("a/.b/..c").unwrap(), "a/.b/..c");
    for bad in ["..", "a/../b", "./a", "a/.", "/../etc"] {
        assert!(normalize_path(bad).is_err(), "{bad:?}");
    }
}

// ----- compile: every invalid field, at once ------------------------------------------------

fn has_error(err: &share_hygiene::api::InvalidSpec, field: &str, value: &str) -> bool {
    err.0.iter().any(|e| e.field == field && e.value == value)
}

#[test]
fn compile_reports_every_invalid_field_at_once() {
    let mut dup = share("data");
    dup.paths = vec!["ok".into()];
    let mut first = share("data");
    first.paths = vec!["a/../b".into(), "fine/dir".into(), "./x".into()];
    let mut bad_name = share("Bad_Name");
    bad_name.endpoint = "ftp://acct.example".into();
    let mut spaced = share("other");
    spaced.endpoint = "https://acct.example/x y".into();
    let spec = HandlePolicySpec {
        mode: Mode::Enforce,
        interval: "29s999ms".into(),
        shares: vec![first, dup, bad_name, spaced],
        match_: MatchSpec {
            include: vec!["ok/**".into(), "a/b**".into()],
            exclude: vec!["".into()],
        },
        rules: RulesSpec {
            stale: stale("12"),
            orphaned: orphaned("ten minutes"),
            rename_guard: guard(&["releases/../x", "/", "fine"]),
            access_rights: vec![],
        },
        protect: ProtectSpec {
            client_cidrs: vec![
                "10.0.0.0/8".into(),
                "10.0.0.0/33".into(),
                "10.1.2.3".into(),
                "fd00::/129".into(),
                "not-a-cidr".into(),
            ],
            client_names: vec!["ok-*".into(), "".into()],
        },
        limits: LimitsSpec {
            max_closes_per_sweep: 0,
            safety_valve_percent: 101,
        },
    };
    let err = compile(&spec).expect_err("the spec is invalid");
    let want = [
        ("spec.interval", "29s999ms"),
        ("spec.shares[0].paths[0]", "a/../b"),
        ("spec.shares[0].paths[2]", "./x"),
        ("spec.shares[1].share", "data"),
        ("spec.shares[2].endpoint", "ftp://acct.example"),
        ("spec.shares[2].share", "Bad_Name"),
        ("spec.shares[3].endpoint", "https://acct.example/x y"),
        ("spec.match.include[1]", "a/b**"),
        ("spec.match.exclude[0]", ""),
        ("spec.rules.stale.openLongerThan", "12"),
        ("spec.rules.orphaned.gracePeriod", "ten minutes"),
        ("spec.rules.renameGuard.paths[0]", "releases/../x"),
        ("spec.rules.renameGuard.paths[1]", "/"),
        ("spec.protect.clientCIDRs[1]", "10.0.0.0/33"),
        ("spec.protect.clientCIDRs[2]", "10.1.2.3"),
        ("spec.protect.clientCIDRs[3]", "fd00::/129"),
        ("spec.protect.clientCIDRs[4]", "not-a-cidr"),
        ("spec.protect.clientNames[1]", ""),
        ("spec.limits.maxClosesPerSweep", "0"),
        ("spec.limits.safetyValvePercent", "101"),
    ];
    for (field, value) in want {
        assert!(
            has_error(&err, field, value),
            "missing error for {field} = {value:?}; got {:#?}",
            err.0
        );
    }
    // Nothing valid is reported.
    for (field, _) in [
        ("spec.shares[0].paths[1]", ""),
        ("spec.match.include[0]", ""),
        ("spec.rules.renameGuard.paths[2]", ""),
        ("spec.protect.clientCIDRs[0]", ""),
        ("spec.protect.clientNames[0]", ""),
        ("spec.shares[0].share", ""),
    ] {
        assert!(
            !err.0.iter().any(|e| e.field == field),
            "{field} is valid but reported: {:#?}",
            err.0
        );
    }
    assert_eq!(err.0.len(), want.len(), "{:#?}", err.0);
    // Every reason says something, and the message names every field and value.
    let text = err.to_string();
    for e in &err.0 {
        assert!(!e.reason.is_empty(), "{e:?}");
        assert!(text.contains(&e.field) && text.contains(&format!("{:?}", e.value)));
    }
}

#[test]
fn compile_enforces_the_schema_bounds_for_files() {
    use share_hygiene::api::bounds;
    let long = |n: usize| "a".repeat(n);
    let mut one = share("data");
    one.paths = vec![long(bounds::PATH_CHARS + 1)];
    one.endpoint = format!("https://{}", long(bounds::ENDPOINT_CHARS));
    let mut many_paths = share("other");
    many_paths.paths = (0..=bounds::PATHS).map(|i| format!("p{i}")).collect();
    let mut spec = spec_with(RulesSpec {
        stale: stale(&"1h".repeat(bounds::DURATION_CHARS)),
        rename_guard: guard(&[&long(bounds::PATH_CHARS + 1)]),
        ..RulesSpec::default()
    });
    spec.shares = vec![one, many_paths];
    spec.match_.include = vec!["ok/**".into(); bounds::PATTERNS + 1];
    spec.match_.exclude = vec![long(bounds::PATH_CHARS + 1)];
    spec.protect.client_cidrs = vec![long(bounds::CIDR_CHARS + 1)];
    spec.protect.client_names = vec!["backup-*".into(); bounds::PATTERNS + 1];
    spec.limits.max_closes_per_sweep = bounds::MAX_CLOSES + 1;
    let err = compile(&spec).expect_err("every bound is exceeded");
    let reason = |field: &str| {
        err.0
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.reason.clone())
            .unwrap_or_else(|| panic!("no error for {field}: {:#?}", err.0))
    };
    assert_eq!(
        reason("spec.shares[0].paths[0]"),
        "2049 characters; at most 2048 are allowed"
    );
    assert!(reason("spec.shares[0].endpoint").contains("at most 2048"));
    assert_eq!(reason("spec.shares[1].paths"), "at most 64 are allowed");
    assert!(reason("spec.rules.stale.openLongerThan").contains("at most 32"));
    assert!(reason("spec.rules.renameGuard.paths[0]").contains("at most 2048"));
    assert_eq!(reason("spec.match.include"), "at most 256 are allowed");
    assert!(reason("spec.match.exclude[0]").contains("at most 2048"));
    assert!(reason("spec.protect.clientCIDRs[0]").contains("at most 64"));
    assert_eq!(
        reason("spec.protect.clientNames"),
        "at most 256 are allowed"
    );
    assert_eq!(
        reason("spec.limits.maxClosesPerSweep"),
        "must be from 1 to 1000000"
    );
    // An over-long value is shown by its start only.
    assert!(has_error(
        &err,
        "spec.shares[0].paths[0]",
        &format!("{}…", long(64))
    ));
    assert!(has_error(&err, "spec.match.include", "257 entries"));

    let mut too_many = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    too_many.shares = (0..=bounds::SHARES)
        .map(|i| share(&format!("share{i:03}")))
        .collect();
    let err = compile(&too_many).expect_err("65 shares");
    assert!(has_error(&err, "spec.shares", "65 entries"), "{:#?}", err.0);
}

#[test]
fn compile_reports_missing_rules_shares_and_guard_paths() {
    let mut spec = spec_with(RulesSpec::default());
    spec.shares.clear();
    spec.limits.safety_valve_percent = 0;
    spec.limits.max_closes_per_sweep = -5;
    let err = compile(&spec).expect_err("no rules, no shares");
    for field in [
        "spec.rules",
        "spec.shares",
        "spec.limits.safetyValvePercent",
        "spec.limits.maxClosesPerSweep",
    ] {
        assert!(
            err.0.iter().any(|e| e.field == field),
            "{field}: {:#?}",
            err.0
        );
    }
    assert!(has_error(&err, "spec.limits.maxClosesPerSweep", "-5"));
    assert!(has_error(&err, "spec.limits.safetyValvePercent", "0"));

    let empty_guard = spec_with(RulesSpec {
        rename_guard: guard(&[]),
        ..RulesSpec::default()
    });
    let err = compile(&empty_guard).expect_err("a guard with no paths");
    assert!(
        has_error(&err, "spec.rules.renameGuard.paths", "[]"),
        "{:#?}",
        err.0
    );
}

#[test]
fn compile_interval_edges() {
    for (interval, ok) in [
        ("30s", true),
        ("30000ms", true),
        ("1m", true),
        ("29s", false),
        ("0s", false),
        ("", false),
        ("5", false),
        ("5x", false),
        ("-1m", false),
    ] {
        let mut spec = spec_with(RulesSpec {
            stale: stale("1h"),
            ..RulesSpec::default()
        });
        spec.interval = interval.into();
        match compile(&spec) {
            Ok(p) => {
                assert!(ok, "{interval:?} should be refused");
                assert!(p.interval >= std::time::Duration::from_secs(30));
            }
            Err(e) => {
                assert!(!ok, "{interval:?} should compile: {e}");
                assert_eq!(e.0.len(), 1, "one error for {interval:?}: {:#?}", e.0);
                assert_eq!(e.0[0].field, "spec.interval");
                assert_eq!(e.0[0].value, interval);
            }
        }
    }
}

#[test]
fn compile_limit_edges() {
    for (max, pct, ok) in [
        (1, 1, true),
        (1_000_000, 100, true),
        (0, 50, false),
        (1, 0, false),
        (1, 101, false),
        (i32::MIN, 50, false),
    ] {
        let mut spec = spec_with(RulesSpec {
            stale: stale("1h"),
            ..RulesSpec::default()
        });
        spec.limits = LimitsSpec {
            max_closes_per_sweep: max,
            safety_valve_percent: pct,
        };
        match compile(&spec) {
            Ok(p) => {
                assert!(ok, "{max} {pct}");
                assert_eq!(p.limits.max_closes, max as u64);
                assert_eq!(i32::from(p.limits.safety_valve_percent), pct);
            }
            Err(_) => assert!(!ok, "{max} {pct} should compile"),
        }
    }
}

#[test]
fn compile_normalizes_and_dedups_roots() {
    let mut s = share("data");
    s.paths = vec![
        "/apps//web/".into(),
        "apps".into(),
        "apps/web/cache".into(),
        "logs".into(),
        "logs/".into(),
        "logsx".into(),
    ];
    let mut spec = spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    });
    spec.shares = vec![s];
    let p = compile_ok(&spec);
    assert_eq!(p.shares[0].roots, ["apps", "logs", "logsx"]);
    let whole = compile_ok(&spec_with(RulesSpec {
        stale: stale("1h"),
        ..RulesSpec::default()
    }));
    assert_eq!(whole.shares[0].roots, [""]);
}

/// Two entries for the same endpoint and share are refused, however the endpoint is spelled:
/// `https://acct.file.core.windows.net/` and `https://acct.file.core.windows.net` are one
/// endpoint (compile itself trims the trailing `/`).
#[test]
fn compile_refuses_duplicate_shares_despite_a_trailing_slash() {
    for (a, b) in [
        (
            "https://acct.file.core.windows.net",
            "https://acct.file.core.windows.net",
        ),
        (
            "https://acct.file.core.windows.net/",
            "https://acct.file.core.windows.net/",
        ),
        (
            "https://acct.file.core.windows.net",
            "https://acct.file.core.windows.net/",
        ),
        (
            "https://acct.file.core.windows.net/",
            "https://acct.file.core.windows.net",
        ),
    ] {
        let mut s1 = share("data");
        s1.endpoint = a.into();
        let mut s2 = share("data");
        s2.endpoint = b.into();
        let mut spec = spec_with(RulesSpec {
            stale: stale("1h"),
            ..RulesSpec::default()
        });
        spec.shares = vec![s1, s2];
        let result = compile(&spec);
        assert!(
            result
                .as_ref()
                .is_err_and(|e| has_error(e, "spec.shares[1].share", "data")),
            "{a:?} + {b:?} should be refused as duplicates, got {:?}",
            result.map(|p| p.shares)
        );
    }
}

/// Path globs come from policy authors and paths from anyone who can create directories on
/// the share; matching must stay polynomial in both. A glob with six `**` segments against a
/// 100-segment path is a few thousand segment comparisons for a memoized or greedy matcher;
/// plain backtracking tries every way to split the path and takes minutes, blocking the sweep
/// (classification is synchronous) for every handle on such a path.
#[test]
fn path_glob_matching_does_not_blow_up() {
    let glob: PathGlob = format!("{}z", "**/a/".repeat(6)).parse().unwrap();
    let deep = vec!["a"; 100].join("/");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(glob.matches(&deep));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(3)) {
        Ok(matched) => assert!(!matched),
        Err(_) => panic!(
            "matching **/a/**/a/**/a/**/a/**/a/**/a/z against a/a/.../a (100 segments) took \
             more than 3s"
        ),
    }
    // The same shape that does match is found, too.
    let glob: PathGlob = format!("{}z", "**/a/".repeat(6)).parse().unwrap();
    let path = format!("{}/z", ["a"; 10].join("/"));
    assert!(glob.matches(&path));
}
