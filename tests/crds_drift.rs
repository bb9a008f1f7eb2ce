//! The checked-in CRDs must be exactly what the Rust types generate: deploy/ is what operators apply, and the Helm
//! chart's crds/ is what `helm install` creates.

use std::path::Path;

/// Panics when the file at `relative` (from the repository root) is not exactly `muster crds`' output.
fn assert_generated(relative: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = muster::api::crds_yaml();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "{relative} is out of date with src/api (first difference at line {}).\n\
             Regenerate it with:\n\n    cargo run -- crds > {relative}\n",
            first_difference + 1
        );
    }
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    assert_generated("deploy/crds/muster.yaml");
}

/// Helm installs the files of a chart's crds/ directory as they are (never templated): the same CRDs.
#[test]
fn the_helm_charts_crds_match_the_rust_types() {
    assert_generated("deploy/helm/muster/crds/muster.yaml");
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/muster/crds");
    let files: Vec<String> = std::fs::read_dir(&crds)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", crds.display()))
        .map(|entry| entry.expect("a readable directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["muster.yaml"], "the chart's crds/ holds muster's CRDs alone");
}
