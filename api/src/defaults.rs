//! Katib's defaulting webhook (`/mutate-experiment`), applied to an [`Experiment`] in memory.
//!
//! [`set_defaults`] fills exactly the fields Katib v1beta1's
//! `pkg/apis/controller/experiments/v1beta1/experiment_defaults.go` fills, in the same order,
//! and only where they are empty:
//!
//! 1. `spec.parallelTrialCount` := 3.
//! 2. `spec.resumePolicy` := `Never`.
//! 3. `spec.objective.metricStrategies` (when an objective is given): the objective metric and
//!    every additional metric without a strategy get `min` for `minimize`, `max` for
//!    `maximize`, `latest` for any other type. (Katib's code comment says additional metrics
//!    get `latest`; its code, and so this function, use the same rule as the objective.)
//! 4. Trial template, only for an inline `trialSpec` (never for a ConfigMap source), by the
//!    template's `kind`: `Job`; `TFJob`, `PyTorchJob`, `XGBoostJob`, `MPIJob` (plus
//!    `primaryPodLabels` `training.kubeflow.org/job-role: master`); `TrainJob` (plus its
//!    JobSet primary pod labels). Success/failure conditions are GJSON paths on the job.
//! 5. Metrics collector: `{collector: {kind: StdOut}}` when absent; per kind, the source
//!    Katib fills (PrometheusMetric: `httpGet` `/metrics` on 8080; File:
//!    `/var/log/katib/metrics.log`, kind `File`, format `TEXT`; TensorFlowEvent:
//!    `/var/log/katib/tfevent/`, kind `Directory`).
//! 6. `feasibleSpace.distribution` := `uniform` for every parameter without one.
//!
//! Nothing else is touched: an absent `trialParameters`, objective or algorithm stays absent
//! for [`crate::validate`] to report. Applying the defaults twice changes nothing the second
//! time.

use serde_json::{Map, Value};

use crate::crd::{
    CollectorSpec, Experiment, FileSystemPath, MetricStrategy, MetricsCollectorSpec, SourceSpec,
};

/// `parallelTrialCount` when none is given.
pub const DEFAULT_PARALLEL_TRIAL_COUNT: i32 = 3;
/// `resumePolicy` when none is given.
pub const DEFAULT_RESUME_POLICY: &str = "Never";
/// `feasibleSpace.distribution` when none is given.
pub const DEFAULT_DISTRIBUTION: &str = "uniform";

/// Success condition of a `batch/v1` Job (and of a TrainJob).
pub const JOB_SUCCESS_CONDITION: &str = r#"status.conditions.#(type=="Complete")#|#(status=="True")#"#;
/// Failure condition of a `batch/v1` Job (and of a TrainJob).
pub const JOB_FAILURE_CONDITION: &str = r#"status.conditions.#(type=="Failed")#|#(status=="True")#"#;
/// Success condition of a Kubeflow training-operator job (TFJob, PyTorchJob, ...).
pub const KUBEFLOW_JOB_SUCCESS_CONDITION: &str =
    r#"status.conditions.#(type=="Succeeded")#|#(status=="True")#"#;
/// Failure condition of a Kubeflow training-operator job.
pub const KUBEFLOW_JOB_FAILURE_CONDITION: &str = r#"status.conditions.#(type=="Failed")#|#(status=="True")#"#;
/// Kinds of the Kubeflow training operator that get the Kubeflow job defaults.
pub const KUBEFLOW_JOB_KINDS: &[&str] = &["TFJob", "PyTorchJob", "XGBoostJob", "MPIJob"];
/// Primary pod labels of a Kubeflow training-operator job.
pub const KUBEFLOW_JOB_PRIMARY_POD_LABELS: &[(&str, &str)] = &[("training.kubeflow.org/job-role", "master")];
/// Primary pod labels of a Kubeflow Trainer `TrainJob`.
pub const TRAIN_JOB_PRIMARY_POD_LABELS: &[(&str, &str)] = &[
    ("jobset.sigs.k8s.io/replicatedjob-name", "node"),
    ("batch.kubernetes.io/job-completion-index", "0"),
];

/// Metrics file of the `File` (and `StdOut`) collector when none is given.
pub const DEFAULT_METRICS_FILE_PATH: &str = "/var/log/katib/metrics.log";
/// Event directory of the `TensorFlowEvent` collector when none is given.
pub const DEFAULT_TF_EVENT_DIR: &str = "/var/log/katib/tfevent/";
/// HTTP path of the `PrometheusMetric` collector when none is given.
pub const DEFAULT_PROMETHEUS_PATH: &str = "/metrics";
/// HTTP port of the `PrometheusMetric` collector when none is given.
pub const DEFAULT_PROMETHEUS_PORT: i64 = 8080;

/// Applies Katib's mutating-webhook defaults to `exp` (see the module docs). Idempotent.
pub fn set_defaults(exp: &mut Experiment) {
    set_default_parallel_trial_count(exp);
    set_default_resume_policy(exp);
    set_default_objective(exp);
    set_default_trial_template(exp);
    set_default_metrics_collector(exp);
    set_default_parameter_distribution(exp);
}

fn set_default_parallel_trial_count(exp: &mut Experiment) {
    exp.spec
        .parallel_trial_count
        .get_or_insert(DEFAULT_PARALLEL_TRIAL_COUNT);
}

fn set_default_resume_policy(exp: &mut Experiment) {
    let policy = exp.spec.resume_policy.get_or_insert_with(String::new);
    if policy.is_empty() {
        DEFAULT_RESUME_POLICY.clone_into(policy);
    }
}

fn set_default_objective(exp: &mut Experiment) {
    let Some(obj) = exp.spec.objective.as_mut() else {
        return;
    };
    let strategy = match obj.type_.as_str() {
        "minimize" => "min",
        "maximize" => "max",
        _ => "latest",
    };
    // As Katib: names with a strategy, the objective's own excluded from the set that
    // additional metrics are checked against.
    let objective_has_strategy = obj
        .metric_strategies
        .iter()
        .any(|s| s.name == obj.objective_metric_name);
    let with_strategy: Vec<String> = obj
        .metric_strategies
        .iter()
        .filter(|s| s.name != obj.objective_metric_name)
        .map(|s| s.name.clone())
        .collect();
    if !objective_has_strategy {
        obj.metric_strategies.push(MetricStrategy {
            name: obj.objective_metric_name.clone(),
            value: strategy.to_owned(),
        });
    }
    for name in &obj.additional_metric_names {
        if !with_strategy.contains(name) {
            obj.metric_strategies.push(MetricStrategy {
                name: name.clone(),
                value: strategy.to_owned(),
            });
        }
    }
}

fn set_default_trial_template(exp: &mut Experiment) {
    let Some(t) = exp.spec.trial_template.as_mut() else {
        return;
    };
    let Some(spec) = t.trial_spec.as_ref() else {
        return;
    };
    let kind = spec.get("kind").and_then(Value::as_str).unwrap_or("");
    let (success, failure, labels) = if kind == "Job" {
        (JOB_SUCCESS_CONDITION, JOB_FAILURE_CONDITION, None)
    } else if KUBEFLOW_JOB_KINDS.contains(&kind) {
        (
            KUBEFLOW_JOB_SUCCESS_CONDITION,
            KUBEFLOW_JOB_FAILURE_CONDITION,
            Some(KUBEFLOW_JOB_PRIMARY_POD_LABELS),
        )
    } else if kind == "TrainJob" {
        (
            JOB_SUCCESS_CONDITION,
            JOB_FAILURE_CONDITION,
            Some(TRAIN_JOB_PRIMARY_POD_LABELS),
        )
    } else {
        return;
    };
    if t.success_condition.is_empty() {
        success.clone_into(&mut t.success_condition);
    }
    if t.failure_condition.is_empty() {
        failure.clone_into(&mut t.failure_condition);
    }
    if let Some(labels) = labels
        && t.primary_pod_labels.is_empty()
    {
        t.primary_pod_labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }
}

fn set_default_metrics_collector(exp: &mut Experiment) {
    let mc = exp
        .spec
        .metrics_collector_spec
        .get_or_insert_with(MetricsCollectorSpec::default);
    let kind = mc
        .collector
        .get_or_insert_with(|| CollectorSpec {
            kind: "StdOut".to_owned(),
            custom_collector: None,
        })
        .kind
        .clone();
    match kind.as_str() {
        "PrometheusMetric" => {
            let source = mc.source.get_or_insert_with(SourceSpec::default);
            let http_get = source.http_get.get_or_insert_with(|| Value::Object(Map::new()));
            if !http_get.is_object() {
                // Not an HTTPGetAction at all; leave it for validation to report.
                return;
            }
            let path_empty = http_get
                .get("path")
                .is_none_or(|p| p.is_null() || p.as_str() == Some(""));
            // Katib compares the port's text with "0": unset, 0 and "0" all get the default.
            let port_zero = http_get.get("port").is_none_or(|p| {
                p.is_null() || p.as_i64() == Some(0) || p.as_str() == Some("0") || p.as_str() == Some("")
            });
            if let Some(obj) = http_get.as_object_mut() {
                if path_empty {
                    obj.insert("path".to_owned(), Value::from(DEFAULT_PROMETHEUS_PATH));
                }
                if port_zero {
                    obj.insert("port".to_owned(), Value::from(DEFAULT_PROMETHEUS_PORT));
                }
            }
        }
        "File" => {
            let fsp = mc
                .source
                .get_or_insert_with(SourceSpec::default)
                .file_system_path
                .get_or_insert_with(FileSystemPath::default);
            fill(&mut fsp.kind, "File");
            fill(&mut fsp.path, DEFAULT_METRICS_FILE_PATH);
            fill(&mut fsp.format, "TEXT");
        }
        "TensorFlowEvent" => {
            let fsp = mc
                .source
                .get_or_insert_with(SourceSpec::default)
                .file_system_path
                .get_or_insert_with(FileSystemPath::default);
            fill(&mut fsp.kind, "Directory");
            fill(&mut fsp.path, DEFAULT_TF_EVENT_DIR);
        }
        _ => {}
    }
}

fn fill(field: &mut String, value: &str) {
    if field.is_empty() {
        value.clone_into(field);
    }
}

fn set_default_parameter_distribution(exp: &mut Experiment) {
    for p in &mut exp.spec.parameters {
        let d = p.feasible_space.distribution.get_or_insert_with(String::new);
        if d.is_empty() {
            DEFAULT_DISTRIBUTION.clone_into(d);
        }
    }
}

#[cfg(test)]
mod tests;
