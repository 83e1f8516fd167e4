//! CRD objects to the gRPC messages the controller sends to suggestion services,
//! mapped as Katib's controller maps them (katib-compat §1.4).

use crate::conditions::trial as tc;
use crate::crd::{
    AlgorithmSetting, AlgorithmSpec, Experiment, ObjectiveSpec, ParameterSpec, Trial, UNAVAILABLE,
};
use crate::pb;

fn parameter_type(s: &str) -> pb::ParameterType {
    match s {
        "double" => pb::ParameterType::Double,
        "int" => pb::ParameterType::Int,
        "discrete" => pb::ParameterType::Discrete,
        "categorical" => pb::ParameterType::Categorical,
        _ => pb::ParameterType::UnknownType,
    }
}

fn distribution(s: Option<&str>) -> pb::Distribution {
    match s {
        Some("uniform") => pb::Distribution::Uniform,
        Some("logUniform") => pb::Distribution::LogUniform,
        Some("normal") => pb::Distribution::Normal,
        Some("logNormal") => pb::Distribution::LogNormal,
        _ => pb::Distribution::Unspecified,
    }
}

/// A CRD parameter as the proto `ParameterSpec`.
pub fn parameter_to_pb(p: &ParameterSpec) -> pb::ParameterSpec {
    let fs = &p.feasible_space;
    pb::ParameterSpec {
        name: p.name.clone(),
        parameter_type: parameter_type(&p.parameter_type) as i32,
        feasible_space: Some(pb::FeasibleSpace {
            max: fs.max.clone().unwrap_or_default(),
            min: fs.min.clone().unwrap_or_default(),
            list: fs.list.clone(),
            step: fs.step.clone().unwrap_or_default(),
            distribution: distribution(fs.distribution.as_deref()) as i32,
        }),
    }
}

/// The objective as the proto `ObjectiveSpec` (metric strategies do not travel on the wire).
pub fn objective_to_pb(o: &ObjectiveSpec) -> pb::ObjectiveSpec {
    pb::ObjectiveSpec {
        r#type: match o.type_.as_str() {
            "minimize" => pb::ObjectiveType::Minimize,
            "maximize" => pb::ObjectiveType::Maximize,
            _ => pb::ObjectiveType::Unknown,
        } as i32,
        goal: o.goal.unwrap_or_default(),
        objective_metric_name: o.objective_metric_name.clone(),
        additional_metric_names: o.additional_metric_names.clone(),
    }
}

/// Experiment settings with `overrides` (Suggestion `status.algorithmSettings`) replacing
/// same-named settings and appended otherwise, as Katib merges them before each call.
pub fn merge_settings(base: &[AlgorithmSetting], overrides: &[AlgorithmSetting]) -> Vec<AlgorithmSetting> {
    let mut out = base.to_vec();
    for o in overrides {
        match out.iter_mut().find(|s| s.name == o.name) {
            Some(s) => s.value = o.value.clone(),
            None => out.push(o.clone()),
        }
    }
    out
}

fn algorithm_to_pb(a: &AlgorithmSpec, overrides: &[AlgorithmSetting]) -> pb::AlgorithmSpec {
    pb::AlgorithmSpec {
        algorithm_name: a.algorithm_name.clone(),
        algorithm_settings: merge_settings(&a.algorithm_settings, overrides)
            .into_iter()
            .map(|s| pb::AlgorithmSetting {
                name: s.name,
                value: s.value,
            })
            .collect(),
    }
}

/// The Experiment as the proto message sent in `GetSuggestions`/`ValidateAlgorithmSettings`.
/// `setting_overrides` are the settings an algorithm asked to persist in earlier replies.
pub fn experiment_to_pb(exp: &Experiment, setting_overrides: &[AlgorithmSetting]) -> pb::Experiment {
    let spec = &exp.spec;
    pb::Experiment {
        name: exp.metadata.name.clone().unwrap_or_default(),
        spec: Some(pb::ExperimentSpec {
            parameter_specs: Some(pb::experiment_spec::ParameterSpecs {
                parameters: spec.parameters.iter().map(parameter_to_pb).collect(),
            }),
            objective: spec.objective.as_ref().map(objective_to_pb),
            algorithm: spec
                .algorithm
                .as_ref()
                .map(|a| algorithm_to_pb(a, setting_overrides)),
            early_stopping: spec.early_stopping.as_ref().map(|e| pb::EarlyStoppingSpec {
                algorithm_name: e.algorithm_name.clone(),
                algorithm_settings: e
                    .algorithm_settings
                    .iter()
                    .map(|s| pb::EarlyStoppingSetting {
                        name: s.name.clone(),
                        value: s.value.clone(),
                    })
                    .collect(),
            }),
            parallel_trial_count: spec.parallel_trial_count.unwrap_or_default(),
            max_trial_count: spec.max_trial_count.unwrap_or_default(),
            nas_config: None,
        }),
    }
}

/// Maps a Trial's last condition to the proto enum as Katib does (anything else is UNKNOWN).
pub fn trial_condition_to_pb(trial: &Trial) -> pb::trial_status::TrialConditionType {
    use pb::trial_status::TrialConditionType as T;
    let last = trial.status.as_ref().and_then(|s| s.conditions.last());
    match last.map(|c| c.type_.as_str()) {
        Some(tc::CREATED) => T::Created,
        Some(tc::RUNNING) => T::Running,
        Some(tc::SUCCEEDED) => T::Succeeded,
        Some(tc::KILLED) => T::Killed,
        Some(tc::FAILED) => T::Failed,
        Some(tc::EARLY_STOPPED) => T::Earlystopped,
        _ => T::Unknown,
    }
}

/// The value of `metric` picked by `strategy`, falling back to `latest` when min/max is
/// unavailable (Katib's rule).
pub fn metric_value_by_strategy(m: &crate::crd::Metric, strategy: &str) -> String {
    metric_value_ref(m, strategy).to_owned()
}

/// [`metric_value_by_strategy`] without the copy.
pub fn metric_value_ref<'a>(m: &'a crate::crd::Metric, strategy: &str) -> &'a str {
    let picked = match strategy {
        "min" => &m.min,
        "max" => &m.max,
        _ => &m.latest,
    };
    if picked == UNAVAILABLE || picked.is_empty() {
        &m.latest
    } else {
        picked
    }
}

/// The Trial as the proto message sent to suggestion services.
pub fn trial_to_pb(trial: &Trial) -> pb::Trial {
    let objective = trial.spec.objective.clone().unwrap_or_default();
    let status = trial.status.clone().unwrap_or_default();
    let metrics = status
        .observation
        .as_ref()
        .map(|o| {
            o.metrics
                .iter()
                .map(|m| pb::Metric {
                    name: m.name.clone(),
                    value: metric_value_by_strategy(m, objective.strategy_for(&m.name)),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::Trial {
        name: trial.metadata.name.clone().unwrap_or_default(),
        spec: Some(pb::TrialSpec {
            objective: Some(objective_to_pb(&objective)),
            parameter_assignments: Some(pb::trial_spec::ParameterAssignments {
                assignments: trial
                    .spec
                    .parameter_assignments
                    .iter()
                    .map(|a| pb::ParameterAssignment {
                        name: a.name.clone(),
                        value: a.value.clone(),
                    })
                    .collect(),
            }),
            labels: trial.spec.labels.clone().into_iter().collect(),
        }),
        status: Some(pb::TrialStatus {
            start_time: status.start_time.clone().unwrap_or_default(),
            completion_time: status.completion_time.clone().unwrap_or_default(),
            condition: trial_condition_to_pb(trial) as i32,
            observation: Some(pb::Observation { metrics }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Condition, Metric, NameValue, Observation, TrialSpec, TrialStatus};

    #[test]
    fn settings_merge_overrides_and_appends() {
        let base = vec![NameValue {
            name: "a".into(),
            value: "1".into(),
        }];
        let over = vec![
            NameValue {
                name: "a".into(),
                value: "2".into(),
            },
            NameValue {
                name: "b".into(),
                value: "3".into(),
            },
        ];
        let m = merge_settings(&base, &over);
        assert_eq!(m, over);
    }

    #[test]
    fn trial_observation_uses_strategy_with_latest_fallback() {
        let trial = Trial {
            api_version: String::new(),
            kind: String::new(),
            metadata: Default::default(),
            spec: TrialSpec {
                objective: Some(ObjectiveSpec {
                    type_: "maximize".into(),
                    objective_metric_name: "acc".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            status: Some(TrialStatus {
                conditions: vec![Condition {
                    type_: "Succeeded".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                observation: Some(Observation {
                    metrics: vec![
                        Metric {
                            name: "acc".into(),
                            min: "0.1".into(),
                            max: "0.9".into(),
                            latest: "0.5".into(),
                        },
                        Metric {
                            name: "s".into(),
                            min: UNAVAILABLE.into(),
                            max: UNAVAILABLE.into(),
                            latest: "genotype".into(),
                        },
                    ],
                }),
                ..Default::default()
            }),
        };
        let pb = trial_to_pb(&trial);
        let st = pb.status.unwrap();
        assert_eq!(
            st.condition,
            pb::trial_status::TrialConditionType::Succeeded as i32
        );
        let m = st.observation.unwrap().metrics;
        assert_eq!(m[0].value, "0.9");
        assert_eq!(m[1].value, "genotype");
    }
}
