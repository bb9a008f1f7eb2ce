//! The operations tools the chart and monitoring tests run (helm, promtool), built from their pinned Go modules by
//! `tests/controlplane/ops-tools.sh` once per machine and found in its cache afterwards, once per test process.
//!
//! As for the control plane (`tools.rs`), a script that fails fails every test that needs it, with the script's
//! messages: a missing tool is a broken test environment, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The directory holding `helm` and `promtool`: builds them (cold: minutes) or finds them (warm: instant). Tests
/// calling this concurrently wait for the one build.
pub fn ops_tools_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/ops-tools.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            // Progress and errors straight to the terminal, uncaptured, so a cold build shows progress.
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} failed ({}); its messages are printed above. The tests need helm and promtool: fix the cause.",
                script.display(),
                output.status
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = PathBuf::from(stdout.trim());
        for tool in ["helm", "promtool"] {
            if !dir.join(tool).is_file() {
                return Err(format!("{} printed {stdout:?}, which holds no {tool}", script.display()));
            }
        }
        Ok(dir)
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
