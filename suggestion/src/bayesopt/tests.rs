use std::collections::HashSet;

use katib_api::pb;
use pb::trial_status::TrialConditionType as C;

use super::*;
use crate::space::testing::*;

const NAME: &str = BayesianOptimization::NAME;

fn request(
    settings: &[(&str, &str)],
    params: Vec<pb::ParameterSpec>,
    trials: Vec<pb::Trial>,
    n: i32,
) -> SuggestRequest {
    request_for(NAME, settings, params, trials, n, n)
}

fn mixed() -> Vec<pb::ParameterSpec> {
    vec![
        double_dist("lr", "0.0001", "0.1", "", pb::Distribution::LogUniform),
        double("momentum", "0.5", "0.95", ""),
        double("wd", "0", "0.01", "0.001"),
        int("layers", "1", "6", ""),
        int_dist("units", "16", "512", "16", pb::Distribution::LogUniform),
        discrete("batch", &["32", "64", "128"]),
        categorical("opt", &["sgd", "adam", "rmsprop"]),
    ]
}

/// A made-up objective over the mixed space (accuracy, maximized).
fn accuracy(a: &[pb::ParameterAssignment]) -> f64 {
    let get = |n: &str| a.iter().find(|p| p.name == n).unwrap().value.clone();
    let lr: f64 = get("lr").parse().unwrap();
    let m: f64 = get("momentum").parse().unwrap();
    let layers: f64 = get("layers").parse().unwrap();
    let opt = match get("opt").as_str() {
        "adam" => 0.05,
        _ => 0.0,
    };
    1.0 - (lr.log10() + 2.0).powi(2) / 8.0 - (m - 0.9).powi(2) - (layers - 3.0).powi(2) / 50.0 + opt
}

fn as_trial(i: usize, a: &[pb::ParameterAssignment], condition: C, v: Option<f64>) -> pb::Trial {
    let pairs: Vec<(&str, String)> = a.iter().map(|p| (p.name.as_str(), p.value.clone())).collect();
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let acc = v.map(|v| format!("{v}"));
    trial(&format!("t{i}"), &pairs, condition, acc.as_deref())
}

/// Runs `rounds` calls of `batch` suggestions, completing each with `f`.
fn run(
    settings: &[(&str, &str)],
    params: Vec<pb::ParameterSpec>,
    rounds: usize,
    batch: i32,
    f: &dyn Fn(&[pb::ParameterAssignment]) -> f64,
) -> Vec<pb::Trial> {
    let mut trials: Vec<pb::Trial> = Vec::new();
    for _ in 0..rounds {
        let req = request(settings, params.clone(), trials.clone(), batch);
        let s = BayesianOptimization.suggest(&req).unwrap();
        assert_eq!(s.assignments.len(), batch as usize);
        for a in &s.assignments {
            let i = trials.len();
            trials.push(as_trial(i, a, C::Succeeded, Some(f(a))));
        }
    }
    trials
}

#[test]
fn settings_are_validated_with_every_problem_named() {
    let ok = experiment(
        NAME,
        &[
            ("base_estimator", "gp"),
            ("n_initial_points", "3"),
            ("acq_func", "EI"),
            ("acq_optimizer", "sampling"),
            ("random_state", "7"),
        ],
        mixed(),
    );
    BayesianOptimization.validate(&ok).unwrap();
    let s = BoSettings::from_settings(&AlgorithmSettings::from_experiment(&ok)).unwrap();
    assert_eq!(
        s,
        BoSettings {
            n_initial_points: 3,
            acq_func: AcqFunc::Single(Acq::Ei),
            acq_optimizer: AcqOptimizer::Sampling,
            random_state: Some(7),
        }
    );
    for v in ["gp_hedge", "LCB", "pi"] {
        let e = experiment(NAME, &[("acq_func", v)], mixed());
        BayesianOptimization.validate(&e).unwrap();
    }
    let bad = experiment(
        NAME,
        &[
            ("base_estimator", "RF"),
            ("n_initial_points", "-1"),
            ("acq_func", "EIps"),
            ("acq_optimizer", "newton"),
            ("random_state", "x"),
            ("kappa", "2"),
        ],
        mixed(),
    );
    let err = BayesianOptimization.validate(&bad).unwrap_err();
    let p = err.problems();
    assert_eq!(p.len(), 6, "{p:?}");
    assert_eq!(
        p[0],
        "unknown setting kappa for algorithm bayesianoptimization; allowed: base_estimator, n_initial_points, acq_func, acq_optimizer, random_state"
    );
    assert!(p[1].contains("base_estimator") && p[1].contains("RF"), "{}", p[1]);
    assert!(p[2].contains("n_initial_points") && p[2].contains("-1"));
    assert!(p[3].contains("acq_func") && p[3].contains("EIps"));
    assert!(p[4].contains("acq_optimizer") && p[4].contains("newton"));
    assert!(p[5].contains("random_state"));
    // The request path reports the same (INVALID_ARGUMENT through SuggestError::Settings).
    let req = request(&[("foo", "1")], mixed(), vec![], 1);
    let err = BayesianOptimization.suggest(&req).unwrap_err();
    assert!(matches!(err, SuggestError::Settings(_)));
    assert!(err.to_string().contains("unknown setting foo"));
    // An objective without a direction is refused.
    let mut no_dir = experiment(NAME, &[], mixed());
    no_dir.spec.as_mut().unwrap().objective.as_mut().unwrap().r#type = pb::ObjectiveType::Unknown as i32;
    let err = BayesianOptimization.validate(&no_dir).unwrap_err();
    assert!(err.to_string().contains("needs objective.type"), "{err}");
}

#[test]
fn assignments_stay_in_the_space_and_on_the_grid() {
    let settings = [("random_state", "3"), ("n_initial_points", "4")];
    let trials = run(&settings, mixed(), 6, 3, &accuracy);
    let space = SearchSpace::from_experiment(&experiment(NAME, &[], mixed())).unwrap();
    for t in &trials {
        let a = &t
            .spec
            .as_ref()
            .unwrap()
            .parameter_assignments
            .as_ref()
            .unwrap()
            .assignments;
        let point = space.parse_assignments(a);
        assert!(point.is_some(), "outside the space: {a:?}");
        let get = |n: &str| a.iter().find(|p| p.name == n).unwrap().value.clone();
        // Stepped doubles print as exact decimals.
        let wd = get("wd");
        assert!(wd.len() <= 5, "{wd}");
        let units: i64 = get("units").parse().unwrap();
        assert_eq!(units % 16, 0);
        let lr: f64 = get("lr").parse().unwrap();
        assert!((0.0001..=0.1).contains(&lr));
    }
}

#[test]
fn random_state_makes_runs_reproducible() {
    let settings = [("random_state", "11"), ("n_initial_points", "3")];
    let a = run(&settings, mixed(), 4, 2, &accuracy);
    let b = run(&settings, mixed(), 4, 2, &accuracy);
    assert_eq!(a, b);
    let c = run(
        &[("random_state", "12"), ("n_initial_points", "3")],
        mixed(),
        4,
        2,
        &accuracy,
    );
    assert_ne!(a, c);
}

#[test]
fn finite_spaces_never_repeat_and_report_exhaustion() {
    let params = vec![
        int("a", "1", "3", ""),
        categorical("b", &["x", "y"]),
        double("c", "0", "0.2", "0.1"),
    ];
    let size = 3 * 2 * 3;
    let f = |a: &[pb::ParameterAssignment]| {
        let v: f64 = a[0].value.parse().unwrap();
        let c: f64 = a[2].value.parse().unwrap();
        v + c + if a[1].value == "x" { 0.5 } else { 0.0 }
    };
    let mut trials: Vec<pb::Trial> = Vec::new();
    let mut seen = HashSet::new();
    // A failed trial and a running one are taken too.
    for (i, cond) in [(0, C::Failed), (1, C::Running)] {
        let a = [("a", "2"), ("b", "y"), ("c", "0.1")];
        let a2 = [("a", "3"), ("b", "x"), ("c", "0")];
        let pick = if i == 0 { &a } else { &a2 };
        trials.push(trial(&format!("p{i}"), pick, cond, None));
        seen.insert(pick.iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>());
    }
    loop {
        let req = request(
            &[("random_state", "5"), ("n_initial_points", "3")],
            params.clone(),
            trials.clone(),
            4,
        );
        let s = BayesianOptimization.suggest(&req).unwrap();
        for v in values(&s) {
            assert!(seen.insert(v.clone()), "repeated {v:?}");
        }
        for a in &s.assignments {
            let i = trials.len();
            trials.push(as_trial(i, a, C::Succeeded, Some(f(a))));
        }
        if s.exhausted {
            assert!(s.assignments.len() < 4);
            break;
        }
        assert!(trials.len() <= size + 4, "never exhausted");
    }
    assert_eq!(seen.len(), size);
}

#[test]
fn maximizes_and_minimizes() {
    let params = vec![double("x", "0", "1", "")];
    let f = |a: &[pb::ParameterAssignment]| {
        let x: f64 = a[0].value.parse().unwrap();
        -(x - 0.3) * (x - 0.3)
    };
    for (direction, expect) in [
        (pb::ObjectiveType::Maximize, 0.3),
        (pb::ObjectiveType::Minimize, 1.0),
    ] {
        let mut trials: Vec<pb::Trial> = Vec::new();
        for _ in 0..12 {
            let mut exp = experiment(
                NAME,
                &[("random_state", "1"), ("n_initial_points", "4")],
                params.clone(),
            );
            exp.spec.as_mut().unwrap().objective.as_mut().unwrap().r#type = direction as i32;
            let req = SuggestRequest::from_pb(&pb::GetSuggestionsRequest {
                experiment: Some(exp),
                trials: trials.clone(),
                current_request_number: 1,
                total_request_number: 1,
            })
            .unwrap();
            let s = BayesianOptimization.suggest(&req).unwrap();
            let a = &s.assignments[0];
            let i = trials.len();
            trials.push(as_trial(i, a, C::Succeeded, Some(f(a))));
        }
        let xs: Vec<f64> = trials
            .iter()
            .map(|t| {
                t.spec
                    .as_ref()
                    .unwrap()
                    .parameter_assignments
                    .as_ref()
                    .unwrap()
                    .assignments[0]
                    .value
                    .parse()
                    .unwrap()
            })
            .collect();
        let closest = xs
            .iter()
            .map(|x| (x - expect).abs())
            .fold(f64::INFINITY, f64::min);
        assert!(closest < 0.02, "{direction:?}: {xs:?}");
    }
}

#[test]
fn a_batch_spreads_out_around_pending_points() {
    let params = vec![double("x", "0", "1", ""), double("y", "0", "1", "")];
    let f = |a: &[pb::ParameterAssignment]| {
        let x: f64 = a[0].value.parse().unwrap();
        let y: f64 = a[1].value.parse().unwrap();
        (x - 0.5).powi(2) + (y - 0.5).powi(2)
    };
    let mut trials = run(
        &[("random_state", "2"), ("n_initial_points", "6")],
        params.clone(),
        1,
        6,
        &f,
    );
    for t in &mut trials {
        t.status.as_mut().unwrap().observation.as_mut().unwrap().metrics[0].value = format!(
            "{}",
            -f(&t
                .spec
                .as_ref()
                .unwrap()
                .parameter_assignments
                .as_ref()
                .unwrap()
                .assignments)
        );
    }
    let req = request(
        &[("random_state", "2"), ("n_initial_points", "6")],
        params,
        trials,
        8,
    );
    let s = BayesianOptimization.suggest(&req).unwrap();
    let pts: Vec<(f64, f64)> = s
        .assignments
        .iter()
        .map(|a| (a[0].value.parse().unwrap(), a[1].value.parse().unwrap()))
        .collect();
    let mut closest = f64::INFINITY;
    for i in 0..pts.len() {
        for j in 0..i {
            let d = ((pts[i].0 - pts[j].0).powi(2) + (pts[i].1 - pts[j].1).powi(2)).sqrt();
            closest = closest.min(d);
        }
    }
    assert!(closest > 1e-3, "batch collapsed: {pts:?}");
}

#[test]
fn a_pending_point_where_the_model_promises_improvement_is_not_suggested_again() {
    // A bowl seen through 6 points: the model's predicted minimum lies below every
    // observation, so PI and EI would still rank it first once it is a zero-variance
    // fantasy unless the fantasy also counts as the incumbent.
    let params = vec![double("x", "0", "1", ""), double("y", "0", "1", "")];
    let f = |a: &[pb::ParameterAssignment]| {
        let x: f64 = a[0].value.parse().unwrap();
        let y: f64 = a[1].value.parse().unwrap();
        (x - 0.37).powi(2) + (y - 0.61).powi(2)
    };
    let settings = [
        ("random_state", "4"),
        ("n_initial_points", "6"),
        ("acq_func", "PI"),
    ];
    let mut trials = run(&settings, params.clone(), 6, 1, &f);
    let first = BayesianOptimization
        .suggest(&request(&settings, params.clone(), trials.clone(), 1))
        .unwrap();
    let a = first.assignments[0].clone();
    trials.push(as_trial(trials.len(), &a, C::Running, None));
    let second = BayesianOptimization
        .suggest(&request(&settings, params, trials, 1))
        .unwrap();
    let b = &second.assignments[0];
    let d: f64 = (0..2)
        .map(|i| (a[i].value.parse::<f64>().unwrap() - b[i].value.parse::<f64>().unwrap()).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(d > 1e-3, "suggested the pending point again: {a:?} {b:?}");
}

#[test]
fn failed_trials_are_not_observations() {
    let params = vec![double("x", "0", "1", "")];
    let trials = vec![
        trial("a", &[("x", "0.1")], C::Succeeded, Some("0.2")),
        trial("b", &[("x", "0.9")], C::Failed, Some("99")),
        trial("c", &[("x", "0.5")], C::Earlystopped, Some("0.4")),
        trial("d", &[("x", "0.7")], C::Running, None),
    ];
    let req = request(&[], params, trials, 1);
    let enc = Encoder::new(&req.space);
    let data = read_history(&req, &enc, Direction::Maximize);
    assert_eq!(data.y, vec![-0.2, -0.4]);
    assert_eq!(data.pending.len(), 2);
    assert_eq!(BayesianOptimization.suggest(&req).unwrap().assignments.len(), 1);
}

#[test]
fn every_parameter_type_and_degenerate_spaces_work() {
    // Single-valued parameters only.
    let one = vec![categorical("c", &["only"]), int("n", "4", "4", "")];
    let s = BayesianOptimization
        .suggest(&request(&[], one.clone(), vec![], 2))
        .unwrap();
    assert_eq!(values(&s), vec![vec!["only".to_string(), "4".to_string()]]);
    assert!(s.exhausted);
    // All trials with the same value: the model still answers.
    let params = vec![double("x", "-1", "1", ""), categorical("c", &["a", "b"])];
    let trials: Vec<pb::Trial> = (0..5)
        .map(|i| {
            let x = format!("{}", -0.8 + 0.4 * i as f64);
            trial(
                &format!("t{i}"),
                &[("x", &x), ("c", "a")],
                C::Succeeded,
                Some("1"),
            )
        })
        .collect();
    let s = BayesianOptimization
        .suggest(&request(&[("n_initial_points", "2")], params, trials, 3))
        .unwrap();
    assert_eq!(s.assignments.len(), 3);
    // Every acquisition function and optimizer.
    for acq in ["EI", "PI", "LCB", "gp_hedge"] {
        for opt in ["auto", "sampling"] {
            let trials = run(
                &[
                    ("acq_func", acq),
                    ("acq_optimizer", opt),
                    ("n_initial_points", "3"),
                    ("random_state", "1"),
                ],
                mixed(),
                3,
                2,
                &accuracy,
            );
            assert_eq!(trials.len(), 6);
        }
    }
}

#[test]
fn the_last_share_of_the_budget_refines_only_under_gp_hedge() {
    use super::{AcqFunc, refining};
    assert!(!refining(AcqFunc::GpHedge, 41, Some(50)));
    assert!(refining(AcqFunc::GpHedge, 43, Some(50)));
    assert!(refining(AcqFunc::GpHedge, 49, Some(50)));
    assert!(!refining(AcqFunc::GpHedge, 10_000, None));
    assert!(!refining(AcqFunc::Single(super::Acq::Lcb), 49, Some(50)));
}
