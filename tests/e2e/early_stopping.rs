//! Early stopping end to end: `katib run` with medianstop and asha on a trainer whose
//! space has a bad region (learning rates above 0.1 diverge), and Katib's Python
//! `EarlyStoppingStub` against `katib suggestion` + `katib db-manager`.
//!
//! The local runs use grid search over a fixed list of learning rates with one trial at a
//! time, so which trials the rules stop is known in advance (the trainer is deterministic;
//! its accuracies per epoch are in the comments).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

/// lr -> accuracy at epochs 1..3 (momentum 0.5, sgd):
/// 0.02: 0.6180 0.6895 0.7329 | 0.03: 0.6229 0.6975 0.7427 (best, final 0.8090)
/// 0.04: 0.6204 0.6935 0.7378 | 0.5, 0.6, 0.7: diverge, 0.3508 0.2797 0.2288
const LRS: [&str; 6] = ["0.02", "0.03", "0.5", "0.04", "0.6", "0.7"];

fn experiment(name: &str, early_stopping: &str) -> String {
    experiment_with(name, early_stopping, "", "")
}

/// `collector`: a `metricsCollectorSpec` block (indented 2) or ""; `args`: trainer flags.
fn experiment_with(name: &str, early_stopping: &str, collector: &str, args: &str) -> String {
    let lrs: Vec<String> = LRS.iter().map(|l| format!("          - \"{l}\"")).collect();
    format!(
        r#"apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: {name}
spec:
  objective:
    type: maximize
    objectiveMetricName: accuracy
    additionalMetricNames: [loss]
  algorithm:
    algorithmName: grid
  earlyStopping:
{early_stopping}
  parallelTrialCount: 1
  maxTrialCount: 6
{collector}
  parameters:
    - name: lr
      parameterType: categorical
      feasibleSpace:
        list:
{lrs}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - name: lr
        reference: lr
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                image: python:3.12-slim
                command: ["python3", "trainers/train.py", "--epochs=9", "--sleep=0.1", "--diverge-lr=0.1", "--lr=${{trialParameters.lr}}"{args}]
            restartPolicy: Never
"#,
        lrs = lrs.join("\n")
    )
}

fn lr_of(trial: &Value) -> String {
    trial["spec"]["parameterAssignments"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn last_condition(trial: &Value) -> (String, String) {
    let c = trial["status"]["conditions"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    (
        c["type"].as_str().unwrap_or("").into(),
        c["reason"].as_str().unwrap_or("").into(),
    )
}

/// The most recent run directory under the scratch state dir.
fn run_dir(state: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
    dirs.pop().unwrap()
}

/// Epochs the trainer started before it ended (from the trial's captured output).
fn epochs_run(run: &Path, trial: &str) -> usize {
    let log = std::fs::read_to_string(run.join(trial).join("stdout.log")).unwrap();
    log.lines().filter(|l| l.starts_with("training epoch")).count()
}

/// A finished run: its trials by learning rate, and its directory (kept while this lives).
struct Run {
    trials: Vec<(String, Value)>,
    dir: PathBuf,
    _scratch: Scratch,
}

/// Runs the experiment and checks what every early-stopping run must show.
fn run_and_check(name: &str, early_stopping: &str, expect_stopped: &[&str]) -> Run {
    run_and_check_text(name, &experiment(name, early_stopping), &[], expect_stopped)
}

fn run_and_check_text(name: &str, text: &str, extra: &[&str], expect_stopped: &[&str]) -> Run {
    let s = Scratch::new();
    let f = s.write(&format!("{name}.yaml"), text);
    let r = s.run_json(&f, extra);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(
        r.last_condition(),
        ("Succeeded".into(), "ExperimentMaxTrialsReached".into()),
        "{}",
        r.context()
    );
    assert_eq!(r.trials.len(), 6, "{}", r.context());
    let trials: Vec<(String, Value)> = r.trials.iter().map(|t| (lr_of(t), t.clone())).collect();
    let run = run_dir(&s.path().join("state"));

    let mut stopped: Vec<&str> = trials
        .iter()
        .filter(|(_, t)| last_condition(t).0 == "EarlyStopped")
        .map(|(lr, _)| lr.as_str())
        .collect();
    stopped.sort();
    let mut expected = expect_stopped.to_vec();
    expected.sort();
    assert_eq!(stopped, expected, "{}", r.context());
    for (lr, t) in &trials {
        let name = t["metadata"]["name"].as_str().unwrap();
        let (cond, reason) = last_condition(t);
        if expect_stopped.contains(&lr.as_str()) {
            assert_eq!(reason, "TrialEarlyStopped", "{lr}");
            // Stopped before the end, with what it reported kept as its observation.
            assert!(
                epochs_run(&run, name) < 9,
                "lr {lr} ran {} epochs",
                epochs_run(&run, name)
            );
            let acc = &t["status"]["observation"]["metrics"][0];
            assert_eq!(acc["name"], "accuracy", "{t}");
            assert_ne!(acc["latest"], "unavailable", "{t}");
            assert!(t["status"]["completionTime"].is_string(), "{t}");
        } else {
            assert_eq!(cond, "Succeeded", "{lr}: {t}");
            assert_eq!(epochs_run(&run, name), 9, "{lr}");
        }
    }
    // The best trial is still found.
    let status = &r.experiment["status"];
    assert_eq!(
        status["trialsEarlyStopped"],
        expect_stopped.len(),
        "{}",
        r.context()
    );
    let best = status["currentOptimalTrial"]["bestTrialName"].as_str().unwrap();
    let best_lr = trials
        .iter()
        .find(|(_, t)| t["metadata"]["name"] == best)
        .map(|(lr, _)| lr.clone());
    assert_eq!(best_lr.as_deref(), Some("0.03"), "{}", r.context());
    let best_acc = status["currentOptimalTrial"]["observation"]["metrics"][0]["max"]
        .as_str()
        .unwrap();
    assert_eq!(best_acc.parse::<f64>().unwrap(), 0.809);
    Run {
        trials,
        dir: run,
        _scratch: s,
    }
}

const MEDIANSTOP: &str = "    algorithmName: medianstop\n    algorithmSettings:\n      - {name: min_trials_required, value: \"2\"}\n      - {name: start_step, value: \"3\"}";

#[test]
fn medianstop_stops_diverging_trials_and_keeps_the_best() {
    // After 2 succeeded trials the threshold is the mean of their first-3-epoch averages
    // (0.6801 and 0.6877 -> 0.6839); at epoch 3 the diverging trials' best is 0.3508.
    let Run { trials, .. } = run_and_check("es-medianstop", MEDIANSTOP, &["0.5", "0.6", "0.7"]);
    // Rules are attached to trials created once two had succeeded (Katib's behaviour).
    for (lr, t) in &trials {
        let rules = t["spec"]["earlyStoppingRules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if lr == "0.02" || lr == "0.03" {
            assert!(rules.is_empty(), "{lr}: {rules:?}");
        } else {
            assert_eq!(rules.len(), 1, "{lr}");
            assert_eq!(rules[0]["name"], "accuracy");
            assert_eq!(rules[0]["comparison"], "less");
            assert_eq!(rules[0]["startStep"], 3);
        }
    }
}

#[test]
fn medianstop_with_a_json_file_collector() {
    // The same run, metrics tailed from a JSON-lines file instead of stdout.
    let text = experiment_with(
        "es-medianstop-json",
        MEDIANSTOP,
        "  metricsCollectorSpec:\n    source:\n      fileSystemPath:\n        path: /katib/metrics.json\n        kind: File\n        format: JSON\n    collector:\n      kind: File",
        ", \"--format=json\", \"--log-path=/katib/metrics.json\"",
    );
    run_and_check_text("es-medianstop-json", &text, &[], &["0.5", "0.6", "0.7"]);
}

#[test]
fn medianstop_from_an_external_early_stopping_service() {
    // A standalone `katib suggestion` serves EarlyStopping but has no runtime to mark
    // trials: its SetTrialStatus fails and the local runtime marks them itself.
    let s = Scratch::new();
    let svc = start_service(&s, &["suggestion"]);
    let text = experiment("es-external", MEDIANSTOP);
    run_and_check_text(
        "es-external",
        &text,
        &["--early-stopping-endpoint", &svc.addr],
        &["0.5", "0.6", "0.7"],
    );
}

#[test]
fn asha_stops_trials_outside_the_top_third_at_each_rung() {
    // Rungs at epochs 1 and 3 (max_resource 9). Rung 1 keeps ceil(n/3) of the n trials
    // there: 0.5 (3rd of 3), 0.6 and 0.7 stop; 0.04 passes rung 1 (2nd of 4) but is 2nd of 3
    // at rung 3 behind 0.03 (0.7378 < 0.7427) and stops there.
    let Run {
        trials,
        dir: run,
        _scratch,
    } = run_and_check(
        "es-asha",
        "    algorithmName: asha\n    algorithmSettings:\n      - {name: max_resource, value: \"9\"}",
        &["0.5", "0.6", "0.7", "0.04"],
    );
    let (_, t) = trials.iter().find(|(lr, _)| lr == "0.04").unwrap();
    let name = t["metadata"]["name"].as_str().unwrap();
    // Judged at rung 3 (epoch 3); what it printed while being stopped is not collected.
    assert!(epochs_run(&run, name) >= 3);
    assert_eq!(t["status"]["observation"]["metrics"][0]["max"], "0.7378");
    assert_eq!(t["status"]["observation"]["metrics"][0]["latest"], "0.7378");
    let rules = t["spec"]["earlyStoppingRules"].as_array().unwrap();
    let steps: Vec<i64> = rules.iter().map(|r| r["startStep"].as_i64().unwrap()).collect();
    assert_eq!(steps, [1, 3]);
}

#[test]
fn invalid_early_stopping_settings_fail_the_run_up_front() {
    let s = Scratch::new();
    let text = experiment(
        "es-bad",
        "    algorithmName: asha\n    algorithmSettings:\n      - {name: eta, value: \"1\"}",
    );
    let f = s.write("bad.yaml", &text);
    let r = s.run_json(&f, &[]);
    assert_eq!(r.code, 2, "{}", r.context());
    assert!(
        r.stderr.contains("asha: eta \"1\" must be an integer >= 2"),
        "{}",
        r.context()
    );
    assert!(
        r.stderr.contains("asha: max_resource is required"),
        "{}",
        r.context()
    );
    assert!(r.trials.is_empty());
}

#[test]
fn the_examples_run_and_stop_trials() {
    for example in ["early-stopping-medianstop.yaml", "early-stopping-asha.yaml"] {
        let s = Scratch::new();
        let f = s.write(
            example,
            &variant(example, &[("maxTrialCount: 18", "maxTrialCount: 9")]),
        );
        let r = s.run_json(&f, &[]);
        assert_eq!(r.code, 0, "{example}: {}", r.context());
        assert!(
            r.status_i64("trialsEarlyStopped") >= 1,
            "{example}: {}",
            r.context()
        );
        let best = &r.experiment["status"]["currentOptimalTrial"];
        let acc: f64 = best["observation"]["metrics"][0]["max"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // Diverging trials (lr above 0.1) stay below 0.45. Which learning rates random search
        // draws depends on how completions were batched into GetSuggestions calls (the seed
        // mixes in the history's length), so only "the best is a healthy trial" is stable:
        // all 9 draws diverging has probability (1/3)^9.
        assert!(acc > 0.5, "{example}: best accuracy {acc}");
    }
}

const STUB_SCRIPT: &str = r#"
import sys, grpc
from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as rpc
es_addr, db_addr = sys.argv[1], sys.argv[2]
es_ch = grpc.insecure_channel(es_addr)
grpc.channel_ready_future(es_ch).result(timeout=30)
es = rpc.EarlyStoppingStub(es_ch)
db = rpc.DBManagerStub(grpc.insecure_channel(db_addr))

def spec(name, settings=()):
    return pb.EarlyStoppingSpec(algorithm_name=name,
        algorithm_settings=[pb.EarlyStoppingSetting(name=k, value=v) for k, v in settings])

# ValidateEarlyStoppingSettings: good and bad.
es.ValidateEarlyStoppingSettings(pb.ValidateEarlyStoppingSettingsRequest(early_stopping=spec("medianstop")), timeout=10)
es.ValidateEarlyStoppingSettings(pb.ValidateEarlyStoppingSettingsRequest(
    early_stopping=spec("medianstop", [("min_trials_required", "2"), ("start_step", "3")])), timeout=10)
es.ValidateEarlyStoppingSettings(pb.ValidateEarlyStoppingSettingsRequest(
    early_stopping=spec("asha", [("max_resource", "27"), ("eta", "3")])), timeout=10)
for name, settings, needle in [
        ("medianstop", [("min_trials_required", "0")], "min_trials_required must be greater than zero (>0)"),
        ("medianstop", [("start_step", "0")], "start_step must be greater or equal than one (>=1)"),
        ("medianstop", [("foo", "1")], "unknown setting foo for algorithm medianstop"),
        ("asha", [], "max_resource is required"),
        ("asha", [("max_resource", "9"), ("eta", "1.5")], "eta"),
        ("no-such", [], "unknown algorithm name")]:
    try:
        es.ValidateEarlyStoppingSettings(pb.ValidateEarlyStoppingSettingsRequest(early_stopping=spec(name, settings)), timeout=10)
        raise SystemExit("accepted %s %r" % (name, settings))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert needle in e.details(), e.details()
        print("rejected:", e.details())

# GetEarlyStoppingRules reads the trials' logs from db-manager.
curves = {"py-a": [0.2, 0.4, 0.6, 0.8, 0.9], "py-b": [0.3, 0.3, 0.3, 0.3], "py-c": [0.5, 0.6, 0.7, 0.8], "py-r": [0.1]}
for trial, values in curves.items():
    logs = [pb.MetricLog(time_stamp="2026-01-01T00:00:%02dZ" % i, metric=pb.Metric(name="accuracy", value=str(v)))
            for i, v in enumerate(values)]
    db.ReportObservationLog(pb.ReportObservationLogRequest(trial_name=trial, observation_log=pb.ObservationLog(metric_logs=logs)), timeout=10)

def experiment(early):
    return pb.Experiment(name="py-es", spec=pb.ExperimentSpec(
        objective=pb.ObjectiveSpec(type=pb.MAXIMIZE, objective_metric_name="accuracy"),
        early_stopping=early))

def trial(name, condition):
    return pb.Trial(name=name, status=pb.TrialStatus(condition=condition))

succeeded = [trial("py-a", pb.TrialStatus.SUCCEEDED), trial("py-b", pb.TrialStatus.SUCCEEDED)]
reply = es.GetEarlyStoppingRules(pb.GetEarlyStoppingRulesRequest(
    experiment=experiment(spec("medianstop")), trials=succeeded, db_manager_address=db_addr), timeout=10)
assert len(reply.early_stopping_rules) == 0, reply  # 2 < min_trials_required 3

trials = succeeded + [trial("py-c", pb.TrialStatus.SUCCEEDED), trial("py-r", pb.TrialStatus.RUNNING)]
reply = es.GetEarlyStoppingRules(pb.GetEarlyStoppingRulesRequest(
    experiment=experiment(spec("medianstop")), trials=trials, db_manager_address=db_addr), timeout=10)
assert len(reply.early_stopping_rules) == 1, reply
r = reply.early_stopping_rules[0]
# Katib's threshold: the mean of the first-4 averages 0.5, 0.3, 0.65.
assert r.name == "accuracy" and r.comparison == pb.LESS and r.start_step == 4, r
assert abs(float(r.value) - (0.5 + 0.3 + 0.65) / 3) < 1e-9, r.value
reply = es.GetEarlyStoppingRules(pb.GetEarlyStoppingRulesRequest(
    experiment=experiment(spec("medianstop", [("rule", "median")])), trials=trials, db_manager_address=db_addr), timeout=10)
assert abs(float(reply.early_stopping_rules[0].value) - 0.5) < 1e-9, reply

reply = es.GetEarlyStoppingRules(pb.GetEarlyStoppingRulesRequest(
    experiment=experiment(spec("asha", [("max_resource", "9")])), trials=trials, db_manager_address=db_addr), timeout=10)
got = [(r.start_step, r.value, r.comparison) for r in reply.early_stopping_rules]
# Rung 1: 0.2, 0.3, 0.5, 0.1 -> keep 2 -> 0.3. Rung 3: best by step 3 of a, b, c: 0.6, 0.3, 0.7 -> keep 1 -> 0.7.
assert got == [(1, "0.3", pb.LESS), (3, "0.7", pb.LESS)], got

try:
    es.SetTrialStatus(pb.SetTrialStatusRequest(trial_name="py-a"), timeout=10)
    raise SystemExit("standalone SetTrialStatus succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e
print("OK")
"#;

#[test]
fn kubeflow_katib_early_stopping_stub() {
    if !python_katib_available("kubeflow_katib_early_stopping_stub") {
        return;
    }
    let s = Scratch::new();
    let db = format!("sqlite://{}", s.path().join("es.db").display());
    let db = start_service(&s, &["db-manager", "--db", &db]);
    let es = start_service(&s, &["suggestion"]);
    let (ok, out, err) = python(STUB_SCRIPT, &[&es.addr, &db.addr]);
    assert!(ok && out.contains("OK"), "stdout:\n{out}\nstderr:\n{err}");
}
