//! Running one trial's command as a local process group: output captured to the trial's
//! log file and streamed line by line to its metrics collector, and stopped as a whole
//! group (the trainer and anything it spawned) when asked.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::render::LocalCommand;

/// How long a stopped trial gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a trial process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessExit {
    /// Exit status 0.
    Success,
    /// Non-zero exit code or killed by a signal we did not send.
    Failed { reason: String, message: String },
    /// The command could not be started.
    SpawnFailed { reason: String, message: String },
    /// We stopped it.
    Stopped,
    /// Its metrics collector stopped it: it broke its early-stopping rules (the text says
    /// how). Returned by the collector's driver, never by [`run`].
    EarlyStopped { message: String },
}

/// What to run and where.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub command: LocalCommand,
    pub work_dir: PathBuf,
    pub log_path: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

/// Where the child's `execvp` would find `name` through `path` (the child's PATH; relative
/// entries count from `work_dir`, the child's working directory), remembered per process:
/// every trial of an experiment runs the same program, and the child's own search costs one
/// failed `execve` per PATH entry before the right one. `None` (the child then searches as
/// usual, with the usual errors) for names with a `/`, or nothing executable found.
fn resolve_program(name: &str, path: Option<&std::ffi::OsStr>, work_dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    type Key = (String, Option<std::ffi::OsString>, PathBuf);
    static FOUND: std::sync::Mutex<Option<HashMap<Key, PathBuf>>> = std::sync::Mutex::new(None);
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let executable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let key: Key = (name.to_owned(), path.map(ToOwned::to_owned), work_dir.to_owned());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    let found = found.get_or_insert_with(HashMap::new);
    // One stat confirms a remembered answer; a program that moved is looked up again.
    if let Some(p) = found.get(&key)
        && executable(p)
    {
        return Some(p.clone());
    }
    let hit = std::env::split_paths(path?)
        .map(|dir| {
            // An empty entry means the working directory, as for execvp.
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            work_dir.join(dir).join(name)
        })
        .find(|p| executable(p))?;
    found.insert(key, hit.clone());
    Some(hit)
}

fn last_lines(tail: &std::collections::VecDeque<String>) -> String {
    if tail.is_empty() {
        "the trial printed nothing".into()
    } else {
        format!(
            "last output: {}",
            tail.iter().cloned().collect::<Vec<_>>().join(" | ")
        )
    }
}

/// Spawns the trial and runs it to the end. Every output line (stdout and stderr merged,
/// in arrival order) is appended to `log_path` and sent on `lines`. When `stop` resolves
/// (for a oneshot receiver: a send, or its sender dropped) the process group is stopped:
/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
pub async fn run(
    spec: ProcessSpec,
    lines: mpsc::Sender<String>,
    stop: impl Future<Output = ()>,
) -> ProcessExit {
    let mut stop = std::pin::pin!(stop);
    let argv0 = spec.command.argv[0].clone();
    let child_path = spec
        .command
        .env
        .iter()
        .chain(&spec.extra_env)
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"));
    let program = resolve_program(&argv0, child_path.as_deref(), &spec.work_dir)
        .unwrap_or_else(|| std::path::PathBuf::from(&argv0));
    let mut cmd = Command::new(&program);
    // The resolved path is what runs; argv[0] stays the name the template gave.
    cmd.arg0(&argv0);
    cmd.args(&spec.command.argv[1..])
        .current_dir(&spec.work_dir)
        .envs(spec.command.env.iter().cloned())
        .envs(spec.extra_env.iter().cloned())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut log = TrialLog::new(&spec.log_path);
    // stdout and stderr share one pipe, as `2>&1` would: the lines keep the order the
    // trainer wrote them in (what `kubectl logs` shows too), and a trial costs one pipe
    // and one reader instead of two merged by a channel.
    let output = std::io::pipe().and_then(|(read, write)| {
        let write2 = write.try_clone()?;
        cmd.stdout(write).stderr(write2);
        tokio::net::unix::pipe::Receiver::from_owned_fd(read.into())
    });
    let output = match output {
        Ok(r) => r,
        Err(e) => {
            return ProcessExit::SpawnFailed {
                reason: "SpawnError".into(),
                message: format!("cannot create the pipe for the trial's output: {e}"),
            };
        }
    };
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end: closing them is what lets the
    // reader see the end of the output when the trainer exits.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let (reason, message) = if e.kind() == std::io::ErrorKind::NotFound {
                (
                    "CommandNotFound",
                    format!(
                        "command \"{argv0}\" not found (looked in PATH and relative to {}); fix the trial \
                         template's command",
                        spec.work_dir.display()
                    ),
                )
            } else if e.kind() == std::io::ErrorKind::PermissionDenied {
                (
                    "PermissionDenied",
                    format!("command \"{argv0}\" is not executable: {e}"),
                )
            } else {
                ("SpawnError", format!("cannot start \"{argv0}\": {e}"))
            };
            let _ = log.line(&format!("katib: {message}"));
            return ProcessExit::SpawnFailed {
                reason: reason.into(),
                message,
            };
        }
    };
    let pgid = child.id().map(|p| p as i32);

    let mut output = BufReader::new(output);
    let mut line = Vec::new();
    let mut tail = std::collections::VecDeque::with_capacity(5);
    let mut stopped = false;
    let mut status = None;
    let mut output_open = true;
    let mut log_failed = None;
    loop {
        tokio::select! {
            // Cancel-safe: a partly read line stays in `line` for the next call.
            read = output.read_until(b'\n', &mut line), if output_open => {
                // A call that resumes after a cancelled one can meet the end of the output
                // with an unterminated last line already in `line`, and answer Ok(0).
                if matches!(read, Ok(0) | Err(_)) {
                    output_open = false;
                }
                if !line.is_empty() {
                    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        line.pop();
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    // A trial whose output cannot be kept is stopped: its log is the only
                    // record of what it did.
                    if log_failed.is_none() && let Err(e) = log.line(&text) {
                        log_failed = Some(e);
                        if let Some(pg) = pgid {
                            signal_group(pg, nix::sys::signal::Signal::SIGKILL);
                        }
                    }
                    if tail.len() == 5 { tail.pop_front(); }
                    tail.push_back(text.chars().take(200).collect());
                    let _ = lines.send(text).await;
                }
            }
            st = child.wait(), if status.is_none() => {
                status = Some(st);
                // A grandchild may keep the pipe open; stop the whole group once the
                // trainer itself has exited so the trial can end.
                if output_open && let Some(pg) = pgid {
                    signal_group(pg, nix::sys::signal::Signal::SIGTERM);
                }
            }
            _ = &mut stop, if !stopped && status.is_none() => {
                stopped = true;
                if let Some(pg) = pgid {
                    signal_group(pg, nix::sys::signal::Signal::SIGTERM);
                    let grace = tokio::time::timeout(STOP_GRACE, child.wait()).await;
                    match grace {
                        Ok(st) => status = Some(st),
                        Err(_) => {
                            signal_group(pg, nix::sys::signal::Signal::SIGKILL);
                            status = Some(child.wait().await);
                        }
                    }
                }
            }
        }
        if status.is_some() && !output_open {
            break;
        }
    }
    if let Some(message) = log_failed {
        return ProcessExit::Failed {
            reason: "LogFileError".into(),
            message,
        };
    }
    if stopped {
        return ProcessExit::Stopped;
    }
    match status {
        Some(Ok(st)) if st.success() => ProcessExit::Success,
        Some(Ok(st)) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(code), _) => ProcessExit::Failed {
                    reason: "Error".into(),
                    message: format!("exit code {code}; {}", last_lines(&tail)),
                },
                (None, Some(sig)) => ProcessExit::Failed {
                    reason: "Signal".into(),
                    message: format!("killed by signal {sig}; {}", last_lines(&tail)),
                },
                _ => ProcessExit::Failed {
                    reason: "Error".into(),
                    message: last_lines(&tail),
                },
            }
        }
        Some(Err(e)) => ProcessExit::Failed {
            reason: "WaitError".into(),
            message: e.to_string(),
        },
        None => ProcessExit::Failed {
            reason: "Error".into(),
            message: "the process vanished".into(),
        },
    }
}

/// The trial's log file, created (with its directory) when the first line comes: a trial
/// that prints nothing costs no file. Creating two inodes per trial was a large part of
/// starting a short trial (ext4 without a journal scans past every recently freed inode).
/// Writes are plain `std::fs`: a line lands in the page cache in microseconds, less than a
/// trip to Tokio's blocking pool would cost.
struct TrialLog<'a> {
    path: &'a Path,
    file: Option<std::fs::File>,
}

impl<'a> TrialLog<'a> {
    fn new(path: &'a Path) -> Self {
        Self { path, file: None }
    }

    /// Appends `line` and a newline; the error names the file.
    fn line(&mut self, line: &str) -> Result<(), String> {
        let describe = |e: std::io::Error| format!("cannot write the trial log {}: {e}", self.path.display());
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(describe)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path)
                .map_err(describe)?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        file.write_all(&buf).map_err(describe)
    }
}

fn signal_group(pgid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[test]
    fn programs_are_found_as_execvp_would() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::write(bin.join("plain"), "not executable").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent", bin.to_str().unwrap()]).unwrap();
        let work = dir.path();
        assert_eq!(resolve_program("tool", Some(&path), work), Some(tool.clone()));
        // Remembered, and still right when asked again.
        assert_eq!(resolve_program("tool", Some(&path), work), Some(tool.clone()));
        // Not executable, missing, or a path: left to the child's own search and errors.
        assert_eq!(resolve_program("plain", Some(&path), work), None);
        assert_eq!(resolve_program("missing", Some(&path), work), None);
        assert_eq!(resolve_program("./tool", Some(&path), work), None);
        assert_eq!(resolve_program("tool", None, work), None);
        // A relative entry counts from the working directory.
        assert_eq!(
            resolve_program("tool", Some(std::ffi::OsStr::new("bin")), work),
            Some(work.join("bin/tool"))
        );
        // A remembered program that is gone is looked up again.
        std::fs::remove_file(&tool).unwrap();
        assert_eq!(resolve_program("tool", Some(&path), work), None);
    }

    async fn stopped(rx: oneshot::Receiver<()>) {
        let _ = rx.await;
    }

    fn spec(dir: &Path, argv: &[&str]) -> ProcessSpec {
        ProcessSpec {
            command: LocalCommand {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            work_dir: dir.to_path_buf(),
            log_path: dir.join("t/stdout.log"),
            extra_env: vec![("KATIB_TRIAL_NAME".into(), "t1".into())],
        }
    }

    #[tokio::test]
    async fn captures_merged_output_and_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (_stop_tx, stop) = oneshot::channel();
        let s = spec(
            dir.path(),
            &["sh", "-c", "echo loss=1 $KATIB_TRIAL_NAME; echo err >&2; exit 3"],
        );
        let exit = run(s, tx, stopped(stop)).await;
        let mut got = Vec::new();
        while let Ok(l) = rx.try_recv() {
            got.push(l);
        }
        got.sort();
        assert_eq!(got, vec!["err".to_string(), "loss=1 t1".to_string()]);
        match exit {
            ProcessExit::Failed { reason, message } => {
                assert_eq!(reason, "Error");
                assert!(message.starts_with("exit code 3"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let log = std::fs::read_to_string(dir.path().join("t/stdout.log")).unwrap();
        assert!(log.contains("loss=1 t1") && log.contains("err"));
    }

    #[tokio::test]
    async fn output_order_is_kept_and_silent_trials_leave_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (_stop_tx, stop) = oneshot::channel();
        let s = spec(dir.path(), &["sh", "-c", "echo a; echo b >&2; echo c; printf d"]);
        assert_eq!(run(s, tx, stopped(stop)).await, ProcessExit::Success);
        let mut got = Vec::new();
        while let Ok(l) = rx.try_recv() {
            got.push(l);
        }
        // One pipe for both streams: the order written, and an unterminated last line.
        assert_eq!(got, ["a", "b", "c", "d"]);
        let log = std::fs::read_to_string(dir.path().join("t/stdout.log")).unwrap();
        assert_eq!(log, "a\nb\nc\nd\n");

        let quiet = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let (_stop_tx, stop) = oneshot::channel();
        assert_eq!(
            run(spec(quiet.path(), &["true"]), tx, stopped(stop)).await,
            ProcessExit::Success
        );
        assert!(!quiet.path().join("t").exists());
    }

    #[tokio::test]
    async fn an_unterminated_last_line_survives_a_grandchild_holding_the_pipe() {
        // The trainer exits while a background child keeps the pipe open: the exit is seen
        // before the end of the output, so the read of "last" (read during the pause) is
        // cancelled part-way and resumed after the group is stopped. The line must arrive.
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (_stop_tx, stop) = oneshot::channel();
        let s = spec(
            dir.path(),
            &[
                "sh",
                "-c",
                "echo first; printf last; sleep 0.2; sleep 300 & exit 0",
            ],
        );
        assert_eq!(run(s, tx, stopped(stop)).await, ProcessExit::Success);
        let mut got = Vec::new();
        while let Ok(l) = rx.try_recv() {
            got.push(l);
        }
        assert_eq!(got, ["first", "last"]);
        let log = std::fs::read_to_string(dir.path().join("t/stdout.log")).unwrap();
        assert_eq!(log, "first\nlast\n");
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_written_fails_the_trial() {
        let dir = tempfile::tempdir().unwrap();
        // The log's directory would have to be where a file is.
        std::fs::write(dir.path().join("t"), "").unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let (_stop_tx, stop) = oneshot::channel();
        let s = spec(dir.path(), &["sh", "-c", "echo loss=1; sleep 300"]);
        match run(s, tx, stopped(stop)).await {
            ProcessExit::Failed { reason, message } => {
                assert_eq!(reason, "LogFileError");
                assert!(message.contains("t/stdout.log"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_command_is_a_clear_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let (_stop_tx, stop) = oneshot::channel();
        match run(spec(dir.path(), &["no-such-trainer-xyz"]), tx, stopped(stop)).await {
            ProcessExit::SpawnFailed { reason, message } => {
                assert_eq!(reason, "CommandNotFound");
                assert!(message.contains("no-such-trainer-xyz"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn stop_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (stop_tx, stop) = oneshot::channel();
        // The child spawns a grandchild that would outlive a plain kill of the child.
        let s = spec(dir.path(), &["sh", "-c", "sleep 300 & echo started; wait"]);
        let h = tokio::spawn(run(s, tx, stopped(stop)));
        assert_eq!(rx.recv().await.as_deref(), Some("started"));
        stop_tx.send(()).unwrap();
        assert_eq!(h.await.unwrap(), ProcessExit::Stopped);
    }
}
