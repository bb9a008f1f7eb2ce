//! The real programs the fixtures run, obtained through the repository's setup scripts, once per test process.
//!
//! The scripts are no-ops once their cache is warm (see their headers), so a fresh clone on a fresh machine gets
//! everything on its first test run with no manual step. When a script fails, every test that needs it fails
//! with the script's message: a missing control plane or Spark is a broken test environment, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Where `tests/controlplane/build.sh` put etcd, kube-apiserver and kube-scheduler.
pub struct ControlPlaneBinaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_scheduler: PathBuf,
}

/// Builds (cold: minutes) or finds (warm: instant) the control-plane binaries. Tests calling this concurrently
/// wait for the one build.
pub fn control_plane_binaries() -> &'static ControlPlaneBinaries {
    static BINARIES: OnceLock<Result<ControlPlaneBinaries, String>> = OnceLock::new();
    let result = BINARIES.get_or_init(|| {
        let dir = run_setup_script("tests/controlplane/build.sh")?;
        let binaries = ControlPlaneBinaries {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_scheduler: dir.join("kube-scheduler"),
        };
        for binary in [&binaries.etcd, &binaries.kube_apiserver, &binaries.kube_scheduler] {
            if !binary.is_file() {
                return Err(format!("build.sh reported {} but {} is missing", dir.display(), binary.display()));
            }
        }
        Ok(binaries)
    });
    result.as_ref().unwrap_or_else(|message| panic!("{message}"))
}

/// The pyspark versions `tests/controlplane/spark-setup.sh` pins (3.5 and 4.x); the first is the default.
pub const PYSPARK_VERSIONS: [&str; 2] = ["3.5.9", "4.1.1"];

/// Installs (cold: tens of seconds) or finds the default pinned pyspark; returns its virtualenv, which holds
/// `bin/spark-submit` and the `bin/python` it must run the application with.
pub fn pyspark_venv() -> &'static Path {
    pyspark_venv_of(PYSPARK_VERSIONS[0])
}

/// [`pyspark_venv`] for one of [`PYSPARK_VERSIONS`].
pub fn pyspark_venv_of(version: &str) -> &'static Path {
    static VENVS: std::sync::Mutex<Vec<(String, &'static Result<PathBuf, String>)>> = std::sync::Mutex::new(Vec::new());
    let mut venvs = VENVS.lock().unwrap_or_else(|e| e.into_inner());
    let result = match venvs.iter().find(|(v, _)| v == version) {
        Some((_, result)) => *result,
        None => {
            let result: &'static _ =
                Box::leak(Box::new(run_setup_script_with("tests/controlplane/spark-setup.sh", &[version])));
            venvs.push((version.to_owned(), result));
            result
        }
    };
    result.as_ref().unwrap_or_else(|message| panic!("{message}"))
}

/// The directory `tests/controlplane/autoscaling.sh` fills: `karpenter-kwok` (Karpenter with its KWOK cloud
/// provider), `kwok` (the KWOK controller), `crds/` (Karpenter's CRDs and KWOKNodeClass) and `kwok-stages/` (KWOK's
/// Stage objects). Builds them (cold: about 11 minutes on 2 cores, plus the Go 1.27 toolchain Karpenter needs) or
/// finds them (warm: instant). Tests calling this concurrently wait for the one build; a failed build fails them.
pub fn autoscaling_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = run_setup_script("tests/controlplane/autoscaling.sh")?;
        let needed = ["karpenter-kwok", "kwok", "crds/karpenter.sh_nodepools.yaml", "kwok-stages/pod-ready.yaml"];
        match needed.into_iter().find(|file| !dir.join(file).is_file()) {
            Some(file) => {
                Err(format!("tests/controlplane/autoscaling.sh printed {}, which holds no {file}", dir.display()))
            }
            None => Ok(dir),
        }
    })
    .as_deref()
    .unwrap_or_else(|message| panic!("{message}"))
}

/// Runs a setup script of this repository and returns the directory it prints as its only stdout line. Its
/// stderr (progress, errors) goes straight to the terminal, uncaptured, so a long cold build shows progress.
pub(super) fn run_setup_script(relative_path: &str) -> Result<PathBuf, String> {
    run_setup_script_with(relative_path, &[])
}

fn run_setup_script_with(relative_path: &str, args: &[&str]) -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative_path);
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}); its messages are printed above. The tests need what it provides: fix the cause.",
            script.display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(stdout.trim());
    if !dir.is_dir() {
        return Err(format!("{} printed {stdout:?}, which is not a directory", script.display()));
    }
    Ok(dir)
}
