//! `share-hygiene sweep -f` through the real binary on the embedded quickstart: a policy with a
//! misspelled or unknown field is refused with exit code 1 and a message naming the field, its
//! place and the allowed names, and nothing is closed. Spelled right, the same policy closes
//! handles and keeps the protected backup VM's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The quickstart's policy with `from` replaced by `to`, written to a file of its own.
fn policy(name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo("deploy/examples/quickstart.yaml")).unwrap();
    assert!(
        text.contains(from),
        "{from:?} is not in the quickstart policy"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sweep_strict_policy");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

/// The quickstart's sweep over `policy`, with the JSON report.
fn sweep(policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
        .arg("sweep")
        .arg("-f")
        .arg(policy)
        .arg("--embedded")
        .arg(repo("deploy/examples/demo-seed.yaml"))
        .arg("--cluster-facts")
        .arg(repo("deploy/examples/cluster-facts.yaml"))
        .args(["-o", "json"])
        .output()
        .unwrap()
}

/// Asserts that the sweep refused the policy before it started anything.
fn assert_refused(out: &Output, want: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for w in want {
        assert!(stderr.contains(w), "missing {w:?} in: {stderr}");
    }
    // No report, and the embedded service never started: nothing can have been closed.
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("embedded handle service on"), "{stderr}");
    stderr
}

#[test]
fn a_misspelled_client_cidrs_is_refused_and_nothing_is_closed() {
    let path = policy("clientCidrs.yaml", "clientCIDRs:", "clientCidrs:");
    let stderr = assert_refused(
        &sweep(&path),
        &[
            "spec.protect.clientCidrs (line 34, column 5)",
            "unknown field `clientCidrs`, expected one of clientCIDRs, clientNames",
        ],
    );
    assert!(
        stderr.contains("clientCidrs.yaml"),
        "names the file: {stderr}"
    );
}

#[test]
fn every_unknown_field_or_wrong_type_of_object_is_refused() {
    for (name, from, to, want) in [
        (
            "clientname.yaml",
            "clientNames:",
            "clientname:",
            "spec.protect.clientname (line 35, column 5): unknown field `clientname`, expected one of clientCIDRs, clientNames",
        ),
        (
            "olderThan.yaml",
            "openLongerThan:",
            "olderThan:",
            "spec.rules.stale.olderThan (line 26, column 7): unknown field `olderThan`, expected one of openLongerThan",
        ),
        (
            "spec-key.yaml",
            "  mode: Enforce",
            "  mode: Enforce\n  dryrun: true",
            "spec.dryrun (line 11, column 3): unknown field `dryrun`, expected one of mode, interval, shares, match, rules, protect, limits",
        ),
        (
            "top-level-key.yaml",
            "kind: HandlePolicy",
            "kind: HandlePolicy\nspecs: {}",
            "specs (line 6, column 1): unknown field `specs`, expected one of apiVersion, kind, metadata, spec, status",
        ),
        (
            "kind.yaml",
            "kind: HandlePolicy",
            "kind: Deployment",
            "kind (line 5, column 7): \"Deployment\" is not a HandlePolicy's; expected kind: HandlePolicy",
        ),
        (
            "api-version.yaml",
            "apiVersion: sharehygiene.io/v1alpha1",
            "apiVersion: apps/v1",
            "apiVersion (line 4, column 13): \"apps/v1\" is not a HandlePolicy's; expected apiVersion: sharehygiene.io/v1alpha1",
        ),
    ] {
        assert_refused(&sweep(&policy(name, from, to)), &[want]);
    }
}

#[test]
fn spelled_right_the_quickstart_closes_and_keeps_the_backup_vm() {
    let path = policy("quickstart.yaml", "kind:", "kind:");
    let out = sweep(&path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let decisions = report["decisions"].as_array().unwrap();
    assert!(
        decisions.iter().any(|d| d["outcome"] == "Closed"),
        "the control sweep closes something"
    );
    assert!(
        decisions
            .iter()
            .all(|d| !d["clientIp"].as_str().unwrap().starts_with("10.50.0.10:")),
        "the protected backup VM's handles are never condemned"
    );
}
