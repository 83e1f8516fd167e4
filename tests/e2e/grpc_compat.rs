//! Wire compatibility with a client nobody here wrote: the gRPC stubs shipped in PyPI's
//! `kubeflow-katib` (module `kubeflow.katib.katib_api_pb2_grpc`) against `katib
//! db-manager` and `katib suggestion` running as separate processes.

use crate::harness::*;

const DB_SCRIPT: &str = r#"
import sys, grpc
from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as rpc
ch = grpc.insecure_channel(sys.argv[1])
grpc.channel_ready_future(ch).result(timeout=30)
db = rpc.DBManagerStub(ch)
logs = [pb.MetricLog(time_stamp="2026-01-01T00:00:0%dZ" % i,
                     metric=pb.Metric(name=n, value=v))
        for i, (n, v) in enumerate([("loss", "0.9"), ("accuracy", "0.5"), ("loss", "-7.53e-05"), ("accuracy", "unavailable")])]
db.ReportObservationLog(pb.ReportObservationLogRequest(trial_name="py-trial", observation_log=pb.ObservationLog(metric_logs=logs)), timeout=10)
got = db.GetObservationLog(pb.GetObservationLogRequest(trial_name="py-trial"), timeout=10).observation_log.metric_logs
assert [(l.metric.name, l.metric.value) for l in got] == [("loss", "0.9"), ("accuracy", "0.5"), ("loss", "-7.53e-05"), ("accuracy", "unavailable")], got
assert got[0].time_stamp == "2026-01-01T00:00:00Z", got[0].time_stamp
only = db.GetObservationLog(pb.GetObservationLogRequest(trial_name="py-trial", metric_name="loss"), timeout=10).observation_log.metric_logs
assert [l.metric.value for l in only] == ["0.9", "-7.53e-05"], only
ranged = db.GetObservationLog(pb.GetObservationLogRequest(trial_name="py-trial", start_time="2026-01-01T00:00:01Z", end_time="2026-01-01T00:00:02Z"), timeout=10).observation_log.metric_logs
assert len(ranged) == 2, ranged
try:
    db.ReportObservationLog(pb.ReportObservationLogRequest(trial_name="py-trial", observation_log=pb.ObservationLog(metric_logs=[pb.MetricLog(time_stamp="yesterday", metric=pb.Metric(name="loss", value="1"))])), timeout=10)
    raise SystemExit("bad timestamp was accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    print("bad timestamp:", e.details())
db.DeleteObservationLog(pb.DeleteObservationLogRequest(trial_name="py-trial"), timeout=10)
assert len(db.GetObservationLog(pb.GetObservationLogRequest(trial_name="py-trial"), timeout=10).observation_log.metric_logs) == 0
print("OK")
"#;

const SUGGESTION_SCRIPT: &str = r#"
import sys, grpc
from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as rpc
ch = grpc.insecure_channel(sys.argv[1])
grpc.channel_ready_future(ch).result(timeout=30)
s = rpc.SuggestionStub(ch)

def experiment(algorithm, settings=()):
    params = [
        pb.ParameterSpec(name="lr", parameter_type=pb.DOUBLE,
                         feasible_space=pb.FeasibleSpace(min="0.01", max="0.05", step="0.01")),
        pb.ParameterSpec(name="layers", parameter_type=pb.INT, feasible_space=pb.FeasibleSpace(min="1", max="3")),
        pb.ParameterSpec(name="opt", parameter_type=pb.CATEGORICAL, feasible_space=pb.FeasibleSpace(list=["sgd", "adam"])),
    ]
    return pb.Experiment(name="py-exp", spec=pb.ExperimentSpec(
        parameter_specs=pb.ExperimentSpec.ParameterSpecs(parameters=params),
        objective=pb.ObjectiveSpec(type=pb.MAXIMIZE, objective_metric_name="accuracy"),
        algorithm=pb.AlgorithmSpec(algorithm_name=algorithm,
                                   algorithm_settings=[pb.AlgorithmSetting(name=k, value=v) for k, v in settings]),
        parallel_trial_count=3, max_trial_count=30))

for algo in ["random", "grid"]:
    s.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment(algo, [("random_state", "3")])), timeout=10)
    reply = s.GetSuggestions(pb.GetSuggestionsRequest(experiment=experiment(algo), current_request_number=5, total_request_number=5), timeout=10)
    got = [{a.name: a.value for a in p.assignments} for p in reply.parameter_assignments]
    assert len(got) == 5, (algo, got)
    for g in got:
        assert g["lr"] in ["0.01", "0.02", "0.03", "0.04", "0.05"], g
        assert g["layers"] in ["1", "2", "3"], g
        assert g["opt"] in ["sgd", "adam"], g
    assert len({tuple(sorted(g.items())) for g in got}) == 5, got
    # Feed them back as trials: the next batch avoids them.
    trials = [pb.Trial(name="t%d" % i, spec=pb.TrialSpec(parameter_assignments=pb.TrialSpec.ParameterAssignments(
                  assignments=[pb.ParameterAssignment(name=k, value=v) for k, v in g.items()])),
                  status=pb.TrialStatus(condition=pb.TrialStatus.SUCCEEDED,
                                        observation=pb.Observation(metrics=[pb.Metric(name="accuracy", value="0.5")])))
              for i, g in enumerate(got)]
    reply = s.GetSuggestions(pb.GetSuggestionsRequest(experiment=experiment(algo), trials=trials, current_request_number=3, total_request_number=8), timeout=10)
    more = [tuple(sorted((a.name, a.value) for a in p.assignments)) for p in reply.parameter_assignments]
    assert len(more) == 3 and not set(more) & {tuple(sorted(g.items())) for g in got}, (algo, more)
    print(algo, "ok")

for algo, settings, needle in [("random", [("random_state", "abc")], "random_state"),
                               ("grid", [("nope", "1")], "nope"),
                               ("no-such-algorithm", [], "no-such-algorithm")]:
    try:
        s.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment(algo, settings)), timeout=10)
        raise SystemExit("accepted bad settings %r" % (settings,))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert needle in e.details(), e.details()
        print("rejected:", e.details())
print("OK")
"#;

#[test]
fn kubeflow_katib_db_manager_stub_round_trip() {
    if !python_katib_available("kubeflow_katib_db_manager_stub_round_trip") {
        return;
    }
    let s = Scratch::new();
    let db = format!("sqlite://{}", s.path().join("compat.db").display());
    let svc = start_service(&s, &["db-manager", "--db", &db]);
    let (ok, out, err) = python(DB_SCRIPT, &[&svc.addr]);
    assert!(ok && out.contains("OK"), "stdout:\n{out}\nstderr:\n{err}");
}

#[test]
fn kubeflow_katib_suggestion_stub_random_and_grid() {
    if !python_katib_available("kubeflow_katib_suggestion_stub_random_and_grid") {
        return;
    }
    let s = Scratch::new();
    let svc = start_service(&s, &["suggestion"]);
    let (ok, out, err) = python(SUGGESTION_SCRIPT, &[&svc.addr]);
    assert!(ok && out.contains("OK"), "stdout:\n{out}\nstderr:\n{err}");
}

#[test]
fn rows_a_trainer_pushes_beside_its_stdout_collector_count() {
    // The collector reports what the trainer prints, and the trainer also pushes a row
    // itself. The trial's observation is its whole log in db-manager, so it must hold the
    // pushed row too (the runtime may only skip reading the log back when db-manager
    // counts exactly the collector's rows).
    if !python_katib_available("rows_a_trainer_pushes_beside_its_stdout_collector_count") {
        return;
    }
    let s = Scratch::new();
    let trainer = s.write(
        "printer_and_pusher.py",
        "import os\nimport kubeflow.katib as katib\n\
         print('accuracy=0.5', flush=True)\nprint('loss=0.9', flush=True)\n\
         katib.report_metrics({'accuracy': 0.95}, db_manager_address=os.environ['KATIB_DB_MANAGER_ADDRESS'])\n",
    );
    let text = variant(
        "random.yaml",
        &[
            ("maxTrialCount: 12", "maxTrialCount: 3"),
            ("\"trainers/train.py\"", &format!("\"{}\"", trainer.display())),
        ],
    );
    let f = s.write("pusher.yaml", &text);
    let shim = report_metrics_shim(s.path());
    let r = s.run_json_with_env(&f, &[], &[("PYTHONPATH", shim.as_os_str())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let exp = &r.experiment;
    assert_eq!(exp["status"]["trialsSucceeded"], 3, "{}", r.stderr);
    let metrics = exp["status"]["currentOptimalTrial"]["observation"]["metrics"]
        .as_array()
        .expect("the best trial has an observation");
    let accuracy = metrics
        .iter()
        .find(|m| m["name"] == "accuracy")
        .expect("accuracy observed");
    // Both the printed 0.5 and the pushed 0.95 are in the trial's log.
    assert_eq!(accuracy["min"], "0.5", "{accuracy}");
    assert_eq!(accuracy["max"], "0.95", "{accuracy}");
}

#[test]
fn kubeflow_katib_report_metrics_push_collector() {
    // A trainer that pushes its metrics with the SDK's `report_metrics` (Push collector).
    if !python_katib_available("kubeflow_katib_report_metrics_push_collector") {
        return;
    }
    let s = Scratch::new();
    let text = variant(
        "random.yaml",
        &[
            ("maxTrialCount: 12", "maxTrialCount: 3"),
            (
                "  parameters:",
                "  metricsCollectorSpec:\n    collector:\n      kind: Push\n  parameters:",
            ),
            (
                "\"--epochs=5\"",
                "\"--epochs=2\"\n                  - \"--format=push\"",
            ),
        ],
    );
    let f = s.write("push.yaml", &text);
    // report_metrics reads the namespace from the in-cluster service-account file; the
    // shim patches that lookup for a local run (the issue's "namespace lookup patched").
    let shim = report_metrics_shim(s.path());
    let r = s.run_json_with_env(&f, &[], &[("PYTHONPATH", shim.as_os_str())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.experiment["status"]["trialsSucceeded"], 3, "{}", r.stderr);
    assert!(r.experiment["status"]["currentOptimalTrial"]["bestTrialName"].is_string());
}
