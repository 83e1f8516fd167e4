//! Table-style tests of the experiment core's decisions.

use super::*;
use katib_api::crd::{
    Condition, Metric, NameValue, ObjectMeta, ObjectiveSpec, Observation, TrialSpec, TrialStatus,
};

fn exp(
    max: Option<i32>,
    parallel: i32,
    max_failed: Option<i32>,
    goal: Option<f64>,
    maximize: bool,
) -> Experiment {
    let mut e: Experiment = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
        "metadata": {"name": "e"},
        "spec": {}
    }))
    .unwrap();
    e.spec.max_trial_count = max;
    e.spec.parallel_trial_count = Some(parallel);
    e.spec.max_failed_trial_count = max_failed;
    e.spec.objective = Some(ObjectiveSpec {
        type_: if maximize { "maximize" } else { "minimize" }.into(),
        goal,
        objective_metric_name: "acc".into(),
        ..Default::default()
    });
    e
}

fn trial(name: &str, cond: &str, acc: Option<&str>) -> Trial {
    let mut conditions = vec![Condition {
        type_: "Created".into(),
        status: "True".into(),
        ..Default::default()
    }];
    if cond != "Created" {
        conditions.push(Condition {
            type_: cond.into(),
            status: "True".into(),
            ..Default::default()
        });
    }
    Trial {
        api_version: String::new(),
        kind: String::new(),
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: TrialSpec {
            parameter_assignments: vec![NameValue {
                name: "x".into(),
                value: name.into(),
            }],
            ..Default::default()
        },
        status: Some(TrialStatus {
            conditions,
            observation: acc.map(|v| Observation {
                metrics: vec![Metric {
                    name: "acc".into(),
                    min: v.into(),
                    max: v.into(),
                    latest: v.into(),
                }],
            }),
            ..Default::default()
        }),
    }
}

fn last_condition(d: &Decision) -> (&str, &str) {
    let c = d.status.conditions.last().unwrap();
    (c.type_.as_str(), c.reason.as_str())
}

#[test]
fn fresh_experiment_is_created_running_and_requests_parallel() {
    let d = decide(
        &exp(Some(10), 3, None, None, true),
        &[],
        &SuggestionState::default(),
        "t0",
    );
    assert!(conditions::is_true(&d.status.conditions, ec::CREATED));
    assert_eq!(last_condition(&d), (ec::RUNNING, ec::REASON_RUNNING));
    assert_eq!(d.request, 3);
    assert_eq!(d.status.start_time.as_deref(), Some("t0"));
    assert!(!d.completed);
}

#[test]
fn request_is_bounded_by_remaining_budget_and_active_trials() {
    let e = exp(Some(5), 3, None, None, true);
    let trials = vec![
        trial("a", "Succeeded", Some("0.1")),
        trial("b", "Succeeded", Some("0.2")),
        trial("c", "Running", None),
    ];
    // 5 - 2 completed = 3 remaining, capped by parallel 3, minus 1 active.
    assert_eq!(decide(&e, &trials, &SuggestionState::default(), "t").request, 2);
    let trials = vec![
        trial("a", "Succeeded", Some("0.1")),
        trial("b", "Succeeded", Some("0.2")),
        trial("c", "Succeeded", Some("0.2")),
        trial("d", "Running", None),
    ];
    // 5 - 3 = 2 remaining, 1 active.
    assert_eq!(decide(&e, &trials, &SuggestionState::default(), "t").request, 1);
}

#[test]
fn metrics_unavailable_counts_as_completed_so_max_is_never_exceeded() {
    let e = exp(Some(3), 3, None, None, true);
    let trials = vec![
        trial("a", "MetricsUnavailable", None),
        trial("b", "Running", None),
        trial("c", "Running", None),
    ];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert_eq!(d.request, 0, "Katib would create a 4th trial here");
    assert_eq!(d.status.trial_metrics_unavailable, 1);
}

#[test]
fn max_trials_reached_succeeds_with_katib_reason() {
    let e = exp(Some(2), 2, None, None, true);
    let trials = vec![
        trial("a", "Succeeded", Some("0.1")),
        trial("b", "Succeeded", Some("0.3")),
    ];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert!(d.completed);
    assert_eq!(last_condition(&d), (ec::SUCCEEDED, ec::REASON_MAX_TRIALS_REACHED));
    assert_eq!(d.status.trials, 2);
    assert_eq!(d.status.trials_succeeded, 2);
    assert_eq!(
        d.status.current_optimal_trial.as_ref().unwrap().best_trial_name,
        "b"
    );
    assert_eq!(d.status.completion_time.as_deref(), Some("t"));
    // Running was never set (it completed in the first pass), so there is nothing to flip.
    assert!(!conditions::is_true(&d.status.conditions, ec::RUNNING));
}

#[test]
fn goal_reached_minimize_and_maximize() {
    let e = exp(Some(10), 2, None, Some(0.2), false);
    let trials = vec![
        trial("a", "Succeeded", Some("0.5")),
        trial("b", "Succeeded", Some("0.2")),
    ];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert_eq!(last_condition(&d), (ec::SUCCEEDED, ec::REASON_GOAL_REACHED));

    let e = exp(Some(10), 2, None, Some(0.9), true);
    let trials = vec![trial("a", "Succeeded", Some("0.89")), trial("b", "Running", None)];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert!(!d.completed);
    let trials = vec![trial("a", "Succeeded", Some("0.95")), trial("b", "Running", None)];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert!(d.completed);
    assert_eq!(
        d.kill,
        vec!["b".to_string()],
        "running trials are stopped when the experiment completes"
    );
}

#[test]
fn max_failed_counts_metrics_unavailable_and_zero_fails_at_first() {
    let e = exp(Some(10), 2, Some(2), None, true);
    let trials = vec![trial("a", "Failed", None), trial("b", "MetricsUnavailable", None)];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert_eq!(last_condition(&d), (ec::FAILED, ec::REASON_FAILED));
    assert_eq!(d.status.trials_failed, 1);
    assert_eq!(d.status.trial_metrics_unavailable, 1);

    let e = exp(Some(10), 2, Some(0), None, true);
    let d = decide(
        &e,
        &[trial("a", "Succeeded", Some("1"))],
        &SuggestionState::default(),
        "t",
    );
    assert!(
        !d.completed,
        "maxFailedTrialCount 0 with no failure keeps running"
    );
    let d = decide(
        &e,
        &[trial("a", "Failed", None)],
        &SuggestionState::default(),
        "t",
    );
    assert_eq!(last_condition(&d), (ec::FAILED, ec::REASON_FAILED));
}

#[test]
fn goal_takes_precedence_over_failures() {
    let e = exp(Some(10), 2, Some(1), Some(0.5), true);
    let trials = vec![trial("a", "Failed", None), trial("b", "Succeeded", Some("0.6"))];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert_eq!(last_condition(&d), (ec::SUCCEEDED, ec::REASON_GOAL_REACHED));
}

#[test]
fn exhaustion_waits_for_active_trials_then_succeeds() {
    let e = exp(Some(100), 3, None, None, true);
    let s = SuggestionState {
        exhausted: true,
        failed: None,
    };
    let trials = vec![trial("a", "Succeeded", Some("0.1")), trial("b", "Running", None)];
    let d = decide(&e, &trials, &s, "t");
    assert!(!d.completed);
    assert_eq!(d.request, 0);
    let trials = vec![
        trial("a", "Succeeded", Some("0.1")),
        trial("b", "Succeeded", Some("0.2")),
    ];
    let d = decide(&e, &trials, &s, "t");
    assert_eq!(
        last_condition(&d),
        (ec::SUCCEEDED, ec::REASON_SUGGESTION_END_REACHED)
    );
}

#[test]
fn suggestion_failure_fails_the_experiment() {
    let e = exp(Some(10), 3, None, None, true);
    let s = SuggestionState {
        exhausted: false,
        failed: Some("bad setting".into()),
    };
    let d = decide(&e, &[], &s, "t");
    assert_eq!(last_condition(&d), (ec::FAILED, ec::REASON_FAILED));
    assert!(
        d.status
            .conditions
            .last()
            .unwrap()
            .message
            .contains("bad setting")
    );
}

#[test]
fn unbounded_experiment_keeps_parallel_trials() {
    let e = exp(None, 4, None, None, true);
    let trials = vec![trial("a", "Succeeded", Some("1")), trial("b", "Running", None)];
    assert_eq!(decide(&e, &trials, &SuggestionState::default(), "t").request, 3);
}

#[test]
fn classification_precedence_and_lists() {
    let e = exp(None, 4, None, None, true);
    let mut killed = trial("k", "Running", None);
    killed.status.as_mut().unwrap().conditions.push(Condition {
        type_: "Killed".into(),
        status: "True".into(),
        ..Default::default()
    });
    let trials = vec![
        killed,
        trial("p", "Created", None),
        trial("es", "EarlyStopped", Some("0.3")),
        trial("r", "Running", None),
    ];
    let d = decide(&e, &trials, &SuggestionState::default(), "t");
    assert_eq!(d.status.killed_trial_list, vec!["k"]);
    assert_eq!(d.status.pending_trial_list, vec!["p"]);
    assert_eq!(d.status.early_stopped_trial_list, vec!["es"]);
    assert_eq!(d.status.running_trial_list, vec!["r"]);
    assert_eq!((d.status.trials_pending, d.status.trials_running), (1, 1));
}

#[test]
fn optimal_trial_strictly_better_and_string_metric_wins() {
    let e = exp(None, 1, None, None, false);
    let trials = vec![
        trial("a", "Succeeded", Some("0.5")),
        trial("b", "Succeeded", Some("0.5")),
        trial("c", "Succeeded", Some("0.7")),
    ];
    assert_eq!(
        optimal_trial(&e, &trials).unwrap().0.metadata.name.as_deref(),
        Some("a")
    );
    let trials = vec![
        trial("a", "Succeeded", Some("0.5")),
        trial("g", "Succeeded", Some("Genotype(x)")),
    ];
    assert_eq!(
        optimal_trial(&e, &trials).unwrap().0.metadata.name.as_deref(),
        Some("g")
    );
}

/// The optimal trial compares each trial's value by the objective metric's strategy
/// (`metricStrategies`, else min for minimize and max for maximize), and an unavailable
/// min/max falls back to the latest value, as Katib reads observations.
#[test]
fn optimal_trial_compares_values_by_the_metric_strategy() {
    let observed = |name: &str, min: &str, max: &str, latest: &str| {
        let mut t = trial(name, "Succeeded", None);
        t.status.as_mut().unwrap().observation = Some(Observation {
            metrics: vec![Metric {
                name: "acc".into(),
                min: min.into(),
                max: max.into(),
                latest: latest.into(),
            }],
        });
        t
    };
    let trials = vec![
        observed("a", "0.1", "0.9", "0.5"),
        observed("b", "0.2", "0.8", "0.3"),
        observed("c", UNAVAILABLE, UNAVAILABLE, "0.05"),
    ];
    let best = |e: &Experiment| {
        let (t, v) = optimal_trial(e, &trials).unwrap();
        (t.metadata.name.clone().unwrap(), v.unwrap())
    };
    let with_strategy = |maximize: bool, strategy: Option<&str>| {
        let mut e = exp(None, 1, None, None, maximize);
        if let Some(s) = strategy {
            e.spec.objective.as_mut().unwrap().metric_strategies = vec![katib_api::crd::MetricStrategy {
                name: "acc".into(),
                value: s.into(),
            }];
        }
        e
    };
    // minimize: min by default; c's unavailable min falls back to its latest.
    assert_eq!(best(&with_strategy(false, None)), ("c".into(), 0.05));
    assert_eq!(best(&with_strategy(false, Some("latest"))), ("c".into(), 0.05));
    // maximize: max by default, so a's 0.9; by latest, a's 0.5.
    assert_eq!(best(&with_strategy(true, None)), ("a".into(), 0.9));
    assert_eq!(best(&with_strategy(true, Some("latest"))), ("a".into(), 0.5));
    // minimize by max: b's 0.8 beats a's 0.9 and c's fallback 0.05 is lower still.
    assert_eq!(best(&with_strategy(false, Some("max"))), ("c".into(), 0.05));
    // No objective: no optimal trial.
    let mut none = exp(None, 1, None, None, false);
    none.spec.objective = None;
    assert!(optimal_trial(&none, &trials).is_none());
}

#[test]
fn suggestion_input_filters_unavailable_and_unobserved_early_stopped() {
    let e = exp(None, 1, None, None, true);
    let trials = vec![
        trial("ok", "Succeeded", Some("1")),
        trial("mu", "MetricsUnavailable", None),
        trial("es-no", "EarlyStopped", None),
        trial("es-yes", "EarlyStopped", Some("0.2")),
        trial("run", "Running", None),
    ];
    let names: Vec<_> = trials_for_suggestion(&e, &trials)
        .into_iter()
        .map(|t| t.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["ok", "es-yes", "run"]);
}

#[test]
fn completed_experiment_stays_completed() {
    let mut e = exp(Some(1), 1, None, None, true);
    let trials = vec![trial("a", "Succeeded", Some("1"))];
    let d = decide(&e, &trials, &SuggestionState::default(), "t1");
    e.status = Some(d.status.clone());
    let d2 = decide(&e, &trials, &SuggestionState::default(), "t2");
    assert!(d2.completed);
    assert_eq!(d2.status.completion_time.as_deref(), Some("t1"));
    assert_eq!(d2.status.conditions, d.status.conditions);
}

#[test]
fn classify_follows_katib_precedence_for_every_set_of_true_conditions() {
    let ranked = [
        (tc::KILLED, TrialClass::Killed),
        (tc::FAILED, TrialClass::Failed),
        (tc::SUCCEEDED, TrialClass::Succeeded),
        (tc::EARLY_STOPPED, TrialClass::EarlyStopped),
        (tc::RUNNING, TrialClass::Running),
        (tc::METRICS_UNAVAILABLE, TrialClass::MetricsUnavailable),
    ];
    for set in 0u32..(1 << ranked.len()) {
        // Listed in reverse precedence, with a False copy of every type in front, so neither
        // order nor a False condition can decide.
        let mut conditions: Vec<Condition> = ranked
            .iter()
            .map(|(t, _)| Condition {
                type_: (*t).into(),
                status: "False".into(),
                ..Default::default()
            })
            .collect();
        for (i, (t, _)) in ranked.iter().enumerate().rev() {
            if set & (1 << i) != 0 {
                conditions.push(Condition {
                    type_: (*t).into(),
                    status: "True".into(),
                    ..Default::default()
                });
            }
        }
        let mut t = trial("t", "Created", None);
        t.status.as_mut().unwrap().conditions.extend(conditions);
        let expected = ranked
            .iter()
            .enumerate()
            .find(|(i, _)| set & (1 << i) != 0)
            .map_or(TrialClass::Pending, |(_, (_, c))| *c);
        assert_eq!(classify(&t), expected, "true conditions {set:06b}");
    }
}

#[test]
fn adding_new_trials_gives_the_status_a_new_decision_would() {
    let e = exp(Some(20), 4, None, None, true);
    let old = vec![
        trial("a", "Succeeded", Some("0.7")),
        trial("b", "Failed", None),
        trial("c", "Running", None),
    ];
    let mut e1 = e.clone();
    e1.status = Some(decide(&e, &old, &SuggestionState::default(), "2026-01-01T00:00:00Z").status);
    let new = [trial("d", "Running", None), trial("e", "Created", None)];
    let mut all = old.clone();
    all.extend(new.iter().cloned());

    let mut added = e1.status.clone().unwrap();
    add_new_trials(&mut added, &new, TrialLists::Filled);
    let mut fresh = decide(&e1, &all, &SuggestionState::default(), "2026-01-01T00:00:00Z").status;
    // Only the reconcile time is the new decision's own.
    fresh.last_reconcile_time = added.last_reconcile_time.clone();
    assert_eq!(added, fresh);
    assert_eq!(
        (added.trials, added.trials_running, added.trials_pending),
        (5, 2, 1)
    );

    // The same without lists: the counters move, no list appears.
    let mut e2 = e.clone();
    e2.status = Some(
        decide_with(
            &e,
            &old,
            &SuggestionState::default(),
            "2026-01-01T00:00:00Z",
            TrialLists::Omitted,
        )
        .status,
    );
    let mut counted = e2.status.clone().unwrap();
    add_new_trials(&mut counted, &new, TrialLists::Omitted);
    fill_trial_lists(&mut counted, &all);
    assert_eq!(counted, added);
}

/// Every status [`decide_with`] makes without lists is the status [`decide`] makes, once
/// [`fill_trial_lists`] has added them; and without lists it has none. Over trials of
/// every class, an optimal trial, and each way an experiment ends.
#[test]
fn omitting_the_trial_lists_changes_nothing_else() {
    let now = "2026-01-01T00:00:00Z";
    let trials = [
        trial("a", "Succeeded", Some("0.7")),
        trial("b", "Failed", None),
        trial("c", "Running", None),
        trial("d", "Created", None),
        trial("e", "Killed", None),
        trial("f", "EarlyStopped", Some("0.9")),
        trial("g", "MetricsUnavailable", None),
        trial("h", "Succeeded", Some("0.2")),
    ];
    let cases = [
        (exp(Some(20), 4, None, None, true), SuggestionState::default()),
        // Goal reached (maximize, goal 0.8 met by f's 0.9).
        (
            exp(Some(20), 4, None, Some(0.8), true),
            SuggestionState::default(),
        ),
        // Max failed reached.
        (exp(Some(20), 4, Some(1), None, true), SuggestionState::default()),
        // Max trials reached.
        (exp(Some(5), 4, None, None, true), SuggestionState::default()),
        // Search space used up, and a failed suggestion service.
        (
            exp(Some(20), 4, None, None, false),
            SuggestionState {
                exhausted: true,
                failed: None,
            },
        ),
        (
            exp(Some(20), 4, None, None, false),
            SuggestionState {
                exhausted: false,
                failed: Some("bad settings".into()),
            },
        ),
    ];
    for (e, state) in cases {
        for n in 0..=trials.len() {
            let some = &trials[..n];
            let full = decide(&e, some, &state, now);
            let mut bare = decide_with(&e, some, &state, now, TrialLists::Omitted);
            let status = &bare.status;
            assert!(
                status.succeeded_trial_list.is_empty()
                    && status.failed_trial_list.is_empty()
                    && status.running_trial_list.is_empty()
                    && status.pending_trial_list.is_empty()
                    && status.killed_trial_list.is_empty()
                    && status.early_stopped_trial_list.is_empty()
                    && status.metrics_unavailable_trial_list.is_empty(),
                "{status:?}"
            );
            fill_trial_lists(&mut bare.status, some);
            assert_eq!(bare, full, "{n} trials, {state:?}");
        }
    }
}

/// A [`Tally`] told which trials changed gives the decision a walk over every trial gives,
/// over random runs: trials added and changed a few at a time, in any class, with numeric,
/// tied, non-numeric, NaN, infinite and unavailable objectives, min/max/latest strategies,
/// goals, failure limits and trial budgets (the full walk is the reference).
#[test]
fn a_tally_decides_as_a_full_walk_does() {
    use rand::{RngExt as _, SeedableRng as _};
    const CLASSES: [&str; 7] = [
        "Created",
        "Running",
        "Succeeded",
        "Failed",
        "Killed",
        "EarlyStopped",
        "MetricsUnavailable",
    ];
    const VALUES: [Option<&str>; 9] = [
        None,
        Some("0.5"),
        Some("0.3"),
        Some("0.3"),
        Some("0.9"),
        Some("NaN"),
        Some("inf"),
        Some("Genotype(x)"),
        Some(UNAVAILABLE),
    ];
    for seed in 0..300 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let goal = rng.random_bool(0.3).then(|| rng.random_range(0.0..1.0));
        let max = rng.random_bool(0.8).then(|| rng.random_range(1..40));
        let max_failed = rng.random_bool(0.5).then(|| rng.random_range(0..6));
        let mut e = exp(
            max,
            rng.random_range(1..5),
            max_failed,
            goal,
            rng.random_bool(0.5),
        );
        if rng.random_bool(0.3) {
            let strategy = ["min", "max", "latest"][rng.random_range(0..3)];
            e.spec.objective.as_mut().unwrap().metric_strategies = vec![katib_api::crd::MetricStrategy {
                name: "acc".into(),
                value: strategy.into(),
            }];
        }
        let suggestion = SuggestionState {
            exhausted: rng.random_bool(0.1),
            ..Default::default()
        };
        let mut trials: Vec<Trial> = Vec::new();
        let mut tally = Tally::default();
        for step in 0..40 {
            let mut changed = Vec::new();
            for _ in 0..rng.random_range(0..3) {
                trials.push(trial(&format!("t{}", trials.len()), "Running", None));
            }
            for _ in 0..rng.random_range(0..3) {
                if trials.is_empty() {
                    break;
                }
                let i = rng.random_range(0..trials.len());
                let class = CLASSES[rng.random_range(0..CLASSES.len())];
                let mut t = trial(&format!("t{i}"), class, VALUES[rng.random_range(0..VALUES.len())]);
                if let Some(obs) = t.status.as_mut().and_then(|s| s.observation.as_mut()) {
                    // Different min/max/latest, so the strategy matters.
                    obs.metrics[0].min = VALUES[rng.random_range(1..VALUES.len())].unwrap().into();
                }
                trials[i] = t;
                changed.push(i);
            }
            let now = format!("2024-01-01T00:00:{step:02}Z");
            let full = decide_with(&e, &trials, &suggestion, &now, TrialLists::Omitted);
            let tallied = decide_tallied(&e, &trials, &mut tally, &changed, &suggestion, &now);
            assert_eq!(tallied, full, "seed {seed}, step {step}");
            e.status = Some(full.status);
        }
    }
}
