//! The model-based suggestion algorithms end to end, one table row per algorithm:
//! - driven through kubeflow-katib's own Python `SuggestionStub` against `katib suggestion`
//!   (settings validated and refused by name, batches inside the space, no repeats in a finite
//!   space, pending trials honoured);
//! - their example experiment run with `katib run`.
//!
//! Add an algorithm by adding a row to [`CASES`].

use crate::harness::*;

/// One algorithm under test.
struct Case {
    /// Katib `algorithmName`.
    algorithm: &'static str,
    /// Valid settings (JSON object text) for the stub script.
    settings: &'static str,
    /// A setting value the service must refuse, as `(name, value)`.
    bad_setting: (&'static str, &'static str),
    /// The example experiment under `examples/`.
    example: &'static str,
    /// Its `maxTrialCount`.
    max_trials: i64,
}

const CASES: &[Case] = &[Case {
    algorithm: "bayesianoptimization",
    settings: r#"{"n_initial_points": "4", "acq_func": "gp_hedge", "random_state": "7"}"#,
    bad_setting: ("acq_func", "EIps"),
    example: "bayesian-optimization.yaml",
    max_trials: 15,
}];

const STUB_SCRIPT: &str = r#"
import json, math, sys, grpc
from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as rpc
addr, algo, settings, bad_name, bad_value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
ch = grpc.insecure_channel(addr)
grpc.channel_ready_future(ch).result(timeout=30)
s = rpc.SuggestionStub(ch)

def experiment(params, settings, objective=pb.MAXIMIZE):
    return pb.Experiment(name="py-" + algo, spec=pb.ExperimentSpec(
        parameter_specs=pb.ExperimentSpec.ParameterSpecs(parameters=params),
        objective=pb.ObjectiveSpec(type=objective, objective_metric_name="accuracy"),
        algorithm=pb.AlgorithmSpec(algorithm_name=algo,
                                   algorithm_settings=[pb.AlgorithmSetting(name=k, value=v) for k, v in settings.items()]),
        parallel_trial_count=3, max_trial_count=30))

mixed = [
    pb.ParameterSpec(name="lr", parameter_type=pb.DOUBLE,
                     feasible_space=pb.FeasibleSpace(min="0.0001", max="0.1", distribution=pb.LOG_UNIFORM)),
    pb.ParameterSpec(name="momentum", parameter_type=pb.DOUBLE,
                     feasible_space=pb.FeasibleSpace(min="0.5", max="0.95", step="0.05")),
    pb.ParameterSpec(name="layers", parameter_type=pb.INT, feasible_space=pb.FeasibleSpace(min="1", max="8")),
    pb.ParameterSpec(name="batch", parameter_type=pb.DISCRETE, feasible_space=pb.FeasibleSpace(list=["16", "32", "64"])),
    pb.ParameterSpec(name="opt", parameter_type=pb.CATEGORICAL, feasible_space=pb.FeasibleSpace(list=["sgd", "adam", "rmsprop"])),
]
MOMENTA = ["%g" % (0.5 + 0.05 * k) for k in range(10)]

def check(g):
    assert 0.0001 <= float(g["lr"]) <= 0.1, g
    assert g["momentum"] in MOMENTA, g  # exact decimals on the step grid
    assert g["layers"] in [str(i) for i in range(1, 9)], g
    assert g["batch"] in ["16", "32", "64"], g
    assert g["opt"] in ["sgd", "adam", "rmsprop"], g

def accuracy(g):
    q = math.exp(-(math.log10(float(g["lr"])) + 2) ** 2 / 2 - (float(g["momentum"]) - 0.8) ** 2 * 10 - (int(g["layers"]) - 3) ** 2 / 10)
    return q * {"sgd": 1.0, "adam": 0.95, "rmsprop": 0.9}[g["opt"]]

def trial(i, g, condition, value=None):
    obs = pb.Observation(metrics=[pb.Metric(name="accuracy", value=str(value))]) if value is not None else None
    return pb.Trial(name="t%d" % i, spec=pb.TrialSpec(parameter_assignments=pb.TrialSpec.ParameterAssignments(
        assignments=[pb.ParameterAssignment(name=k, value=v) for k, v in g.items()])),
        status=pb.TrialStatus(condition=condition, observation=obs))

s.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment(mixed, settings)), timeout=30)
for bad in [{bad_name: bad_value}, dict(settings, no_such_setting="1")]:
    try:
        s.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=experiment(mixed, bad)), timeout=30)
        raise SystemExit("accepted bad settings %r" % (bad,))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        name = [k for k in bad if k not in settings or bad[k] != settings[k]][0]
        assert name in e.details(), e.details()
        print("rejected:", e.details())

# Rounds of 3 with the previous round still running, then completed.
trials = []
for rnd in range(6):
    reply = s.GetSuggestions(pb.GetSuggestionsRequest(experiment=experiment(mixed, settings), trials=trials,
                                                      current_request_number=3, total_request_number=len(trials) + 3), timeout=60)
    got = [{a.name: a.value for a in p.assignments} for p in reply.parameter_assignments]
    assert len(got) == 3, got
    for g in got:
        check(g)
    assert len({tuple(sorted(g.items())) for g in got}) == 3, got
    # The earlier rounds complete (one fails), this one stays running for the next call.
    trials = [trial(i, {a.name: a.value for a in t.spec.parameter_assignments.assignments},
                    pb.TrialStatus.FAILED if i == 1 else pb.TrialStatus.SUCCEEDED,
                    None if i == 1 else accuracy({a.name: a.value for a in t.spec.parameter_assignments.assignments}))
              for i, t in enumerate(trials)]
    trials += [trial(len(trials) + j, g, pb.TrialStatus.RUNNING) for j, g in enumerate(got)]
print("mixed space ok after", len(trials), "trials")

# A finite space: never a repeat, then a short (exhausted) reply.
finite = [pb.ParameterSpec(name="a", parameter_type=pb.INT, feasible_space=pb.FeasibleSpace(min="1", max="3")),
          pb.ParameterSpec(name="b", parameter_type=pb.CATEGORICAL, feasible_space=pb.FeasibleSpace(list=["x", "y"]))]
seen, trials = set(), []
for rnd in range(5):
    reply = s.GetSuggestions(pb.GetSuggestionsRequest(experiment=experiment(finite, settings, pb.MINIMIZE), trials=trials,
                                                      current_request_number=2, total_request_number=len(trials) + 2), timeout=60)
    got = [{a.name: a.value for a in p.assignments} for p in reply.parameter_assignments]
    for g in got:
        key = (g["a"], g["b"])
        assert key not in seen, (key, seen)
        seen.add(key)
        trials.append(trial(len(trials), g, pb.TrialStatus.SUCCEEDED, int(g["a"]) + (g["b"] == "y")))
    if len(got) < 2:
        break
assert len(seen) == 6, seen
print("OK")
"#;

#[test]
fn kubeflow_katib_suggestion_stub_drives_each_algorithm() {
    if !python_katib_available("kubeflow_katib_suggestion_stub_drives_each_algorithm") {
        return;
    }
    let s = Scratch::new();
    let svc = start_service(&s, &["suggestion"]);
    for case in CASES {
        let (ok, out, err) = python(
            STUB_SCRIPT,
            &[
                &svc.addr,
                case.algorithm,
                case.settings,
                case.bad_setting.0,
                case.bad_setting.1,
            ],
        );
        assert!(
            ok && out.contains("OK"),
            "{}:\nstdout:\n{out}\nstderr:\n{err}",
            case.algorithm
        );
    }
}

#[test]
fn each_algorithm_example_runs_to_max_trials() {
    for case in CASES {
        let s = Scratch::new();
        let r = s.run_json(&examples().join(case.example), &[]);
        assert_eq!(r.code, 0, "{}: {}", case.algorithm, r.context());
        let (kind, reason) = r.last_condition();
        assert_eq!(kind, "Succeeded", "{}: {}", case.algorithm, r.context());
        assert!(
            reason == "ExperimentMaxTrialsReached" || reason == "ExperimentGoalReached",
            "{}: {reason}",
            case.algorithm
        );
        if reason == "ExperimentMaxTrialsReached" {
            assert_eq!(r.status_i64("trials"), case.max_trials, "{}", case.algorithm);
        }
        assert_eq!(
            r.status_i64("trialsSucceeded"),
            r.status_i64("trials"),
            "{}",
            case.algorithm
        );
        assert_eq!(r.experiment["spec"]["algorithm"]["algorithmName"], case.algorithm);
        // Every trial is distinct.
        let mut seen = std::collections::HashSet::new();
        for t in &r.trials {
            let a = t["spec"]["parameterAssignments"].to_string();
            assert!(seen.insert(a.clone()), "{}: repeated {a}", case.algorithm);
        }
    }
}
