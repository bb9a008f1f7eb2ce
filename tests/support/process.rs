//! Child processes the fixtures own: output captured to a log file, never outliving the test.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process started in its own process group, with stdout and stderr written to `<log_dir>/<name>.log`.
///
/// It receives SIGKILL if the thread that spawned it exits (PR_SET_PDEATHSIG), so a test process killed by a
/// timeout or ^C leaves no etcd or JVM behind. PR_SET_PDEATHSIG follows the spawning *thread*, not the process:
/// spawn from the thread running the test body (as `#[tokio::test]` does: its future runs on the test's thread),
/// never from `spawn_blocking`, whose threads exit after a few idle seconds.
pub struct ManagedProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ManagedProcess {
    /// Starts `command`; panics (failing the test) if it cannot be started.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> ManagedProcess {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_for_stderr =
            log.try_clone().unwrap_or_else(|e| panic!("cannot duplicate the handle of {}: {e}", log_path.display()));
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            // Its own group, so stopping it also stops whatever it started (spark-submit's JVM starts Python).
            .process_group(0);
        let test_process = std::process::id();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system calls.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The test process may have died before prctl took effect; then nobody would ever kill us.
                if libc::getppid() as u32 != test_process {
                    return Err(io::Error::other("the test process exited during spawn"));
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", command.get_program().display()));
        ManagedProcess { name: name.to_owned(), child, log_path }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap_or_else(|e| panic!("cannot query the state of {}: {e}", self.name))
    }

    /// The last `lines` lines of the process's output (the log is read from its last 64 KiB).
    pub fn log_tail(&self, lines: usize) -> String {
        log_file_tail(&self.log_path, lines)
    }

    /// The whole log, for tests that look for a line in it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL to the whole process group at once, no grace (a crash, an OOM kill, a lost machine), then reaps
    /// the leader. Returns how it ended (already exited: that status).
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exit_status() {
            return status;
        }
        self.signal_group(libc::SIGKILL);
        self.child.wait().unwrap_or_else(|e| panic!("cannot reap {}: {e}", self.name))
    }

    fn signal_group(&self, signal: libc::c_int) {
        // The group id is the leader's pid. It stays reserved while any member lives, even after the leader has
        // been reaped, so this also reaches orphaned grandchildren; ESRCH (nobody left) is fine.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), signal);
        }
    }
}

/// The last `lines` lines of a log file (read from its last 64 KiB); empty when it cannot be read. Also for the
/// logs of earlier incarnations of a restarted process.
pub fn log_file_tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops every process: SIGTERM to each process group at once, up to `grace` for all leaders to exit, then
/// SIGKILL to every group (which also removes stragglers whose leader exited), and reaps the leaders.
pub fn stop_all(processes: &mut [ManagedProcess], grace: Duration) {
    for process in processes.iter_mut() {
        if process.exit_status().is_none() {
            process.signal_group(libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && processes.iter_mut().any(|p| p.exit_status().is_none()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for process in processes.iter_mut() {
        process.signal_group(libc::SIGKILL);
        let _ = process.child.wait();
    }
}

impl Drop for ManagedProcess {
    /// With `MUSTER_TEST_KEEP_LOGS=<dir>`, the whole log is copied there (as `<pid>-<name>.log`) before the
    /// fixture's temporary directory goes: for reading what a component said in a run that passed or failed.
    fn drop(&mut self) {
        if let Some(dir) = std::env::var_os("MUSTER_TEST_KEEP_LOGS") {
            let dir = PathBuf::from(dir);
            let kept = dir.join(format!("{}-{}.log", self.child.id(), self.name));
            if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&self.log_path, &kept)) {
                eprintln!("cannot keep {} as {}: {e}", self.log_path.display(), kept.display());
            }
        }
    }
}

/// Prints the tail of each process's log to stderr: called while a failing test unwinds, so the test's output
/// shows what the real components said.
pub fn print_log_tails(processes: &[ManagedProcess], lines: usize) {
    for process in processes {
        eprintln!(
            "\n----- last {lines} lines of {} ({}) -----\n{}\n----- end of {} -----",
            process.name(),
            process.log_path().display(),
            process.log_tail(lines),
            process.name()
        );
    }
}
