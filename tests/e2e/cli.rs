//! `katib run` / `katib validate` end to end: real processes, real gRPC, real SQLite.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn objective_of(trial: &Value, metric: &str, strategy: &str) -> Option<f64> {
    trial["status"]["observation"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == metric)?[strategy]
        .as_str()?
        .parse()
        .ok()
}

fn trial_conditions(trial: &Value) -> Vec<String> {
    trial["status"]["conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["type"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn last_trial_condition(trial: &Value) -> Value {
    trial["status"]["conditions"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn random_example_runs_to_max_trials_with_true_best() {
    let s = Scratch::new();
    let r = s.run_json(&examples().join("random.yaml"), &[]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(
        r.last_condition(),
        ("Succeeded".into(), "ExperimentMaxTrialsReached".into()),
        "{}",
        r.context()
    );
    assert_eq!(r.status_i64("trials"), 12);
    assert_eq!(r.status_i64("trialsSucceeded"), 12);
    assert_eq!(r.trials.len(), 12);
    // The optimal trial is the true best among the trials' observations (maximize).
    let best = r
        .trials
        .iter()
        .filter_map(|t| objective_of(t, "accuracy", "max"))
        .fold(f64::MIN, f64::max);
    let opt = &r.experiment["status"]["currentOptimalTrial"];
    let opt_value: f64 = opt["observation"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "accuracy")
        .unwrap()["max"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(opt_value, best);
    let opt_name = opt["bestTrialName"].as_str().unwrap();
    assert!(r.trials.iter().any(|t| t["metadata"]["name"] == opt_name));
    // Every trial streamed both metrics, and assignments stay inside the space.
    for t in &r.trials {
        assert!(objective_of(t, "loss", "min").is_some(), "{t}");
        for a in t["spec"]["parameterAssignments"].as_array().unwrap() {
            let v = a["value"].as_str().unwrap();
            match a["name"].as_str().unwrap() {
                "lr" => assert!((0.001..=0.3).contains(&v.parse::<f64>().unwrap())),
                "momentum" => assert!((0.5..=0.95).contains(&v.parse::<f64>().unwrap())),
                "optimizer" => assert!(["sgd", "adam", "rmsprop"].contains(&v)),
                other => panic!("unexpected parameter {other}"),
            }
        }
    }
    // The store was closed, not dropped on the way out: its log is folded back into the
    // one database file every time.
    let state = s.path().join("state");
    assert!(state.join("katib.db").is_file());
    assert!(
        !state.join("katib.db-wal").exists(),
        "katib.db-wal left behind: the run's last writes are not in katib.db"
    );
    // Katib's status shape.
    assert!(r.experiment["status"]["startTime"].is_string());
    assert!(r.experiment["status"]["completionTime"].is_string());
    assert_eq!(r.experiment["spec"]["parallelTrialCount"], 3);
    assert_eq!(r.experiment["spec"]["resumePolicy"], "Never");
}

/// Unseeded random over a continuous space: `katib run` takes assignments ahead of need
/// (see `LocalConfig::suggestions_ahead`). The run still creates exactly maxTrialCount
/// trials, each with its own point.
#[test]
fn unseeded_random_asked_ahead_keeps_katib_s_counts() {
    let s = Scratch::new();
    let text = variant(
        "random.yaml",
        &[
            (
                "    algorithmSettings:\n      - name: random_state\n        value: \"42\"\n",
                "",
            ),
            ("  parallelTrialCount: 3", "  parallelTrialCount: 4"),
            ("  maxTrialCount: 12", "  maxTrialCount: 23"),
        ],
    );
    let f = s.write("unseeded.yaml", &text);
    let r = s.run_json(&f, &["--log-level", "katib_controller=info"]);
    assert_eq!(r.code, 0, "{}", r.context());
    let taken_ahead = |stderr: &str| -> usize {
        let line = stderr
            .lines()
            .find(|l| l.contains("trials started from assignments asked ahead"))
            .unwrap_or_else(|| panic!("no suggestion summary in the log:\n{stderr}"));
        let field = line.split("taken_ahead=").nth(1).expect("taken_ahead field");
        field
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(taken_ahead(&r.stderr) > 0, "{}", r.context());
    assert_eq!(
        r.last_condition(),
        ("Succeeded".into(), "ExperimentMaxTrialsReached".into()),
        "{}",
        r.context()
    );
    assert_eq!(r.status_i64("trials"), 23);
    assert_eq!(r.trials.len(), 23);
    let points: HashSet<String> = r
        .trials
        .iter()
        .map(|t| t["spec"]["parameterAssignments"].to_string())
        .collect();
    assert_eq!(points.len(), 23, "every trial has its own point");
    // Seeded, the same experiment is asked exactly as Katib asks.
    let seeded = s.write(
        "seeded.yaml",
        &variant("random.yaml", &[("  maxTrialCount: 12", "  maxTrialCount: 23")]),
    );
    let r = s.run_json(&seeded, &["--log-level", "katib_controller=info"]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(taken_ahead(&r.stderr), 0, "{}", r.context());
    assert_eq!(r.trials.len(), 23);
}

#[test]
fn grid_example_visits_distinct_exact_points() {
    let s = Scratch::new();
    let r = s.run_json(&examples().join("grid.yaml"), &[]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(r.last_condition().1, "ExperimentMaxTrialsReached");
    assert_eq!(r.trials.len(), 40);
    let mut seen = HashSet::new();
    for t in &r.trials {
        let key: Vec<String> = t["spec"]["parameterAssignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}={}", a["name"].as_str().unwrap(), a["value"].as_str().unwrap()))
            .collect();
        for kv in &key {
            if let Some(v) = kv.strip_prefix("lr=") {
                assert!(
                    ["0.01", "0.02", "0.03", "0.04", "0.05"].contains(&v),
                    "{v} has float noise"
                );
            }
        }
        assert!(seen.insert(key.join(",")), "duplicate grid point {key:?}");
    }
}

#[test]
fn grid_exhaustion_ends_with_suggestion_end_reached() {
    let s = Scratch::new();
    let text = variant(
        "grid.yaml",
        &[
            ("name: grid-example", "name: grid-exhausted"),
            ("maxTrialCount: 40", "maxTrialCount: 100"),
            (
                "        min: \"0.01\"\n        max: \"0.05\"",
                "        min: \"0.02\"\n        max: \"0.03\"",
            ),
            (
                "        min: \"0.6\"\n        max: \"0.9\"",
                "        min: \"0.8\"\n        max: \"0.8\"",
            ),
        ],
    );
    let f = s.write("exhausted.yaml", &text);
    let r = s.run_json(&f, &[]);
    assert_eq!(r.code, 0, "{}", r.context());
    // 2 lr values x 1 momentum x 2 optimizers.
    assert_eq!(r.trials.len(), 4, "{}", r.context());
    assert_eq!(
        r.last_condition(),
        ("Succeeded".into(), "ExperimentSuggestionEndReached".into())
    );
}

#[test]
fn goal_reached_ends_early() {
    let s = Scratch::new();
    let text = variant(
        "random.yaml",
        &[
            ("goal: 0.99", "goal: 0.6"),
            ("maxTrialCount: 12", "maxTrialCount: 30"),
            ("parallelTrialCount: 3", "parallelTrialCount: 1"),
        ],
    );
    let r = s.run_json(&s.write("goal.yaml", &text), &[]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(
        r.last_condition(),
        ("Succeeded".into(), "ExperimentGoalReached".into()),
        "{}",
        r.context()
    );
    assert!(r.trials.len() < 30);
    let best = r.experiment["status"]["currentOptimalTrial"]["observation"]["metrics"][0]["max"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(best >= 0.6);
}

#[test]
fn failing_trainer_fails_experiment_at_max_failed() {
    let s = Scratch::new();
    let text = variant(
        "random.yaml",
        &[
            ("\"--epochs=5\"", "\"--epochs=5\"\n                  - \"--fail\""),
            ("maxFailedTrialCount: 3", "maxFailedTrialCount: 2"),
        ],
    );
    let r = s.run_json(&s.write("failing.yaml", &text), &[]);
    assert_eq!(r.code, 1, "{}", r.context());
    assert_eq!(
        r.last_condition(),
        ("Failed".into(), "ExperimentFailed".into()),
        "{}",
        r.context()
    );
    let msg = r.experiment["status"]["conditions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["message"]
        .clone();
    assert_eq!(msg, "Experiment has failed because max failed count has reached");
    assert!(r.status_i64("trialsFailed") >= 2);
    let failed: Vec<&Value> = r
        .trials
        .iter()
        .filter(|t| trial_conditions(t).contains(&"Failed".to_string()))
        .collect();
    let c = last_trial_condition(failed[0]);
    assert_eq!(c["reason"], "TrialFailed. Job reason: Error");
    assert!(c["message"].as_str().unwrap().contains("exit code 1"), "{c}");
    // The failing trial still streamed the metrics it printed before failing.
    assert!(objective_of(failed[0], "accuracy", "latest").is_some());
}

#[test]
fn silent_trainer_is_metrics_unavailable() {
    let s = Scratch::new();
    let text = variant(
        "random.yaml",
        &[
            (
                "\"--epochs=5\"",
                "\"--epochs=2\"\n                  - \"--silent\"",
            ),
            ("maxFailedTrialCount: 3", "maxFailedTrialCount: 2"),
        ],
    );
    let r = s.run_json(&s.write("silent.yaml", &text), &[]);
    assert_eq!(r.code, 1, "{}", r.context());
    assert_eq!(r.last_condition(), ("Failed".into(), "ExperimentFailed".into()));
    assert!(r.status_i64("trialMetricsUnavailable") >= 2, "{}", r.context());
    assert_eq!(r.status_i64("trialsFailed"), 0);
    assert!(r.experiment["status"]["currentOptimalTrial"].is_null());
    // The trials that finished before the experiment failed; one still running then was
    // stopped (Killed), and which one that is depends on timing.
    let unavailable: Vec<&Value> = r
        .trials
        .iter()
        .filter(|t| last_trial_condition(t)["type"] == "MetricsUnavailable")
        .collect();
    assert!(unavailable.len() >= 2, "{}", r.context());
    for t in unavailable {
        assert_eq!(
            t["status"]["observation"]["metrics"][0]["latest"], "unavailable",
            "{t}"
        );
    }
    for t in &r.trials {
        let kind = last_trial_condition(t)["type"].clone();
        assert!(kind == "MetricsUnavailable" || kind == "Killed", "{t}");
    }
}

#[test]
fn file_collector_example_reads_the_metrics_file() {
    let s = Scratch::new();
    let r = s.run_json(&examples().join("file-metrics-collector.yaml"), &[]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(r.trials.len(), 6);
    for t in &r.trials {
        assert_eq!(last_trial_condition(t)["type"], "Succeeded", "{t}");
        assert!(objective_of(t, "accuracy", "max").is_some());
    }
}

#[test]
fn command_not_found_fails_the_trial_with_the_reason() {
    let s = Scratch::new();
    let text = variant(
        "random.yaml",
        &[
            ("- \"python3\"", "- \"no-such-python-xyz\""),
            ("maxFailedTrialCount: 3", "maxFailedTrialCount: 1"),
        ],
    );
    let r = s.run_json(&s.write("notfound.yaml", &text), &[]);
    assert_eq!(r.code, 1, "{}", r.context());
    let c = last_trial_condition(&r.trials[0]);
    assert_eq!(c["type"], "Failed");
    assert_eq!(c["reason"], "TrialFailed. Job reason: CommandNotFound");
    assert!(c["message"].as_str().unwrap().contains("no-such-python-xyz"));
}

#[test]
fn external_suggestion_endpoint_runs_the_experiment() {
    let s = Scratch::new();
    let svc = start_service(&s, &["suggestion"]);
    let text = variant("random.yaml", &[("maxTrialCount: 12", "maxTrialCount: 4")]);
    let f = s.write("ext.yaml", &text);
    let endpoint = format!("random={}", svc.addr);
    let r = s.run_json(&f, &["--suggestion-endpoint", &endpoint]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(r.trials.len(), 4);
    // The in-process suggestion service was not started: a wrong endpoint fails clearly.
    let port = free_port();
    let bad = format!("random=127.0.0.1:{port}");
    let r = s.run_json(&f, &["--suggestion-endpoint", &bad, "--suggestion-timeout", "2"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(&format!("127.0.0.1:{port}")), "{}", r.context());
}

#[test]
fn bad_input_exits_2_with_clear_errors() {
    let s = Scratch::new();
    // Unreadable file.
    let out = run_with_deadline(
        s.katib(&["run", "/nonexistent/exp.yaml"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/exp.yaml"), "{err}");

    // YAML syntax error: the line is shown.
    let f = s.write(
        "syntax.yaml",
        "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nspec:\n  objective: [oops\n",
    );
    let out = run_with_deadline(s.katib(&["run", f.to_str().unwrap()]), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("syntax.yaml:") && err.contains(":4") || err.contains("syntax.yaml:5"),
        "{err}"
    );

    // Unknown algorithm: names the field.
    let f = s.write(
        "algo.yaml",
        &variant(
            "random.yaml",
            &[("algorithmName: random", "algorithmName: simulated-annealing")],
        ),
    );
    let out = run_with_deadline(s.katib(&["run", f.to_str().unwrap()]), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.algorithm.algorithmName"), "{err}");

    // Bad algorithm setting: rejected by the suggestion service's validation.
    let f = s.write(
        "setting.yaml",
        &variant("random.yaml", &[("value: \"42\"", "value: \"-3\"")]),
    );
    let out = run_with_deadline(s.katib(&["run", f.to_str().unwrap()]), Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("random_state"), "{err}");

    // Database path not writable.
    let out = run_with_deadline(
        s.katib(&[
            "run",
            examples().join("random.yaml").to_str().unwrap(),
            "--db",
            "sqlite:///nonexistent-dir/x/katib.db",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent-dir/x/katib.db"), "{err}");
}

/// `katib run ... | head`: the reader of stdout and stderr goes away while the run still
/// writes progress, debug logs (from every thread, the database's too) and the summary.
/// Writes that find the pipe closed are dropped; the run neither panics (exit 101) nor
/// hangs with a task gone, and it finishes and records its result.
#[test]
fn closed_output_pipes_neither_panic_nor_hang_the_run() {
    let s = Scratch::new();
    let file = s.write(
        "closed.yaml",
        &variant("random.yaml", &[("maxTrialCount: 12", "maxTrialCount: 6")]),
    );
    let mut cmd = s.katib(&["run", file.to_str().unwrap()]);
    cmd.env("KATIB_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Closed before katib writes anything: every write it makes meets a broken pipe.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = wait_with_deadline(&mut child, Duration::from_secs(120))
        .expect("katib run hung after its output pipes closed");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let trials = s.last_trials();
    assert_eq!(trials.len(), 6);
    for t in &trials {
        assert_eq!(
            last_trial_condition(t)["type"],
            "Succeeded",
            "every trial ran to the end: {t}"
        );
    }
}

#[test]
fn validate_accepts_examples_and_names_fields_with_lines() {
    let s = Scratch::new();
    for ex in ["random.yaml", "grid.yaml", "file-metrics-collector.yaml"] {
        let out = run_with_deadline(
            s.katib(&["validate", examples().join(ex).to_str().unwrap()]),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{ex}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let f = s.write(
        "bad.yaml",
        &variant(
            "random.yaml",
            &[
                ("maxFailedTrialCount: 3", "maxFailedTrialCount: 30"),
                ("parallelTrialCount: 3", "parallelTrialCount: 0"),
            ],
        ),
    );
    let out = run_with_deadline(
        s.katib(&["validate", f.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // Both problems, each with file:line and the field path.
    assert!(
        err.contains("bad.yaml:22") && err.contains("spec.parallelTrialCount"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:24") && err.contains("spec.maxFailedTrialCount"),
        "{err}"
    );
}

#[test]
fn ctrl_c_stops_trials_and_keeps_state() {
    use std::io::Read as _;
    let s = Scratch::new();
    let text = variant(
        "random.yaml",
        &[(
            "\"--epochs=5\"",
            "\"--epochs=5\"\n                  - \"--sleep=20\"",
        )],
    );
    let f = s.write("slow.yaml", &text);
    let mut child = s
        .katib(&["run", f.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until trials are running (the progress output names them).
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("started") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "katib exited early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "katib did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let trials = s.last_trials();
    assert_eq!(trials.len(), 3);
    for t in &trials {
        assert_eq!(last_trial_condition(t)["type"], "Killed", "{t}");
    }
}

#[test]
fn pytorchjob_template_runs_its_master_replica_locally() {
    let s = Scratch::new();
    let job = r#"    trialSpec:
      apiVersion: kubeflow.org/v1
      kind: PyTorchJob
      spec:
        pytorchReplicaSpecs:
          Worker:
            replicas: 2
            restartPolicy: OnFailure
            template:
              spec:
                containers:
                  - name: pytorch
                    image: docker.io/library/python:3.12-slim
                    command: ["sh", "-c", "echo worker must not run locally; exit 7"]
          Master:
            replicas: 1
            restartPolicy: OnFailure
            template:
              spec:
                containers:
                  - name: pytorch
                    image: docker.io/library/python:3.12-slim
                    command:
                      - "python3"
                      - "trainers/train.py"
                      - "--epochs=2"
                      - "--lr=${trialParameters.learningRate}"
                      - "--momentum=${trialParameters.momentum}"
                      - "--optimizer=${trialParameters.optimizer}"
"#;
    let mut text = variant(
        "random.yaml",
        &[
            ("maxTrialCount: 12", "maxTrialCount: 3"),
            (
                "primaryContainerName: training-container",
                "primaryContainerName: pytorch",
            ),
        ],
    );
    let cut = text.find("    trialSpec:").unwrap();
    text.truncate(cut);
    text.push_str(job);
    let r = s.run_json(&s.write("pytorch.yaml", &text), &[]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(r.status_i64("trialsSucceeded"), 3);
    // Katib's defaults for training-operator kinds were applied.
    let tt = &r.experiment["spec"]["trialTemplate"];
    assert_eq!(
        tt["successCondition"],
        "status.conditions.#(type==\"Succeeded\")#|#(status==\"True\")#"
    );
    assert_eq!(tt["primaryPodLabels"]["training.kubeflow.org/job-role"], "master");
    // The rendered job is the trial's runSpec, named after the trial.
    let t = &r.trials[0];
    assert_eq!(t["spec"]["runSpec"]["kind"], "PyTorchJob");
    assert_eq!(t["spec"]["runSpec"]["metadata"]["name"], t["metadata"]["name"]);
}

#[test]
fn run_records_the_experiment_and_its_trials_for_the_ui() {
    let s = Scratch::new();
    let r = s.run_json(&examples().join("random.yaml"), &[]);
    assert_eq!(r.code, 0, "{}", r.context());
    let url = format!("sqlite://{}", s.path().join("state/katib.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (store, _) = katib_db_manager::experiments::open_experiment_store(&url)
            .await
            .unwrap();
        let list = store.list_experiments(None).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].namespace.as_str(), list[0].name.as_str()),
            ("kubeflow", "random-example")
        );
        assert_eq!(list[0].status, "Succeeded");
        let summary: Value = serde_json::from_str(&list[0].summary).unwrap();
        assert_eq!(summary["succeeded"], 12);
        assert_eq!(
            summary["bestTrial"],
            r.experiment["status"]["currentOptimalTrial"]["bestTrialName"]
        );
        // Every trial, in creation order, in its final state (the same as experiment.json).
        let rows = store.trial_rows("kubeflow", "random-example").await.unwrap();
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = r
            .trials
            .iter()
            .map(|t| t["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, want);
        for (name, row) in &rows {
            let row: Value = serde_json::from_str(row).unwrap();
            assert_eq!(row["status"], "Succeeded", "{name}");
            assert!(row["objective"].is_f64(), "{name}: {row}");
        }
        let record = store
            .get_experiment("kubeflow", "random-example")
            .await
            .unwrap()
            .unwrap();
        let run_dir = std::path::PathBuf::from(record.run_dir.unwrap());
        assert!(run_dir.join(names[0]).join("stdout.log").is_file());
    });
}
