//! The checked-in CRDs must be exactly what the Rust types generate: deploy/ is what operators apply.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds/muster.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = muster::api::crds_yaml();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "deploy/crds/muster.yaml is out of date with src/api (first difference at line {}).\n\
             Regenerate it with:\n\n    cargo run -- crds > deploy/crds/muster.yaml\n",
            first_difference + 1
        );
    }
}
