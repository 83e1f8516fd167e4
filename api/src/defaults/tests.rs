use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::crd::{ConfigMapSource, ObjectiveSpec, ParameterSpec, TrialTemplate};
use crate::yaml::parse_experiment;

fn exp(yaml_spec: &str) -> Experiment {
    let text =
        format!("apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata:\n  name: t\n{yaml_spec}");
    parse_experiment(&text, "t.yaml").unwrap().experiment
}

fn defaulted(yaml_spec: &str) -> Experiment {
    let mut e = exp(yaml_spec);
    set_defaults(&mut e);
    e
}

fn strategies(e: &Experiment) -> Vec<(String, String)> {
    e.spec
        .objective
        .as_ref()
        .unwrap()
        .metric_strategies
        .iter()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn labels(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs(list).into_iter().collect()
}

fn template(kind: &str) -> TrialTemplate {
    TrialTemplate {
        trial_spec: Some(json!({"apiVersion": "x/v1", "kind": kind, "spec": {}})),
        ..TrialTemplate::default()
    }
}

fn with_template(t: TrialTemplate) -> Experiment {
    let mut e = exp("spec: {}\n");
    e.spec.trial_template = Some(t);
    set_defaults(&mut e);
    e
}

#[test]
fn parallel_trial_count_defaults_to_3_and_is_kept_when_set() {
    assert_eq!(defaulted("spec: {}\n").spec.parallel_trial_count, Some(3));
    assert_eq!(
        defaulted("spec:\n  parallelTrialCount: 7\n")
            .spec
            .parallel_trial_count,
        Some(7)
    );
    // 0 is a value (validation rejects it), not an absent field.
    assert_eq!(
        defaulted("spec:\n  parallelTrialCount: 0\n")
            .spec
            .parallel_trial_count,
        Some(0)
    );
}

#[test]
fn resume_policy_defaults_to_never() {
    assert_eq!(
        defaulted("spec: {}\n").spec.resume_policy.as_deref(),
        Some("Never")
    );
    assert_eq!(
        defaulted("spec:\n  resumePolicy: \"\"\n")
            .spec
            .resume_policy
            .as_deref(),
        Some("Never")
    );
    assert_eq!(
        defaulted("spec:\n  resumePolicy: LongRunning\n")
            .spec
            .resume_policy
            .as_deref(),
        Some("LongRunning")
    );
}

#[test]
fn objective_strategy_follows_the_objective_type() {
    for (ty, want) in [
        ("maximize", "max"),
        ("minimize", "min"),
        ("", "latest"),
        ("minimise", "latest"),
    ] {
        let e = defaulted(&format!(
            "spec:\n  objective:\n    type: \"{ty}\"\n    objectiveMetricName: accuracy\n"
        ));
        assert_eq!(strategies(&e), pairs(&[("accuracy", want)]), "type {ty:?}");
    }
}

#[test]
fn additional_metrics_get_the_same_rule_as_the_objective() {
    let e = defaulted(
        "spec:\n  objective:\n    type: minimize\n    objectiveMetricName: loss\n    \
         additionalMetricNames: [accuracy, f1]\n",
    );
    assert_eq!(
        strategies(&e),
        pairs(&[("loss", "min"), ("accuracy", "min"), ("f1", "min")])
    );
}

#[test]
fn existing_strategies_are_kept_and_only_missing_ones_added() {
    let e = defaulted(
        "spec:\n  objective:\n    type: maximize\n    objectiveMetricName: accuracy\n    \
         additionalMetricNames: [loss, f1]\n    metricStrategies:\n      - {name: loss, value: latest}\n",
    );
    assert_eq!(
        strategies(&e),
        pairs(&[("loss", "latest"), ("accuracy", "max"), ("f1", "max")])
    );
    let e = defaulted(
        "spec:\n  objective:\n    type: maximize\n    objectiveMetricName: accuracy\n    \
         metricStrategies:\n      - {name: accuracy, value: latest}\n",
    );
    assert_eq!(strategies(&e), pairs(&[("accuracy", "latest")]));
}

#[test]
fn no_objective_stays_no_objective() {
    assert_eq!(defaulted("spec: {}\n").spec.objective, None);
    // An empty objective gets Katib's strategy for its (empty) metric name, as in Go.
    let mut e = exp("spec: {}\n");
    e.spec.objective = Some(ObjectiveSpec::default());
    set_defaults(&mut e);
    assert_eq!(strategies(&e), pairs(&[("", "latest")]));
}

#[test]
fn job_template_gets_job_conditions() {
    let e = with_template(template("Job"));
    let t = e.spec.trial_template.unwrap();
    assert_eq!(
        t.success_condition,
        r#"status.conditions.#(type=="Complete")#|#(status=="True")#"#
    );
    assert_eq!(
        t.failure_condition,
        r#"status.conditions.#(type=="Failed")#|#(status=="True")#"#
    );
    assert!(t.primary_pod_labels.is_empty());
}

#[test]
fn kubeflow_training_jobs_get_conditions_and_master_labels() {
    for kind in ["TFJob", "PyTorchJob", "XGBoostJob", "MPIJob"] {
        let t = with_template(template(kind)).spec.trial_template.unwrap();
        assert_eq!(
            t.success_condition, r#"status.conditions.#(type=="Succeeded")#|#(status=="True")#"#,
            "{kind}"
        );
        assert_eq!(
            t.failure_condition,
            r#"status.conditions.#(type=="Failed")#|#(status=="True")#"#
        );
        assert_eq!(
            t.primary_pod_labels,
            labels(&[("training.kubeflow.org/job-role", "master")]),
            "{kind}"
        );
    }
}

#[test]
fn train_job_gets_jobset_labels() {
    let t = with_template(template("TrainJob")).spec.trial_template.unwrap();
    assert_eq!(t.success_condition, JOB_SUCCESS_CONDITION);
    assert_eq!(t.failure_condition, JOB_FAILURE_CONDITION);
    assert_eq!(
        t.primary_pod_labels,
        labels(&[
            ("jobset.sigs.k8s.io/replicatedjob-name", "node"),
            ("batch.kubernetes.io/job-completion-index", "0"),
        ])
    );
}

#[test]
fn template_fields_already_set_are_kept() {
    let mut t = template("PyTorchJob");
    t.success_condition = "status.done".into();
    t.primary_pod_labels = labels(&[("role", "worker")]);
    let t = with_template(t).spec.trial_template.unwrap();
    assert_eq!(t.success_condition, "status.done");
    assert_eq!(t.failure_condition, KUBEFLOW_JOB_FAILURE_CONDITION);
    assert_eq!(t.primary_pod_labels, labels(&[("role", "worker")]));
}

#[test]
fn other_kinds_and_config_map_templates_get_nothing() {
    let t = with_template(template("Workflow")).spec.trial_template.unwrap();
    assert!(t.success_condition.is_empty() && t.failure_condition.is_empty());
    assert!(t.primary_pod_labels.is_empty());

    let t = with_template(TrialTemplate {
        config_map: Some(ConfigMapSource {
            config_map_name: "trial-templates".into(),
            config_map_namespace: "kubeflow".into(),
            template_path: "defaultTrialTemplate.yaml".into(),
        }),
        ..TrialTemplate::default()
    })
    .spec
    .trial_template
    .unwrap();
    assert!(t.success_condition.is_empty() && t.failure_condition.is_empty());
    // trialParameters stays absent: validation reports it.
    assert_eq!(t.trial_parameters, None);
}

#[test]
fn metrics_collector_defaults_to_stdout() {
    let e = defaulted("spec: {}\n");
    let mc = e.spec.metrics_collector_spec.unwrap();
    assert_eq!(mc.collector.unwrap().kind, "StdOut");
    assert_eq!(mc.source, None);

    let e = defaulted(
        "spec:\n  metricsCollectorSpec:\n    source:\n      filter:\n        metricsFormat: [\"(a)(b)\"]\n",
    );
    let mc = e.spec.metrics_collector_spec.unwrap();
    assert_eq!(mc.collector.unwrap().kind, "StdOut");
    assert!(mc.source.unwrap().filter.is_some());
}

#[test]
fn file_collector_gets_path_kind_and_format() {
    let e = defaulted("spec:\n  metricsCollectorSpec:\n    collector:\n      kind: File\n");
    let fsp = e
        .spec
        .metrics_collector_spec
        .unwrap()
        .source
        .unwrap()
        .file_system_path
        .unwrap();
    assert_eq!(fsp.path, "/var/log/katib/metrics.log");
    assert_eq!(fsp.kind, "File");
    assert_eq!(fsp.format, "TEXT");

    let e = defaulted(
        "spec:\n  metricsCollectorSpec:\n    collector:\n      kind: File\n    source:\n      \
         fileSystemPath:\n        path: /katib/mnist.json\n        format: JSON\n",
    );
    let fsp = e
        .spec
        .metrics_collector_spec
        .unwrap()
        .source
        .unwrap()
        .file_system_path
        .unwrap();
    assert_eq!(fsp.path, "/katib/mnist.json");
    assert_eq!(fsp.kind, "File");
    assert_eq!(fsp.format, "JSON");
}

#[test]
fn tensorflow_event_collector_gets_a_directory() {
    let e = defaulted("spec:\n  metricsCollectorSpec:\n    collector:\n      kind: TensorFlowEvent\n");
    let fsp = e
        .spec
        .metrics_collector_spec
        .unwrap()
        .source
        .unwrap()
        .file_system_path
        .unwrap();
    assert_eq!(fsp.path, "/var/log/katib/tfevent/");
    assert_eq!(fsp.kind, "Directory");
    assert_eq!(fsp.format, "");
}

#[test]
fn prometheus_collector_gets_path_and_port() {
    let e = defaulted("spec:\n  metricsCollectorSpec:\n    collector:\n      kind: PrometheusMetric\n");
    let http = e
        .spec
        .metrics_collector_spec
        .unwrap()
        .source
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(http, json!({"path": "/metrics", "port": 8080}));

    let e = defaulted(
        "spec:\n  metricsCollectorSpec:\n    collector:\n      kind: PrometheusMetric\n    source:\n      \
         httpGet:\n        path: /stats\n        port: 0\n",
    );
    let http = e
        .spec
        .metrics_collector_spec
        .unwrap()
        .source
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(http, json!({"path": "/stats", "port": 8080}));

    let e = defaulted(
        "spec:\n  metricsCollectorSpec:\n    collector:\n      kind: PrometheusMetric\n    source:\n      \
         httpGet:\n        port: metrics\n",
    );
    let http = e
        .spec
        .metrics_collector_spec
        .unwrap()
        .source
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(http, json!({"port": "metrics", "path": "/metrics"}));
}

#[test]
fn every_parameter_without_distribution_gets_uniform() {
    let e = defaulted(
        "spec:\n  parameters:\n    - {name: a, parameterType: double}\n    - name: b\n      \
         feasibleSpace: {distribution: logUniform}\n    - name: c\n      feasibleSpace: {distribution: \"\"}\n",
    );
    let d: Vec<_> = e
        .spec
        .parameters
        .iter()
        .map(|p| p.feasible_space.distribution.clone().unwrap())
        .collect();
    assert_eq!(d, ["uniform", "logUniform", "uniform"]);
}

#[test]
fn nas_operation_parameters_are_not_defaulted() {
    let mut e = exp("spec: {}\n");
    e.spec.nas_config = Some(crate::crd::NasConfig {
        graph_config: None,
        operations: vec![crate::crd::NasOperation {
            operation_type: "convolution".into(),
            parameters: vec![ParameterSpec::default()],
        }],
    });
    set_defaults(&mut e);
    let nas = e.spec.nas_config.unwrap();
    assert_eq!(nas.operations[0].parameters[0].feasible_space.distribution, None);
}

#[test]
fn defaults_are_idempotent_on_every_example() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/katib-examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut once = crate::yaml::load_experiment(&path).unwrap().experiment;
        set_defaults(&mut once);
        let mut twice = once.clone();
        set_defaults(&mut twice);
        assert_eq!(once, twice, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 5);

    let mut e = exp(
        "spec:\n  objective: {type: maximize, objectiveMetricName: a, additionalMetricNames: [b]}\n  \
         metricsCollectorSpec: {collector: {kind: PrometheusMetric}}\n",
    );
    set_defaults(&mut e);
    let once = e.clone();
    set_defaults(&mut e);
    assert_eq!(once, e);
}
