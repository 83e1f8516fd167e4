//! Helpers: run the `katib` binary, write experiment variants, read run results.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn katib_bin() -> &'static str {
    env!("CARGO_BIN_EXE_katib")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn examples() -> PathBuf {
    repo().join("examples")
}

/// The text of an example, with `(from, to)` replacements applied (each must match).
pub fn variant(example: &str, edits: &[(&str, &str)]) -> String {
    let mut s = std::fs::read_to_string(examples().join(example)).unwrap();
    for (from, to) in edits {
        assert!(s.contains(from), "fixture edit {from:?} does not match {example}");
        s = s.replacen(from, to, 1);
    }
    s
}

/// A scratch directory with a state dir; experiments written into it run with the
/// examples directory as their working directory (so `trainers/train.py` resolves).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn katib(&self, args: &[&str]) -> Command {
        let mut c = Command::new(katib_bin());
        c.args(args)
            .env("KATIB_STATE_DIR", self.dir.path().join("state"))
            .env("KATIB_WORK_DIR", examples())
            .env("KATIB_SEED", "1")
            .env_remove("KATIB_DB_URL")
            .env_remove("KATIB_SUGGESTION_ENDPOINTS")
            .env_remove("KATIB_DB_MANAGER_ADDRESS")
            .stdin(Stdio::null());
        c
    }

    /// Runs `katib run <file> --json` and returns (exit code, experiment JSON, trials JSON, stderr).
    pub fn run_json(&self, file: &Path, extra: &[&str]) -> RunResult {
        self.run_json_with_env(file, extra, &[])
    }

    /// [`Self::run_json`] with extra environment variables for katib and its trials.
    pub fn run_json_with_env(
        &self,
        file: &Path,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> RunResult {
        let mut args = vec!["run", file.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let mut cmd = self.katib(&args);
        cmd.envs(env.iter().copied());
        let out = run_with_deadline(cmd, Duration::from_secs(300));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let experiment = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        RunResult {
            code: out.status.code().unwrap_or(-1),
            experiment,
            trials: self.last_trials(),
            stderr,
            stdout,
        }
    }

    /// The trials of the most recent run (from its `experiment.json`).
    pub fn last_trials(&self) -> Vec<Value> {
        let runs = self.dir.path().join("state/runs");
        let Ok(entries) = std::fs::read_dir(&runs) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        dirs.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
        let Some(last) = dirs.last() else {
            return Vec::new();
        };
        let Ok(text) = std::fs::read_to_string(last.join("experiment.json")) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        v["trials"].as_array().cloned().unwrap_or_default()
    }
}

pub struct RunResult {
    pub code: i32,
    pub experiment: Value,
    pub trials: Vec<Value>,
    pub stderr: String,
    pub stdout: String,
}

impl RunResult {
    pub fn last_condition(&self) -> (String, String) {
        let c = self.experiment["status"]["conditions"]
            .as_array()
            .and_then(|a| a.last())
            .cloned()
            .unwrap_or_default();
        (
            c["type"].as_str().unwrap_or("").into(),
            c["reason"].as_str().unwrap_or("").into(),
        )
    }

    pub fn status_i64(&self, key: &str) -> i64 {
        self.experiment["status"][key].as_i64().unwrap_or(0)
    }

    pub fn context(&self) -> String {
        format!(
            "exit {}\nstderr:\n{}\nstdout:\n{}",
            self.code, self.stderr, self.stdout
        )
    }
}

/// Runs a command to completion, killing it if it outlives `deadline`.
/// Waits for `child` to exit; kills it and answers `None` after `deadline`.
pub fn wait_with_deadline(
    child: &mut std::process::Child,
    deadline: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out_reader = {
        let mut so = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut so, &mut b).ok();
            b
        })
    };
    let err_reader = {
        let mut se = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut se, &mut b).ok();
            b
        })
    };
    match wait_with_deadline(&mut child, deadline) {
        Some(status) => Output {
            status,
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        },
        None => {
            let stderr = err_reader.join().unwrap();
            panic!(
                "command did not finish within {deadline:?}: {cmd:?}\nstderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
    }
}

/// A free loopback port (bound then released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A background `katib <service>` process, killed on drop.
pub struct Service {
    pub child: std::process::Child,
    pub addr: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `katib <args> --listen 127.0.0.1:<port>` and waits until the port accepts.
pub fn start_service(scratch: &Scratch, args: &[&str]) -> Service {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--listen", &addr]);
    let child = scratch
        .katib(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let svc = Service {
        child,
        addr: addr.clone(),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "katib {args:?} did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    svc
}

/// True when Katib's Python stubs can be imported. Under CI=true a missing package is a
/// failure, elsewhere the caller skips with a message.
/// A directory for PYTHONPATH whose `sitecustomize` lets the SDK's `report_metrics` run
/// outside a cluster: it reads the namespace from the in-cluster service-account file, and
/// the shim answers that lookup with `default`.
pub fn report_metrics_shim(dir: &Path) -> PathBuf {
    let shim = dir.join("shim");
    std::fs::create_dir_all(&shim).unwrap();
    std::fs::write(
        shim.join("sitecustomize.py"),
        "import builtins, io\n_open = builtins.open\n\
         def _patched(path, *a, **k):\n    \
         if str(path) == '/var/run/secrets/kubernetes.io/serviceaccount/namespace':\n        \
         return io.StringIO('default')\n    return _open(path, *a, **k)\nbuiltins.open = _patched\n",
    )
    .unwrap();
    shim
}

pub fn python_katib_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import kubeflow.katib.katib_api_pb2_grpc, grpc"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: python3 with kubeflow-katib is required in CI (pip install kubeflow-katib==0.19.0)"
        );
        eprintln!("SKIP {test}: python3 -m pip install kubeflow-katib==0.19.0 to run it");
    }
    ok
}

/// Runs a Python script (stdin) with `args`; returns (success, stdout, stderr).
pub fn python(script: &str, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new("python3")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
