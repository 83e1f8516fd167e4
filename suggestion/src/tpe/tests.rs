use std::collections::HashSet;

use super::*;
use crate::space::testing::*;
use pb::trial_status::TrialConditionType as C;

fn request(
    algorithm: &str,
    settings: &[(&str, &str)],
    params: Vec<pb::ParameterSpec>,
    trials: Vec<pb::Trial>,
    n: i32,
) -> SuggestRequest {
    request_for(algorithm, settings, params, trials, n, n)
}

fn both() -> [Tpe; 2] {
    [Tpe::independent(), Tpe::multivariate()]
}

/// Every parameter type and distribution, stepped and not.
fn all_types() -> Vec<pb::ParameterSpec> {
    use pb::Distribution as D;
    vec![
        double("u", "-1", "1", ""),
        double_dist("lu", "0.0001", "1", "", D::LogUniform),
        double_dist("n", "0", "10", "", D::Normal),
        double_dist("ln", "1", "100", "", D::LogNormal),
        double("su", "0.01", "0.05", "0.01"),
        double_dist("slu", "0.001", "1", "0.001", D::LogUniform),
        int("i", "-5", "5", "2"),
        int_dist("il", "1", "1000", "", D::LogUniform),
        discrete("d", &["1", "2.5", "10"]),
        categorical("c", &["a", "b", "c"]),
        double("fixed", "3", "3", ""),
    ]
}

/// `k` finished trials over [`all_types`] with accuracies from a simple function.
fn history(k: usize, seed: u64) -> Vec<pb::Trial> {
    let req = request(
        "random",
        &[("random_state", &seed.to_string())],
        all_types(),
        vec![],
        k as i32,
    );
    let out = crate::Random.suggest(&req).unwrap();
    out.assignments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let pairs: Vec<(&str, &str)> = a.iter().map(|a| (a.name.as_str(), a.value.as_str())).collect();
            let u: f64 = a[0].value.parse().unwrap();
            let acc = format!("{}", 1.0 - u * u);
            let cond = match i % 7 {
                5 => C::Failed,
                6 => C::Earlystopped,
                _ => C::Succeeded,
            };
            trial(&format!("t{i}"), &pairs, cond, Some(&acc))
        })
        .collect()
}

#[test]
fn validates_settings() {
    let params = || vec![double("lr", "0.01", "0.1", "")];
    for tpe in both() {
        let name = tpe.name();
        assert!(tpe.validate(&experiment(name, &[], params())).is_ok());
        let good = [
            ("n_startup_trials", "0"),
            ("n_ei_candidates", "5"),
            ("gamma", "0.25"),
            ("prior_weight", "2.5"),
            ("random_state", "7"),
            ("multivariate", "false"),
        ];
        assert!(tpe.validate(&experiment(name, &good, params())).is_ok());
        assert!(
            tpe.validate(&experiment(name, &[("n_EI_candidates", "30")], params()))
                .is_ok()
        );
        let err = tpe
            .validate(&experiment(
                name,
                &[
                    ("n_startup_trials", "-1"),
                    ("n_ei_candidates", "0"),
                    ("gamma", "1"),
                    ("prior_weight", "0"),
                    ("random_state", "x"),
                    ("multivariate", "yes"),
                    ("foo", "1"),
                ],
                params(),
            ))
            .unwrap_err();
        assert_eq!(
            err.problems(),
            [
                format!(
                    "unknown setting foo for algorithm {name}; allowed: n_startup_trials, n_ei_candidates, n_EI_candidates, gamma, prior_weight, random_state, multivariate"
                ),
                format!("setting n_startup_trials of algorithm {name}: \"-1\" is not an integer >= 0"),
                format!("setting n_ei_candidates of algorithm {name}: \"0\" is not an integer >= 1"),
                format!("setting gamma of algorithm {name}: \"1\" is not a number in (0, 1)"),
                format!("setting prior_weight of algorithm {name}: \"0\" is not a number > 0"),
                format!("setting random_state of algorithm {name}: \"x\" is not an integer >= 0"),
                format!("setting multivariate of algorithm {name}: \"yes\" is not true or false"),
            ]
        );
        let err = tpe
            .validate(&experiment(
                name,
                &[("n_ei_candidates", "10"), ("n_EI_candidates", "12")],
                params(),
            ))
            .unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");
    }
}

#[test]
fn needs_an_objective_direction() {
    let mut exp = experiment("tpe", &[], vec![double("lr", "0", "1", "")]);
    exp.spec.as_mut().unwrap().objective.as_mut().unwrap().r#type = pb::ObjectiveType::Unknown as i32;
    let err = Tpe::independent().validate(&exp).unwrap_err();
    assert_eq!(
        err.to_string(),
        "algorithm tpe needs objective.type minimize or maximize"
    );
}

#[test]
fn gamma_splits_like_optuna_or_hyperopt() {
    let optuna = TpeSettings::default();
    assert_eq!(
        [0, 1, 10, 11, 100, 1000].map(|n| optuna.n_below(n)),
        [0, 1, 1, 2, 10, 25]
    );
    let hyperopt = TpeSettings {
        gamma: Some(0.25),
        ..TpeSettings::default()
    };
    assert_eq!([1, 16, 100, 100_000].map(|n| hyperopt.n_below(n)), [1, 1, 3, 25]);
}

#[test]
fn every_parameter_type_stays_in_the_space() {
    for tpe in both() {
        for seed in 0..3 {
            let req = request(
                tpe.name(),
                &[("random_state", &seed.to_string()), ("n_startup_trials", "5")],
                all_types(),
                history(30, seed),
                8,
            );
            let out = tpe.suggest(&req).unwrap();
            assert_eq!(out.assignments.len(), 8);
            for a in &out.assignments {
                let point = req
                    .space
                    .parse_assignments(a)
                    .unwrap_or_else(|| panic!("{}: not in the space: {a:?}", tpe.name()));
                for (p, c) in req.space.parameters().iter().zip(&point) {
                    if let (crate::space::Domain::Double(d), Coord::Real(x)) = (&p.domain, c) {
                        assert!((d.min..=d.max).contains(x), "{}={x}", p.name);
                    }
                }
                assert!(a[4].value.len() <= 4, "exact decimal: {}", a[4].value);
                assert_eq!(a[10].value, "3");
            }
        }
    }
}

#[test]
fn random_state_makes_runs_reproducible() {
    for tpe in both() {
        let run = |seed: &str| {
            tpe.suggest(&request(
                tpe.name(),
                &[("random_state", seed)],
                all_types(),
                history(25, 1),
                4,
            ))
            .unwrap()
        };
        assert_eq!(run("42"), run("42"));
        assert_ne!(values(&run("42")), values(&run("43")));
    }
}

#[test]
fn startup_is_random_then_the_model_takes_over() {
    // Minimize (x - 0.2)^2 on [0, 1]: after startup, suggestions crowd around 0.2.
    for tpe in both() {
        let params = || vec![double("x", "0", "1", "")];
        let mut trials = Vec::new();
        for i in 0..40 {
            let req = request(tpe.name(), &[("random_state", "5")], params(), trials.clone(), 1);
            let out = tpe.suggest(&req).unwrap();
            let x: f64 = out.assignments[0][0].value.parse().unwrap();
            // The experiment maximizes accuracy.
            let acc = format!("{}", -(x - 0.2) * (x - 0.2));
            trials.push(trial(
                &format!("t{i}"),
                &[("x", &out.assignments[0][0].value)],
                C::Succeeded,
                Some(&acc),
            ));
        }
        let last: Vec<f64> = trials[30..]
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
        let near = last.iter().filter(|x| (*x - 0.2).abs() < 0.1).count();
        // Uniform sampling would put 2 of 10 there.
        assert!(near >= 5, "{}: {last:?}", tpe.name());
    }
}

#[test]
fn batches_spread_out_and_finite_spaces_never_repeat() {
    let params = || {
        vec![
            int("a", "1", "4", ""),
            categorical("b", &["x", "y"]),
            double("c", "0.1", "0.3", "0.1"),
        ]
    };
    // 24 points; 12 finished, 2 running.
    let mut trials = Vec::new();
    let space = SearchSpace::from_experiment(&experiment("tpe", &[], params())).unwrap();
    for c in 0..14u128 {
        let p: Vec<Coord> = space
            .decode(c * 24 / 14)
            .unwrap()
            .into_iter()
            .map(Coord::Index)
            .collect();
        let a = space.render(&p).unwrap();
        let pairs: Vec<(&str, &str)> = a.iter().map(|a| (a.name.as_str(), a.value.as_str())).collect();
        let cond = if c < 12 { C::Succeeded } else { C::Running };
        trials.push(trial(
            &format!("t{c}"),
            &pairs,
            cond,
            Some(&format!("{}", c as f64 / 10.0)),
        ));
    }
    let taken: HashSet<Vec<String>> = trials.iter().map(trial_values).collect();
    for tpe in both() {
        let out = tpe
            .suggest(&request(
                tpe.name(),
                &[("random_state", "1"), ("n_startup_trials", "3")],
                params(),
                trials.clone(),
                6,
            ))
            .unwrap();
        let got: HashSet<Vec<String>> = values(&out).into_iter().collect();
        assert_eq!(got.len(), 6, "{}: duplicates within the batch", tpe.name());
        assert!(got.is_disjoint(&taken), "{}: repeats history", tpe.name());
        // Asking for everything that is left, and more.
        let out = tpe
            .suggest(&request(
                tpe.name(),
                &[("n_startup_trials", "3")],
                params(),
                trials.clone(),
                20,
            ))
            .unwrap();
        assert_eq!(out.assignments.len(), 10, "{}", tpe.name());
        assert!(out.exhausted);
        let got: HashSet<Vec<String>> = values(&out).into_iter().collect();
        assert_eq!(got.len(), 10);
        assert!(got.is_disjoint(&taken));
    }
}

#[test]
fn continuous_batches_do_not_pile_up() {
    for tpe in both() {
        let out = tpe
            .suggest(&request(
                tpe.name(),
                &[("random_state", "2")],
                all_types(),
                history(40, 3),
                10,
            ))
            .unwrap();
        let got: HashSet<Vec<String>> = values(&out).into_iter().collect();
        assert_eq!(got.len(), 10);
    }
}

#[test]
fn minimize_and_maximize_mirror_each_other() {
    // The same history with negated values and the opposite direction gives the same
    // suggestions.
    let params = || vec![double("x", "0", "1", ""), int("k", "0", "10", "")];
    let trials = |sign: f64| -> Vec<pb::Trial> {
        (0..20)
            .map(|i| {
                let x = format!("{}", (i as f64 * 0.37) % 1.0);
                let k = format!("{}", (i * 3) % 11);
                let v = format!("{}", sign * ((i as f64 * 0.37) % 1.0 - 0.3).abs());
                trial(&format!("t{i}"), &[("x", &x), ("k", &k)], C::Succeeded, Some(&v))
            })
            .collect()
    };
    for tpe in both() {
        let max = request(tpe.name(), &[("random_state", "9")], params(), trials(-1.0), 3);
        let mut min = request(tpe.name(), &[("random_state", "9")], params(), trials(1.0), 3);
        let mut space_min = min.space.clone();
        space_min = SearchSpace::new(
            space_min.parameters().to_vec(),
            Some(crate::space::Objective {
                direction: Direction::Minimize,
                metric_name: "accuracy".into(),
            }),
        );
        min.space = space_min;
        assert_eq!(tpe.suggest(&max).unwrap(), tpe.suggest(&min).unwrap());
    }
}

/// Time of one call at 1000 observations, split into request conversion and the algorithm
/// (`cargo test --release -p katib-suggestion tpe::tests::speed_probe -- --ignored --nocapture`).
#[test]
#[ignore = "a benchmark probe, not a test"]
fn speed_probe() {
    use rand::SeedableRng as _;
    let f = crate::testfunctions::hartmann6();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
    let exp0 = f.experiment("tpe", &[], 2000);
    let space = SearchSpace::from_experiment(&exp0).unwrap();
    let trials: Vec<pb::Trial> = (0..1000)
        .map(|i| {
            let p = crate::random::sample_point(&space, &mut rng);
            let a = space.render(&p).unwrap();
            let v = f.evaluate(&a).unwrap();
            crate::testfunctions::completed_trial(&format!("t{i}"), a, v)
        })
        .collect();
    let only = std::env::var("ALGO").ok();
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    for algo in ["tpe", "multivariate-tpe", "sobol"] {
        if only.as_deref().is_some_and(|o| o != algo) {
            continue;
        }
        let pbreq = pb::GetSuggestionsRequest {
            experiment: Some(f.experiment(algo, &[("random_state", "1")], 2000)),
            trials: trials.clone(),
            current_request_number: 1,
            total_request_number: 1001,
        };
        let registry = crate::Registry::builtin();
        let alg = registry.get(algo).unwrap();
        let mut conv = Vec::new();
        let mut run = Vec::new();
        for _ in 0..reps {
            let t0 = std::time::Instant::now();
            let req = SuggestRequest::from_pb(&pbreq).unwrap();
            let t1 = std::time::Instant::now();
            let out = alg.suggest(&req).unwrap();
            let t2 = std::time::Instant::now();
            assert_eq!(out.assignments.len(), 1);
            conv.push((t1 - t0).as_secs_f64() * 1e3);
            run.push((t2 - t1).as_secs_f64() * 1e3);
        }
        conv.sort_by(f64::total_cmp);
        run.sort_by(f64::total_cmp);
        println!(
            "{algo}: from_pb p50 {:.3} ms, suggest p50 {:.3} ms",
            conv[10], run[10]
        );
    }
}
