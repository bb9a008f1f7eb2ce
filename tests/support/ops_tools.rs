//! The operations tools the chart and monitoring tests run (helm, promtool), built from their pinned Go modules by
//! `tests/controlplane/ops-tools.sh` once per machine and found in its cache afterwards, once per test process.
//!
//! As for the control plane (`tools.rs`), a script that fails fails every test that needs it, with the script's
//! messages: a missing tool is a broken test environment, never a skip.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::tools::run_setup_script;

/// The directory holding `helm` and `promtool`: builds them (cold: minutes) or finds them (warm: instant). Tests
/// calling this concurrently wait for the one build.
pub fn ops_tools_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = run_setup_script("tests/controlplane/ops-tools.sh")?;
        match ["helm", "promtool"].into_iter().find(|tool| !dir.join(tool).is_file()) {
            Some(tool) => {
                Err(format!("tests/controlplane/ops-tools.sh printed {}, which holds no {tool}", dir.display()))
            }
            None => Ok(dir),
        }
    })
    .as_deref()
    .unwrap_or_else(|message| panic!("{message}"))
}

/// The `helm` binary (v4, see tests/controlplane/helm/go.mod).
pub fn helm_bin() -> PathBuf {
    ops_tools_dir().join("helm")
}

/// The `promtool` binary (see tests/controlplane/promtool/go.mod).
pub fn promtool_bin() -> PathBuf {
    ops_tools_dir().join("promtool")
}
