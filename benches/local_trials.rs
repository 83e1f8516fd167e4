//! Local runtime throughput: `katib run` on 500 trials of `true` (parallelTrialCount 8)
//! beside the floor: spawning and reaping the same 500 processes, 8 at a time, with no
//! tuning around them. Run with `cargo bench --bench local_trials` (release build).
//!
//! Prints the median of 3 repetitions of each, trials/s, the ratio to the floor and the
//! per-trial overhead.
//!
//! Both run without the `LD_LIBRARY_PATH` cargo sets for benches (the target and toolchain
//! directories): with it every `true` first looks for libc there, which slowed the floor by
//! about 15% and made the ratio look better than what a user gets.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRIALS: usize = 500;
const PARALLEL: usize = 8;
const REPS: usize = 3;

fn experiment() -> String {
    format!(
        r#"apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: bench-true
spec:
  objective:
    type: minimize
    objectiveMetricName: loss
  algorithm:
    algorithmName: random
  parallelTrialCount: {PARALLEL}
  maxTrialCount: {TRIALS}
  parameters:
    - name: x
      parameterType: double
      feasibleSpace: {{min: "0", max: "1"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - name: x
        reference: x
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                image: busybox
                command: ["true"]
                env:
                  - name: X
                    value: "${{trialParameters.x}}"
            restartPolicy: Never
"#
    )
}

fn floor() -> Duration {
    let start = Instant::now();
    let mut running: Vec<std::process::Child> = Vec::new();
    let mut started = 0;
    while started < TRIALS || !running.is_empty() {
        while started < TRIALS && running.len() < PARALLEL {
            running.push(
                Command::new("true")
                    .env_remove("LD_LIBRARY_PATH")
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("spawn true"),
            );
            started += 1;
        }
        // Reap whichever finished (try_wait reaps); poll like a supervisor would.
        running.retain_mut(|c| c.try_wait().expect("wait").is_none());
        std::thread::sleep(Duration::from_micros(200));
    }
    start.elapsed()
}

fn katib(dir: &std::path::Path, file: &std::path::Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_katib"))
        .env_remove("LD_LIBRARY_PATH")
        .args([
            "run",
            file.to_str().expect("utf-8 path"),
            "--quiet",
            "--state-dir",
        ])
        .arg(dir.join(format!("state-{}", start.elapsed().as_nanos())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run katib");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "katib run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bench.yaml");
    std::fs::write(&file, experiment()).expect("write experiment");
    let mut floors = Vec::new();
    let mut runs = Vec::new();
    for rep in 0..REPS {
        floors.push(floor());
        let d = dir.path().join(format!("rep{rep}"));
        runs.push(katib(&d, &file));
    }
    let (f, k) = (median(floors.clone()), median(runs.clone()));
    let rate = |d: Duration| TRIALS as f64 / d.as_secs_f64();
    println!("local_trials: {TRIALS} trials of `true`, parallelTrialCount {PARALLEL}, median of {REPS}");
    println!(
        "  floor (spawn+reap only): {:>8.3} s  {:>8.1} trials/s  runs {floors:?}",
        f.as_secs_f64(),
        rate(f)
    );
    println!(
        "  katib run:               {:>8.3} s  {:>8.1} trials/s  runs {runs:?}",
        k.as_secs_f64(),
        rate(k)
    );
    println!(
        "  ratio katib/floor throughput: {:.1}%",
        100.0 * rate(k) / rate(f)
    );
    println!(
        "  per-trial overhead: {:.2} ms (katib {:.2} ms/trial vs floor {:.2} ms/trial, wall time / trials)",
        (k.as_secs_f64() - f.as_secs_f64()) * 1000.0 / TRIALS as f64,
        k.as_secs_f64() * 1000.0 / TRIALS as f64,
        f.as_secs_f64() * 1000.0 / TRIALS as f64
    );
}
