//! Katib's v1beta1 custom resources (group `kubeflow.org`): Experiment, Trial, Suggestion.
//!
//! Field names, optionality and JSON shape follow Katib's Go types so that Katib's YAML,
//! `kubectl` and the kubeflow-katib SDK read and write these objects unchanged. Enum-like
//! fields are plain strings, as in Go (`type ParameterType string`): an unknown value is
//! kept and reported by validation with its field path, rather than failing the parse.
//! Numbers written without quotes where Katib expects strings (`min: 0.01`) are accepted
//! and kept as their decimal text.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `apiVersion` of every Katib resource.
pub const API_VERSION: &str = "kubeflow.org/v1beta1";
/// API group of every Katib resource.
pub const GROUP: &str = "kubeflow.org";
/// Label put on every Trial, naming its Experiment.
pub const EXPERIMENT_LABEL: &str = "katib.kubeflow.org/experiment";
/// Label put on every trial pod/process, naming its Trial.
pub const TRIAL_LABEL: &str = "katib.kubeflow.org/trial";
/// Metric value stored when a trial reported nothing for its objective.
pub const UNAVAILABLE: &str = "unavailable";

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Accepts a YAML/JSON string, number or bool and keeps its text.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::U(u) => u.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    })
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "string_or_number")] String);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

fn vec_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "string_or_number")] String);
    Ok(Option::<Vec<W>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.0)
        .collect())
}

/// The subset of Kubernetes `ObjectMeta` Katib objects use; other fields are kept verbatim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<Value>,
    /// Any other metadata field (managedFields, deletionTimestamp, ...), kept as given.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A name/value pair (`parameterAssignments`, `algorithmSettings`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    #[serde(default, deserialize_with = "string_or_number")]
    pub value: String,
}

/// Alias kept for readability where Katib names the type `ParameterAssignment`.
pub type ParameterAssignment = NameValue;
/// Alias kept for readability where Katib names the type `AlgorithmSetting`.
pub type AlgorithmSetting = NameValue;

/// A status condition (Experiment, Trial and Suggestion share the shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

// ------------------------------------------------------------------------------------------
// Experiment
// ------------------------------------------------------------------------------------------

/// A Katib Experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ExperimentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExperimentStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ObjectiveSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<AlgorithmSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<AlgorithmSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_template: Option<TrialTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_trial_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trial_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failed_trial_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_collector_spec: Option<MetricsCollectorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nas_config: Option<NasConfig>,
    /// `Never` (default), `LongRunning` or `FromVolume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_policy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterSpec {
    #[serde(default)]
    pub name: String,
    /// `double`, `int`, `discrete`, `categorical` (or `unknown`).
    #[serde(default)]
    pub parameter_type: String,
    #[serde(default)]
    pub feasible_space: FeasibleSpace,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeasibleSpace {
    #[serde(
        default,
        deserialize_with = "opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub min: Option<String>,
    #[serde(
        default,
        deserialize_with = "vec_string_or_number",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub list: Vec<String>,
    #[serde(
        default,
        deserialize_with = "opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub step: Option<String>,
    /// `uniform` (default), `logUniform`, `normal`, `logNormal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
}

impl FeasibleSpace {
    /// True when no field is set (Katib rejects an empty feasible space).
    pub fn is_empty(&self) -> bool {
        self.max.is_none() && self.min.is_none() && self.list.is_empty() && self.step.is_none()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveSpec {
    /// `minimize` or `maximize`.
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<f64>,
    #[serde(default)]
    pub objective_metric_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_metric_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_strategies: Vec<MetricStrategy>,
}

impl ObjectiveSpec {
    /// True for `maximize`.
    pub fn is_maximize(&self) -> bool {
        self.type_ == "maximize"
    }

    /// Every metric the trial reports: the objective first, then the additional ones.
    pub fn all_metric_names(&self) -> Vec<String> {
        std::iter::once(self.objective_metric_name.clone())
            .chain(self.additional_metric_names.iter().cloned())
            .collect()
    }

    /// The strategy (`min`, `max`, `latest`) for `metric`, Katib's default when unset.
    pub fn strategy_for(&self, metric: &str) -> &str {
        self.metric_strategies
            .iter()
            .find(|s| s.name == metric)
            .map(|s| s.value.as_str())
            .unwrap_or(match self.type_.as_str() {
                "minimize" => "min",
                "maximize" => "max",
                _ => "latest",
            })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricStrategy {
    #[serde(default)]
    pub name: String,
    /// `min`, `max` or `latest`.
    #[serde(default)]
    pub value: String,
}

/// Algorithm (and early-stopping) spec: a name and string settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlgorithmSpec {
    #[serde(default)]
    pub algorithm_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithm_settings: Vec<AlgorithmSetting>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialTemplate {
    #[serde(default, skip_serializing_if = "is_false")]
    pub retain: bool,
    /// Inline job template (any Kubernetes object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_spec: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_parameters: Option<Vec<TrialParameterSpec>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub primary_pod_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub primary_container_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub success_condition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_condition: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_map_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_map_namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template_path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialParameterSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub reference: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsCollectorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorSpec>,
}

impl MetricsCollectorSpec {
    /// The collector kind, `StdOut` when unset (Katib's default).
    pub fn kind(&self) -> &str {
        self.collector
            .as_ref()
            .map(|c| c.kind.as_str())
            .filter(|k| !k.is_empty())
            .unwrap_or("StdOut")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system_path: Option<FileSystemPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSystemPath {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// `File` or `Directory`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// `TEXT` or `JSON`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_format: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorSpec {
    /// `StdOut`, `File`, `TensorFlowEvent`, `PrometheusMetric`, `Custom` or `Push`.
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_collector: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NasConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_config: Option<GraphConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<NasOperation>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_sizes: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_sizes: Vec<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NasOperation {
    #[serde(default)]
    pub operation_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterSpec>,
}

/// Experiment status, Katib's shape (counters are omitted when zero, as in Go).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// `null` until the experiment completes (Katib writes the zero time as null).
    #[serde(default)]
    pub completion_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_optimal_trial: Option<OptimalTrial>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running_trial_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_trial_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_trial_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub succeeded_trial_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killed_trial_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub early_stopped_trial_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_unavailable_trial_list: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trials: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trials_succeeded: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trials_failed: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trials_killed: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trials_pending: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trials_running: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trials_early_stopped: i32,
    /// Katib spells this one with a singular `trial` prefix.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trial_metrics_unavailable: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptimalTrial {
    #[serde(default)]
    pub best_trial_name: String,
    #[serde(default)]
    pub parameter_assignments: Vec<ParameterAssignment>,
    #[serde(default)]
    pub observation: Observation,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

impl Observation {
    /// The observed metric called `name`, if any.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// One metric of an observation: its min, max and latest reported values (as text).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    #[serde(default)]
    pub min: String,
    #[serde(default)]
    pub max: String,
    #[serde(default)]
    pub latest: String,
}

// ------------------------------------------------------------------------------------------
// Trial
// ------------------------------------------------------------------------------------------

/// A Katib Trial: one set of assignments and the job that evaluates it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: TrialSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TrialStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ObjectiveSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_assignments: Vec<ParameterAssignment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub early_stopping_rules: Vec<EarlyStoppingRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_spec: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub retain_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_collector: Option<MetricsCollectorSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub primary_pod_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub primary_container_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub success_condition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_condition: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EarlyStoppingRule {
    pub name: String,
    pub value: String,
    /// `equal`, `less` or `greater`.
    pub comparison: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_step: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default)]
    pub completion_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
}

// ------------------------------------------------------------------------------------------
// Suggestion
// ------------------------------------------------------------------------------------------

/// A Katib Suggestion: the controller's request for assignments from an algorithm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SuggestionSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SuggestionStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<AlgorithmSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<AlgorithmSpec>,
    #[serde(default)]
    pub requests: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_policy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithm_settings: Vec<AlgorithmSetting>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suggestion_count: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<TrialAssignment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default)]
    pub completion_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialAssignment {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_assignments: Vec<ParameterAssignment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub early_stopping_rules: Vec<EarlyStoppingRule>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}
