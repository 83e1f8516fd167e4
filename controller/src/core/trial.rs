//! Trial semantics: building a Trial from an assignment, its observation from metric logs,
//! and its conditions from the job's outcome (Katib's trial controller, as pure functions).

use std::collections::BTreeMap;

use katib_api::conditions::{self, trial as tc};
use katib_api::crd::{
    API_VERSION, EXPERIMENT_LABEL, EarlyStoppingRule, Experiment, Metric, ObjectMeta, Observation,
    ParameterAssignment, Trial, TrialSpec, TrialStatus, UNAVAILABLE,
};
use katib_api::pb;
use rand::RngExt as _;

/// Alphabet of Kubernetes' random name suffixes (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `<experiment>-<8 random chars>`, as Katib names trials.
pub fn random_trial_name(experiment: &str, rng: &mut impl rand::Rng) -> String {
    let suffix: String = (0..8)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect();
    format!("{experiment}-{suffix}")
}

/// A new Trial for `assignments` (the job spec is rendered by the runtime).
pub fn new_trial(
    exp: &Experiment,
    name: String,
    assignments: Vec<ParameterAssignment>,
    labels: BTreeMap<String, String>,
    run_spec: Option<serde_json::Value>,
) -> Trial {
    let exp_name = exp.metadata.name.clone().unwrap_or_default();
    let mut all_labels = exp.metadata.labels.clone();
    all_labels.insert(EXPERIMENT_LABEL.to_string(), exp_name);
    all_labels.extend(labels);
    let template = exp.spec.trial_template.clone().unwrap_or_default();
    let both_conditions = !template.success_condition.is_empty() && !template.failure_condition.is_empty();
    Trial {
        api_version: API_VERSION.to_string(),
        kind: "Trial".to_string(),
        metadata: ObjectMeta {
            name: Some(name),
            namespace: exp.metadata.namespace.clone(),
            labels: all_labels,
            ..Default::default()
        },
        spec: TrialSpec {
            objective: exp.spec.objective.clone(),
            parameter_assignments: assignments,
            early_stopping_rules: Vec::new(),
            run_spec,
            retain_run: template.retain,
            metrics_collector: exp.spec.metrics_collector_spec.clone(),
            primary_pod_labels: template.primary_pod_labels.clone(),
            primary_container_name: template.primary_container_name.clone(),
            success_condition: if both_conditions {
                template.success_condition.clone()
            } else {
                String::new()
            },
            failure_condition: if both_conditions {
                template.failure_condition.clone()
            } else {
                String::new()
            },
            labels: BTreeMap::new(),
        },
        status: None,
    }
}

/// Builds a trial's observation from its metric logs (Katib's `getMetrics`): one entry per
/// metric with a strategy; numeric values update min/max; `latest` is the value with the
/// greatest timestamp (ties: the later log). `None` when no log names a known metric.
pub fn observation_from_logs(trial: &Trial, logs: &[pb::MetricLog]) -> Option<Observation> {
    let objective = trial.spec.objective.as_ref()?;
    let names = objective.all_metric_names();
    let mut metrics: Vec<Metric> = names
        .iter()
        .map(|n| Metric {
            name: n.clone(),
            min: UNAVAILABLE.into(),
            max: UNAVAILABLE.into(),
            latest: UNAVAILABLE.into(),
        })
        .collect();
    let mut latest_time: Vec<Option<jiff::Timestamp>> = vec![None; names.len()];
    let mut any = false;
    for log in logs {
        let Some(m) = &log.metric else { continue };
        let Some(i) = names.iter().position(|n| *n == m.name) else {
            continue;
        };
        any = true;
        let entry = &mut metrics[i];
        if let Ok(v) = m.value.trim().parse::<f64>() {
            let update = |cur: &mut String, better: fn(f64, f64) -> bool| match cur.parse::<f64>() {
                Ok(c) if !better(v, c) => {}
                _ => *cur = m.value.clone(),
            };
            update(&mut entry.min, |v, c| v < c);
            update(&mut entry.max, |v, c| v > c);
        }
        let t = log.time_stamp.parse::<jiff::Timestamp>().ok();
        if latest_time[i].is_none() || t >= latest_time[i] {
            latest_time[i] = t;
            entry.latest = m.value.clone();
        }
    }
    any.then_some(Observation { metrics })
}

/// How the trial's job ended (or that it is still running).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed {
        reason: String,
        message: String,
    },
    /// Stopped by the runtime because the experiment completed or the user interrupted.
    Killed {
        message: String,
    },
    /// Stopped by its metrics collector because it broke its early-stopping rules.
    EarlyStopped {
        message: String,
    },
}

fn status_mut(trial: &mut Trial) -> &mut TrialStatus {
    trial.status.get_or_insert_with(TrialStatus::default)
}

/// Marks a trial EarlyStopped (reason `TrialEarlyStopped`), as Katib's early-stopping
/// service does on `SetTrialStatus`. Its job may still be ending: the completion time is set
/// when it has ([`apply_outcome`]). Returns false (and changes nothing) when the trial had
/// already completed otherwise.
pub fn mark_early_stopped(trial: &mut Trial, now: &str) -> bool {
    let s = status_mut(trial);
    let done_otherwise = [tc::SUCCEEDED, tc::FAILED, tc::KILLED, tc::METRICS_UNAVAILABLE]
        .iter()
        .any(|t| conditions::is_true(&s.conditions, t));
    if done_otherwise {
        return false;
    }
    if !conditions::is_true(&s.conditions, tc::EARLY_STOPPED) {
        conditions::set_terminal(
            &mut s.conditions,
            tc::EARLY_STOPPED,
            tc::REASON_EARLY_STOPPED,
            tc::MSG_EARLY_STOPPED,
            now,
        );
    }
    true
}

/// Early-stopping rules from the service as a Trial carries them (`spec.earlyStoppingRules`),
/// with Katib's comparison mapping (anything but LESS/GREATER is `equal`).
pub fn rules_from_pb(rules: &[pb::EarlyStoppingRule]) -> Vec<EarlyStoppingRule> {
    rules
        .iter()
        .map(|r| EarlyStoppingRule {
            name: r.name.clone(),
            value: r.value.clone(),
            comparison: match pb::ComparisonType::try_from(r.comparison) {
                Ok(pb::ComparisonType::Less) => "less",
                Ok(pb::ComparisonType::Greater) => "greater",
                _ => "equal",
            }
            .to_string(),
            start_step: r.start_step,
        })
        .collect()
}

/// Marks a new trial Created (start time set).
pub fn mark_created(trial: &mut Trial, now: &str) {
    let s = status_mut(trial);
    if !conditions::is_true(&s.conditions, tc::CREATED) {
        s.start_time = Some(now.to_string());
        s.completion_time = None;
        conditions::set(
            &mut s.conditions,
            tc::CREATED,
            true,
            tc::REASON_CREATED,
            tc::MSG_CREATED,
            now,
        );
    }
}

/// Applies a job outcome and the trial's observation to its conditions, as Katib's trial
/// controller does: success with an observation => Succeeded; success without one =>
/// MetricsUnavailable; failure => Failed (job reason appended); running => Running.
pub fn apply_outcome(trial: &mut Trial, outcome: &JobOutcome, observation: Option<Observation>, now: &str) {
    let objective_name = trial
        .spec
        .objective
        .as_ref()
        .map(|o| o.objective_metric_name.clone())
        .unwrap_or_default();
    let s = status_mut(trial);
    if observation.is_some() {
        s.observation = observation;
    }
    let has_obs = s
        .observation
        .as_ref()
        .and_then(|o| o.metric(&objective_name))
        .is_some_and(|m| m.latest != UNAVAILABLE && !m.latest.is_empty());
    let terminal = |s: &mut TrialStatus, type_: &str, reason: &str, message: &str| {
        conditions::set_terminal(&mut s.conditions, type_, reason, message, now);
        s.completion_time = Some(now.to_string());
    };
    let early_stopped = conditions::is_true(&s.conditions, tc::EARLY_STOPPED);
    match outcome {
        JobOutcome::Running => {
            if !conditions::is_true(&s.conditions, tc::RUNNING) && !early_stopped {
                conditions::set(
                    &mut s.conditions,
                    tc::RUNNING,
                    true,
                    tc::REASON_RUNNING,
                    tc::MSG_RUNNING,
                    now,
                );
            }
        }
        JobOutcome::Succeeded if early_stopped => {}
        JobOutcome::Succeeded if has_obs => {
            terminal(s, tc::SUCCEEDED, tc::REASON_SUCCEEDED, tc::MSG_SUCCEEDED)
        }
        JobOutcome::Succeeded => terminal(
            s,
            tc::METRICS_UNAVAILABLE,
            tc::REASON_METRICS_UNAVAILABLE,
            &format!(
                "{}: the trial finished without reporting the objective metric \"{objective_name}\"",
                tc::MSG_METRICS_UNAVAILABLE
            ),
        ),
        JobOutcome::Failed { reason, message } => {
            if !early_stopped {
                let reason = format!("{}. Job reason: {reason}", tc::REASON_FAILED);
                let message = format!("{}. Job message: {message}", tc::MSG_FAILED);
                terminal(s, tc::FAILED, &reason, &message);
            }
        }
        JobOutcome::Killed { message } => {
            if early_stopped {
                s.completion_time = Some(now.to_string());
            } else {
                terminal(s, tc::KILLED, tc::REASON_KILLED, message);
            }
        }
        JobOutcome::EarlyStopped { .. } => {
            if early_stopped {
                s.completion_time = Some(now.to_string());
            } else {
                terminal(
                    s,
                    tc::EARLY_STOPPED,
                    tc::REASON_EARLY_STOPPED,
                    tc::MSG_EARLY_STOPPED,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use katib_api::crd::ObjectiveSpec;

    fn log(t: &str, name: &str, v: &str) -> pb::MetricLog {
        pb::MetricLog {
            time_stamp: t.into(),
            metric: Some(pb::Metric {
                name: name.into(),
                value: v.into(),
            }),
        }
    }

    fn trial() -> Trial {
        Trial {
            api_version: API_VERSION.into(),
            kind: "Trial".into(),
            metadata: ObjectMeta {
                name: Some("t".into()),
                ..Default::default()
            },
            spec: TrialSpec {
                objective: Some(ObjectiveSpec {
                    type_: "maximize".into(),
                    objective_metric_name: "acc".into(),
                    additional_metric_names: vec!["loss".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            status: None,
        }
    }

    #[test]
    fn observation_min_max_latest() {
        let logs = vec![
            log("2024-01-01T00:00:02Z", "acc", "0.5"),
            log("2024-01-01T00:00:01Z", "acc", "0.9"),
            log("2024-01-01T00:00:03Z", "acc", "0.7"),
            log("2024-01-01T00:00:03Z", "other", "1"),
        ];
        let o = observation_from_logs(&trial(), &logs).unwrap();
        let acc = o.metric("acc").unwrap();
        assert_eq!(
            (acc.min.as_str(), acc.max.as_str(), acc.latest.as_str()),
            ("0.5", "0.9", "0.7")
        );
        let loss = o.metric("loss").unwrap();
        assert_eq!(loss.latest, UNAVAILABLE);
        assert!(observation_from_logs(&trial(), &[log("2024-01-01T00:00:03Z", "x", "1")]).is_none());
    }

    #[test]
    fn latest_tie_goes_to_later_log_and_strings_only_update_latest() {
        let logs = vec![
            log("0001-01-01T00:00:00Z", "acc", "0.5"),
            log("0001-01-01T00:00:00Z", "acc", "0.6"),
            log("0001-01-01T00:00:00Z", "acc", "genotype"),
        ];
        let o = observation_from_logs(&trial(), &logs).unwrap();
        let acc = o.metric("acc").unwrap();
        assert_eq!(
            (acc.min.as_str(), acc.max.as_str(), acc.latest.as_str()),
            ("0.5", "0.6", "genotype")
        );
    }

    #[test]
    fn outcomes_set_katib_conditions() {
        let mut t = trial();
        mark_created(&mut t, "t0");
        apply_outcome(&mut t, &JobOutcome::Running, None, "t1");
        assert!(conditions::is_true(
            &t.status.as_ref().unwrap().conditions,
            tc::RUNNING
        ));

        let mut ok = t.clone();
        let obs = observation_from_logs(&ok, &[log("2024-01-01T00:00:00Z", "acc", "0.5")]);
        apply_outcome(&mut ok, &JobOutcome::Succeeded, obs, "t2");
        let s = ok.status.as_ref().unwrap();
        assert_eq!(s.conditions.last().unwrap().type_, tc::SUCCEEDED);
        assert_eq!(s.completion_time.as_deref(), Some("t2"));
        assert!(!conditions::is_true(&s.conditions, tc::RUNNING));

        let mut mu = t.clone();
        apply_outcome(&mut mu, &JobOutcome::Succeeded, None, "t2");
        assert_eq!(
            mu.status.as_ref().unwrap().conditions.last().unwrap().type_,
            tc::METRICS_UNAVAILABLE
        );

        let mut f = t.clone();
        apply_outcome(
            &mut f,
            &JobOutcome::Failed {
                reason: "ExitCode".into(),
                message: "exit code 1".into(),
            },
            None,
            "t2",
        );
        let last = f.status.as_ref().unwrap().conditions.last().unwrap().clone();
        assert_eq!(last.type_, tc::FAILED);
        assert_eq!(last.reason, "TrialFailed. Job reason: ExitCode");
    }

    #[test]
    fn early_stopped_keeps_its_observation_and_wins_over_the_job_outcome() {
        let mut t = trial();
        mark_created(&mut t, "t0");
        apply_outcome(&mut t, &JobOutcome::Running, None, "t1");
        assert!(mark_early_stopped(&mut t, "t2"));
        let s = t.status.as_ref().unwrap();
        let last = s.conditions.last().unwrap();
        assert_eq!(
            (last.type_.as_str(), last.reason.as_str(), last.message.as_str()),
            (tc::EARLY_STOPPED, "TrialEarlyStopped", "Trial is early stopped")
        );
        assert!(!conditions::is_true(&s.conditions, tc::RUNNING));
        assert_eq!(s.completion_time, None, "the job is still ending");

        // The stopped process ends: the observation so far is kept, completion time set.
        let obs = observation_from_logs(&t, &[log("2024-01-01T00:00:00Z", "acc", "0.3")]);
        let mut stopped = t.clone();
        apply_outcome(
            &mut stopped,
            &JobOutcome::EarlyStopped {
                message: "acc < 0.6".into(),
            },
            obs.clone(),
            "t3",
        );
        let s = stopped.status.as_ref().unwrap();
        assert_eq!(s.completion_time.as_deref(), Some("t3"));
        assert_eq!(
            s.observation.as_ref().unwrap().metric("acc").unwrap().latest,
            "0.3"
        );
        assert_eq!(s.conditions.last().unwrap().type_, tc::EARLY_STOPPED);
        // A job that succeeded anyway (Katib's wrapper exits 0) stays EarlyStopped.
        let mut ok = t.clone();
        apply_outcome(&mut ok, &JobOutcome::Succeeded, obs.clone(), "t3");
        assert!(!conditions::is_true(
            &ok.status.as_ref().unwrap().conditions,
            tc::SUCCEEDED
        ));
        // Without a mark from the service, the collector's exit alone marks it.
        let mut unmarked = trial();
        apply_outcome(&mut unmarked, &JobOutcome::Running, None, "t1");
        apply_outcome(
            &mut unmarked,
            &JobOutcome::EarlyStopped {
                message: String::new(),
            },
            obs,
            "t3",
        );
        assert_eq!(
            unmarked
                .status
                .as_ref()
                .unwrap()
                .conditions
                .last()
                .unwrap()
                .reason,
            "TrialEarlyStopped"
        );

        // A trial that already completed otherwise is not marked.
        let mut done = trial();
        apply_outcome(
            &mut done,
            &JobOutcome::Failed {
                reason: "x".into(),
                message: "y".into(),
            },
            None,
            "t1",
        );
        assert!(!mark_early_stopped(&mut done, "t2"));
        assert!(!conditions::is_true(
            &done.status.as_ref().unwrap().conditions,
            tc::EARLY_STOPPED
        ));
    }

    #[test]
    fn rules_use_katib_comparison_names() {
        let rule = |c: pb::ComparisonType| pb::EarlyStoppingRule {
            name: "acc".into(),
            value: "0.5".into(),
            comparison: c as i32,
            start_step: 4,
        };
        let got = rules_from_pb(&[
            rule(pb::ComparisonType::Less),
            rule(pb::ComparisonType::Greater),
            rule(pb::ComparisonType::Equal),
            rule(pb::ComparisonType::UnknownComparison),
        ]);
        let cmp: Vec<&str> = got.iter().map(|r| r.comparison.as_str()).collect();
        assert_eq!(cmp, ["less", "greater", "equal", "equal"]);
        assert_eq!(
            (got[0].name.as_str(), got[0].value.as_str(), got[0].start_step),
            ("acc", "0.5", 4)
        );
    }

    #[test]
    fn names_use_kubernetes_alphabet() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let n = random_trial_name("exp", &mut rng);
        assert!(n.starts_with("exp-") && n.len() == 12);
        assert!(n[4..].bytes().all(|b| NAME_ALPHABET.contains(&b)));
    }
}
