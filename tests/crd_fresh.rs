//! `crds/handlepolicy.yaml` is exactly what `share-hygiene crd` prints: CI fails when the CRD
//! types change and the committed file is not regenerated (`share-hygiene crd > crds/handlepolicy.yaml`).

#[test]
fn committed_crd_matches_the_types() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/handlepolicy.yaml"
    ))
    .expect("crds/handlepolicy.yaml is committed");
    let generated = share_hygiene::api::crd_yaml().expect("the CRD serializes");
    assert!(
        committed == generated,
        "crds/handlepolicy.yaml is stale: run `cargo run -- crd > crds/handlepolicy.yaml` (and `scripts/check-chart.sh --update` for the chart's copy)"
    );
}

#[test]
fn the_binary_prints_the_same_crd() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
        .arg("crd")
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        share_hygiene::api::crd_yaml().unwrap()
    );
}
