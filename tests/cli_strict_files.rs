//! The real binary refuses an unknown or misspelled field in every file it reads, with exit
//! code 1 and a message naming the file, the field and the allowed names.
//!
//! `sweep -f` on the embedded quickstart: a policy with a misspelled field closes nothing;
//! spelled right, the same policy closes handles and keeps the protected backup VM's. The
//! `--secrets` and `--credentials-file` files refuse unknown keys without showing a secret.

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
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_strict_files");
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

/// Writes `text` to a file of this test's directory.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_strict_files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const KEY: &str = "c2VjcmV0LWtleS1ieXRlcw==";

#[test]
fn a_misspelled_key_of_the_secrets_file_is_refused_before_any_request() {
    // The endpoint is never contacted: the secrets file is refused first.
    let policy = policy(
        "secrets-policy.yaml",
        "https://teamfiles.file.core.windows.net",
        "http://127.0.0.1:9/teamfiles",
    );
    let secrets = file(
        "secrets.yaml",
        &format!("teamfiles-key:\n  accountName: teamfiles\n  acountKey: {KEY}\n"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
        .arg("sweep")
        .arg("-f")
        .arg(&policy)
        .arg("--secrets")
        .arg(&secrets)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("secrets.yaml: teamfiles-key.acountKey: unknown key, expected one of accountName, accountKey, sasToken, connectionString"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY), "the key is never shown: {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_misspelled_key_of_the_credentials_file_is_refused_naming_the_file() {
    let creds = file("credentials.yaml", &format!("acountKey: {KEY}\n"));
    let out = Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
        .args([
            "handles",
            "list",
            "--share-url",
            "http://127.0.0.1:9/acct/share",
        ])
        .arg("--credentials-file")
        .arg(&creds)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("credentials.yaml"), "{stderr}");
    assert!(stderr.contains("unknown key \"acountKey\""), "{stderr}");
    assert!(!stderr.contains(KEY), "the key is never shown: {stderr}");

    // A YAML error in the file names its line and never quotes the file's lines.
    let creds = file(
        "broken.yaml",
        &format!("accountKey: {KEY}\naccountKey: {KEY}\n"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
        .args([
            "handles",
            "list",
            "--share-url",
            "http://127.0.0.1:9/acct/share",
        ])
        .arg("--credentials-file")
        .arg(&creds)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("broken.yaml (line 2, column 1): duplicate"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY), "the key is never shown: {stderr}");
}
