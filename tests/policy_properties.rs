//! Property tests of the pure engine over random directory trees, handles, rules, cluster
//! facts and limits: classification agrees with an independent reference model (so nothing
//! out of scope or protected is condemned), is deterministic and reads no clock; plans never
//! close in dry run, respect the cap and the safety valve, and use wildcards only where a
//! rename guard's fully observed subtree holds nothing kept.

mod common;

use proptest::prelude::*;

use common::scenario::*;
use common::*;
use share_hygiene::api::{AccessRight, Mode};
use share_hygiene::policy::{
    ClosePlan, Condemned, Disposition, Facts, GuardStat, Keep, Limits, Policy, Reason, SkipCause,
    Verdict, classify, in_scope, is_protected, is_within, plan,
};
use share_hygiene::protocol::{AccessRights, Handle, HandleId};

// ----- building engine inputs and the reference model from a scenario ------------------------

struct Built {
    policy: Policy,
    handles: Vec<Handle>,
    model: Model,
}

/// The scenario's handles as List Handles would report them, with the model.
fn build(s: &Scenario) -> Built {
    let model = model(s);
    let handles = s
        .handles
        .iter()
        .zip(&model.refs)
        .enumerate()
        .map(|(k, (g, r))| Handle {
            handle_id: HandleId(1000 + k as u64),
            path: r.path.clone(),
            file_id: 1 + (g.node % model.nodes.len()) as u64,
            parent_id: 0,
            session_id: g.client as u64,
            client_ip: r.client.raw.clone(),
            client_name: r.client.name.clone(),
            open_time: ts(r.open),
            last_reconnect_time: r.reconnect.map(ts),
            access_rights: g.access.map(AccessRights::from_bits),
        })
        .collect();
    Built {
        policy: model.policy.clone(),
        handles,
        model,
    }
}

impl Built {
    fn facts(&self) -> Facts<'_> {
        Facts {
            cluster: self.model.cluster.as_ref(),
            orphans: &self.model.ledger,
        }
    }
}

fn label(v: Verdict) -> Result<&'static str, &'static str> {
    match v {
        Verdict::Close(r) => Ok(r.as_str()),
        Verdict::Keep(k) => Err(k.as_str()),
    }
}

fn reason_of(v: Verdict) -> Option<Reason> {
    match v {
        Verdict::Close(r) => Some(r),
        Verdict::Keep(_) => None,
    }
}

/// Classifies every handle, and builds the plan's inputs as a sweep over the whole share would.
fn classify_all(b: &Built) -> (Vec<Verdict>, Vec<Condemned>, Vec<usize>, Vec<GuardStat>) {
    let facts = b.facts();
    let verdicts: Vec<Verdict> = b
        .handles
        .iter()
        .map(|h| classify(h, &b.policy.rules, &facts, b.model.now))
        .collect();
    let mut condemned = Vec::new();
    let mut index = Vec::new();
    for (i, (h, v)) in b.handles.iter().zip(&verdicts).enumerate() {
        if let Some(reason) = reason_of(*v) {
            condemned.push(Condemned {
                share: 0,
                id: h.handle_id,
                path: h.path.clone(),
                held_since: h.held_since(),
                reason,
            });
            index.push(i);
        }
    }
    let guards = b
        .policy
        .rules
        .rename_guard
        .iter()
        .map(|g| GuardStat {
            share: 0,
            path: g.clone(),
            fully_observed: true,
            directory: b
                .handles
                .iter()
                .any(|h| h.path.len() > g.len() && is_within(&h.path, g)),
            kept: b
                .handles
                .iter()
                .zip(&verdicts)
                .filter(|(h, v)| matches!(v, Verdict::Keep(_)) && is_within(&h.path, g))
                .count() as u64,
        })
        .collect();
    (verdicts, condemned, index, guards)
}

// ----- plan-level checks shared by the properties --------------------------------------------

fn check_plan(
    mode: Mode,
    observed: u64,
    condemned: &[Condemned],
    guards: &[GuardStat],
    limits: Limits,
    p: &ClosePlan,
) -> Result<(), TestCaseError> {
    let n = condemned.len() as u64;
    prop_assert_eq!(p.dispositions.len(), condemned.len());
    // Cap.
    prop_assert!(
        p.closes() <= limits.max_closes,
        "{} > cap {}",
        p.closes(),
        limits.max_closes
    );
    // Safety valve.
    let trips = n * 100 > observed * u64::from(limits.safety_valve_percent);
    if trips {
        prop_assert_eq!(p.closes(), 0);
        prop_assert!(p.wildcards.is_empty());
        let v = p.valve.expect("the valve trip is reported");
        prop_assert_eq!((v.condemned, v.observed), (n, observed));
        prop_assert_eq!(v.limit_percent, limits.safety_valve_percent);
        prop_assert!(
            p.dispositions
                .iter()
                .all(|d| *d == Disposition::Skip(SkipCause::SafetyValve))
        );
    } else {
        prop_assert!(p.valve.is_none());
        prop_assert!(
            !p.dispositions
                .contains(&Disposition::Skip(SkipCause::SafetyValve))
        );
        // Everything admitted up to the cap.
        let admitted = p
            .dispositions
            .iter()
            .filter(|d| !matches!(d, Disposition::Skip(SkipCause::Limit)))
            .count() as u64;
        prop_assert_eq!(admitted, n.min(limits.max_closes));
        // The cap keeps the most urgent: nothing skipped for the limit outranks an admitted one.
        let key = |c: &Condemned| (c.reason, c.held_since, c.id);
        let worst_admitted = condemned
            .iter()
            .zip(&p.dispositions)
            .filter(|(_, d)| !matches!(d, Disposition::Skip(SkipCause::Limit)))
            .map(|(c, _)| key(c))
            .max();
        let best_skipped = condemned
            .iter()
            .zip(&p.dispositions)
            .filter(|(_, d)| matches!(d, Disposition::Skip(SkipCause::Limit)))
            .map(|(c, _)| key(c))
            .min();
        if let (Some(a), Some(s)) = (worst_admitted, best_skipped) {
            prop_assert!(a < s, "admitted {:?} ranks after skipped {:?}", a, s);
        }
    }
    // Dry run: no Close or Wildcard disposition, no wildcard at all.
    if mode == Mode::DryRun {
        prop_assert!(p.wildcards.is_empty());
        prop_assert!(
            p.dispositions
                .iter()
                .all(|d| matches!(d, Disposition::Skip(_)))
        );
        prop_assert!(
            !p.dispositions
                .contains(&Disposition::Skip(SkipCause::Limit))
                || n > limits.max_closes
        );
    } else {
        prop_assert!(
            !p.dispositions
                .contains(&Disposition::Skip(SkipCause::DryRun))
        );
    }
    // Wildcards.
    for (w_ix, w) in p.wildcards.iter().enumerate() {
        let g = guards
            .iter()
            .find(|g| g.share == w.share && g.path == w.path && g.fully_observed && g.kept == 0);
        prop_assert!(
            g.is_some(),
            "wildcard {:?} has no fully observed, unkept guard",
            w
        );
        let g = g.unwrap();
        prop_assert_eq!(w.recursive, g.directory);
        let members: Vec<usize> = (0..condemned.len())
            .filter(|&i| p.dispositions[i] == Disposition::Wildcard(w_ix))
            .collect();
        prop_assert!(!members.is_empty());
        prop_assert_eq!(w.covers, members.len() as u64);
        for &i in &members {
            prop_assert_eq!(condemned[i].reason, Reason::RenameBlocking);
            prop_assert_eq!(condemned[i].share, w.share);
            prop_assert!(is_within(&condemned[i].path, &w.path));
        }
        // Nothing condemned under it is left out (skipped, or closed separately by id).
        for (c, d) in condemned.iter().zip(&p.dispositions) {
            if c.share == w.share && is_within(&c.path, &w.path) {
                prop_assert!(
                    matches!(d, Disposition::Wildcard(_)),
                    "{:?} lies under wildcard {:?} but is {:?}",
                    c,
                    w,
                    d
                );
            }
        }
    }
    // Every Wildcard disposition points at a wildcard.
    for d in &p.dispositions {
        if let Disposition::Wildcard(i) = d {
            prop_assert!(*i < p.wildcards.len());
        }
    }
    Ok(())
}

// ----- properties ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(384))]

    /// Classification equals the reference model on every handle, so nothing out of scope or
    /// protected is ever condemned, and every rule's clock behaves as documented.
    #[test]
    fn classify_agrees_with_reference_model(s in arb_scenario()) {
        let b = build(&s);
        let facts = b.facts();
        for (i, h) in b.handles.iter().enumerate() {
            let got = classify(h, &b.policy.rules, &facts, b.model.now);
            let want = b.model.expected(i);
            prop_assert_eq!(label(got), want, "handle {:?}", h);
            if let Verdict::Close(_) = got {
                prop_assert!(in_scope(&h.path, &b.policy.rules));
                prop_assert!(!is_protected(h, &b.policy.rules));
            }
            prop_assert_eq!(
                got == Verdict::Keep(Keep::Protected),
                in_scope(&h.path, &b.policy.rules) && is_protected(h, &b.policy.rules)
            );
        }
    }

    /// The same inputs give the same verdict, whatever else was classified before, and the
    /// verdict depends on `now` alone (never the clock): classifying at `now` in 1971 or 2099
    /// against the same relative times gives the same answers.
    #[test]
    fn classify_is_deterministic_and_clock_free(s in arb_scenario(), shift in -1_000_000_000i64..1_000_000_000) {
        let b = build(&s);
        let facts = b.facts();
        let now = b.model.now;
        let first: Vec<Verdict> =
            b.handles.iter().map(|h| classify(h, &b.policy.rules, &facts, now)).collect();
        let again: Vec<Verdict> =
            b.handles.iter().rev().map(|h| classify(h, &b.policy.rules, &facts, now)).collect();
        let again: Vec<Verdict> = again.into_iter().rev().collect();
        prop_assert_eq!(&first, &again);
        let cloned_rules = b.policy.rules.clone();
        let cloned_ledger = b.model.ledger.clone();
        let facts2 = Facts { cluster: b.model.cluster.as_ref(), orphans: &cloned_ledger };
        for (h, v) in b.handles.iter().zip(&first) {
            prop_assert_eq!(classify(h, &cloned_rules, &facts2, now), *v);
        }
        // Shift every time (handles, ledger, now) by the same amount: same verdicts.
        let mut shifted = s.clone();
        shifted.now = (s.now + shift).clamp(31_536_000, 4_102_444_800);
        let bs = build(&shifted);
        let facts3 = bs.facts();
        for (h, v) in bs.handles.iter().zip(&first) {
            prop_assert_eq!(classify(h, &bs.policy.rules, &facts3, bs.model.now), *v, "{:?}", h);
        }
    }

    /// From random trees to plans: nothing out of scope or protected is planned; dry run plans
    /// nothing; the cap and the valve hold; wildcards only where a guard's subtree holds
    /// nothing kept.
    #[test]
    fn plans_from_classified_trees_keep_the_invariants(s in arb_scenario()) {
        let b = build(&s);
        let (verdicts, condemned, index, guards) = classify_all(&b);
        let observed = b.handles.len() as u64;
        let p = plan(b.policy.mode, observed, &condemned, &guards, b.policy.limits);
        check_plan(b.policy.mode, observed, &condemned, &guards, b.policy.limits, &p)?;
        for (k, d) in p.dispositions.iter().enumerate() {
            if !matches!(d, Disposition::Skip(_)) {
                let i = index[k];
                let want = b.model.expected(i);
                prop_assert!(want.is_ok(), "planned {:?} but the model keeps it: {:?}", b.handles[i], want);
                prop_assert!(matches!(verdicts[i], Verdict::Close(_)));
            }
        }
        // The same inputs in the other mode: the same handles are admitted.
        let other = if b.policy.mode == Mode::DryRun { Mode::Enforce } else { Mode::DryRun };
        let q = plan(other, observed, &condemned, &guards, b.policy.limits);
        check_plan(other, observed, &condemned, &guards, b.policy.limits, &q)?;
        for (a, c) in p.dispositions.iter().zip(&q.dispositions) {
            let admitted = |d: &Disposition| !matches!(d, Disposition::Skip(SkipCause::Limit | SkipCause::SafetyValve));
            prop_assert_eq!(admitted(a), admitted(c));
        }
        // Deterministic.
        prop_assert_eq!(plan(b.policy.mode, observed, &condemned, &guards, b.policy.limits), p);
    }

    /// Plans over arbitrary condemned sets and guard statistics (several shares, guards that
    /// are kept, partly observed or nested): the same invariants.
    #[test]
    fn plans_over_arbitrary_inputs_keep_the_invariants(
        items in prop::collection::vec(
            (0..2usize, arb_path(), prop::sample::select(Reason::ALL.to_vec()), -100i64..100),
            0..40,
        ),
        guards in prop::collection::vec(
            (0..2usize, arb_path(), any::<bool>(), any::<bool>(), prop_oneof![3 => Just(0u64), 1 => 1..3u64]),
            0..4,
        ),
        extra_observed in 0u64..60,
        max_closes in prop_oneof![1u64..5, 1u64..50, Just(1_000_000)],
        valve in 1u8..=100,
        enforce in any::<bool>(),
    ) {
        let condemned: Vec<Condemned> = items
            .iter()
            .enumerate()
            .map(|(i, (share, path, reason, held))| Condemned {
                share: *share,
                id: HandleId(i as u64 * 7 % 41),
                path: path.clone(),
                held_since: at(*held),
                reason: *reason,
            })
            .collect();
        let guards: Vec<GuardStat> = guards
            .into_iter()
            .map(|(share, path, fully_observed, directory, kept)| GuardStat {
                share, path, fully_observed, directory, kept,
            })
            .collect();
        let observed = condemned.len() as u64 + extra_observed;
        let limits = Limits { max_closes, safety_valve_percent: valve };
        let mode = if enforce { Mode::Enforce } else { Mode::DryRun };
        let p = plan(mode, observed, &condemned, &guards, limits);
        check_plan(mode, observed, &condemned, &guards, limits, &p)?;
    }
}

// ----- fixed-seed regression cases for the plan -------------------------------------------------

#[test]
fn valve_boundary_is_strictly_more_than() {
    let limits = Limits {
        max_closes: 1000,
        safety_valve_percent: 50,
    };
    let condemned: Vec<Condemned> = (0..5)
        .map(|i| Condemned {
            share: 0,
            id: HandleId(i),
            path: format!("f{i}"),
            held_since: at(-1000),
            reason: Reason::Stale,
        })
        .collect();
    // 5 of 10 is exactly 50%: allowed.
    let p = plan(Mode::Enforce, 10, &condemned, &[], limits);
    assert!(p.valve.is_none());
    assert_eq!(p.closes(), 5);
    // 5 of 9 is more than 50%: none close.
    let p = plan(Mode::Enforce, 9, &condemned, &[], limits);
    assert_eq!(p.closes(), 0);
    assert_eq!(
        p.valve.map(|v| (v.condemned, v.observed, v.limit_percent)),
        Some((5, 9, 50))
    );
    assert_eq!(p.skipped().get(&SkipCause::SafetyValve), Some(&5));
    // 100% turns the valve off.
    let off = Limits {
        safety_valve_percent: 100,
        ..limits
    };
    assert_eq!(plan(Mode::Enforce, 5, &condemned, &[], off).closes(), 5);
    // Nothing condemned: an empty plan, no valve, even with nothing observed.
    assert_eq!(
        plan(Mode::Enforce, 0, &[], &[], limits),
        ClosePlan::default()
    );
}

#[test]
fn wildcard_needs_every_member_admitted_and_nothing_kept() {
    let mk = |i: u64, path: &str, reason: Reason| Condemned {
        share: 0,
        id: HandleId(i),
        path: path.into(),
        held_since: at(-(i as i64)),
        reason,
    };
    let condemned = vec![
        mk(1, "rel/v4/a", Reason::RenameBlocking),
        mk(2, "rel/v4/b", Reason::RenameBlocking),
        mk(3, "rel/v42/c", Reason::Stale),
    ];
    let g = |kept: u64, fully_observed: bool| GuardStat {
        share: 0,
        path: "rel/v4".into(),
        fully_observed,
        directory: true,
        kept,
    };
    let roomy = Limits {
        max_closes: 100,
        safety_valve_percent: 100,
    };
    let p = plan(Mode::Enforce, 3, &condemned, &[g(0, true)], roomy);
    assert_eq!(p.wildcards.len(), 1);
    assert_eq!(p.wildcards[0].path, "rel/v4");
    assert!(p.wildcards[0].recursive);
    assert_eq!(p.wildcards[0].covers, 2);
    assert_eq!(
        p.dispositions,
        [
            Disposition::Wildcard(0),
            Disposition::Wildcard(0),
            Disposition::Close
        ]
    );
    // Something kept under it, or not fully observed: per-handle closes.
    for guard in [g(1, true), g(0, false)] {
        let p = plan(Mode::Enforce, 3, &condemned, &[guard], roomy);
        assert!(p.wildcards.is_empty());
        assert_eq!(p.dispositions, [Disposition::Close; 3]);
    }
    // A cap that admits only one of the two members: no wildcard.
    let tight = Limits {
        max_closes: 1,
        ..roomy
    };
    let p = plan(Mode::Enforce, 3, &condemned, &[g(0, true)], tight);
    assert!(p.wildcards.is_empty());
    assert_eq!(p.closes(), 1);
    // Dry run: never a wildcard.
    let p = plan(Mode::DryRun, 3, &condemned, &[g(0, true)], roomy);
    assert!(p.wildcards.is_empty());
    assert_eq!(p.skipped().get(&SkipCause::DryRun), Some(&3));
}

#[test]
fn nested_guards_use_the_outermost_qualifying_wildcard() {
    let mk = |i: u64, path: &str| Condemned {
        share: 0,
        id: HandleId(i),
        path: path.into(),
        held_since: at(-10),
        reason: Reason::RenameBlocking,
    };
    let condemned = vec![mk(1, "a/b/c"), mk(2, "a/x")];
    let stat = |path: &str, kept: u64| GuardStat {
        share: 0,
        path: path.into(),
        fully_observed: true,
        directory: true,
        kept,
    };
    let roomy = Limits {
        max_closes: 100,
        safety_valve_percent: 100,
    };
    let p = plan(
        Mode::Enforce,
        2,
        &condemned,
        &[stat("a/b", 0), stat("a", 0)],
        roomy,
    );
    assert_eq!(p.wildcards.len(), 1);
    assert_eq!(p.wildcards[0].path, "a");
    assert_eq!(p.wildcards[0].covers, 2);
    // The outer guard has something kept: the inner one still gets its wildcard.
    let p = plan(
        Mode::Enforce,
        3,
        &condemned,
        &[stat("a/b", 0), stat("a", 1)],
        roomy,
    );
    assert_eq!(p.wildcards.len(), 1);
    assert_eq!(p.wildcards[0].path, "a/b");
    assert_eq!(
        p.dispositions,
        [Disposition::Wildcard(0), Disposition::Close]
    );
    // Same guard path on another share does not cover this share's handles.
    let mut other = stat("a", 0);
    other.share = 1;
    let p = plan(Mode::Enforce, 2, &condemned, &[other], roomy);
    assert!(p.wildcards.is_empty());
}

/// Uses `AccessRights` so the import of the bit helper is exercised on a fixed case too.
#[test]
fn reference_rights_bits_match_the_library() {
    assert_eq!(
        rights(&[AccessRight::Read, AccessRight::Delete]),
        AccessRights::READ.union(AccessRights::DELETE)
    );
}
