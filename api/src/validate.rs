//! Katib's validation webhook (`/validate-experiment`) rules that need no cluster, with
//! errors that name the field, its line and a fix.
//!
//! [`validate`] (or [`validate_with`] for another set of algorithms) checks an Experiment
//! *after* [`crate::defaults::set_defaults`], as Katib's webhook sees it, and returns every
//! problem found, not only the first. [`load_and_validate`] reads a file, applies the
//! defaults and validates; it is what `katib validate` and `katib run` use.
//!
//! The rules are Katib v1beta1's (`pkg/webhook/v1beta1/experiment/validator/validator.go`),
//! with messages that keep Katib's wording where it is clear, and these changes:
//! - `metadata.name` is matched against the whole DNS-1035 label regex
//!   `^[a-z]([-a-z0-9]*[a-z0-9])?$` (Katib forgets the `$`, so it only checks the first
//!   character) and may be at most 40 characters.
//! - The algorithm and early-stopping names are checked against a list ([`Known`]) instead of
//!   the katib-config ConfigMap; the default list is katib-rs's built-in algorithms.
//! - Checks Katib lacks: `min`/`max`/`step` of `int`/`double` parameters must be numbers
//!   (whole numbers for `int`), `min <= max`, `step > 0`, and `min > 0` for the
//!   `logUniform`/`logNormal` distributions (their suggestion services take `log(min)`);
//!   parameter names must be given and unique; a categorical/discrete parameter must list at
//!   least one value (`spec.nasConfig` operation parameters get the same checks); a
//!   `generateName` must make a valid name; a metric strategy must be `min`, `max` or
//!   `latest`; when the trial
//!   template lists containers, one must be named `primaryContainerName` (Katib's pod webhook
//!   would otherwise reject every trial pod); a metrics filter, read as a Go regexp
//!   ([`crate::goregex::translate`]), must have two capture groups (Katib counts
//!   parentheses); [`default_and_validate`] also reports fields Katib's Experiment does not
//!   have (kubectl's strict field validation rejects them; the API server would drop them).
//! - Every problem is reported: Katib stops after an objective error or the first trial
//!   parameter missing from the template.
//!
//! Not checked here (they need a cluster or the job's schema): the namespace label, the
//! edit rules on UPDATE, a ConfigMap template's content, the `FromVolume` volume, and the
//! lossless conversion of a `batch/v1` Job template.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::crd::{Experiment, ParameterSpec, TrialTemplate};
use crate::defaults::set_defaults;
use crate::yaml::{LineIndex, LoadError, LoadedExperiment, join_index, join_key, load_experiment};

/// One problem, printed as `spec.parameters[2].feasibleSpace.min: "abc" is not a number; use a
/// number such as 0.01`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path in [`LineIndex`] syntax (`spec.parameters[2].feasibleSpace.min`).
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub hint: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, problem: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

/// Every problem found in one Experiment file. Displays one line per problem, in file order:
/// `experiment.yaml:14: spec.parameters[2].feasibleSpace.min: ...; hint` (a problem with a
/// field that is not in the file is placed at its nearest parent that is; with no line at all
/// the line number is left out).
#[derive(Clone, Debug, thiserror::Error)]
pub struct ValidationError {
    /// The file name used in messages.
    pub file: String,
    /// The problems, in the order the checks found them.
    pub errors: Vec<FieldError>,
    /// Lines of the file's fields.
    pub lines: LineIndex,
}

impl ValidationError {
    /// The line a problem is reported at: its field's, or its nearest present parent's.
    pub fn line_of(&self, error: &FieldError) -> Option<u32> {
        self.lines.nearest_line(&error.path)
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted: Vec<(Option<u32>, &FieldError)> =
            self.errors.iter().map(|e| (self.line_of(e), e)).collect();
        // File order; problems without a line last.
        sorted.sort_by_key(|(line, _)| line.unwrap_or(u32::MAX));
        for (i, (line, error)) in sorted.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match line {
                Some(line) => write!(f, "{}:{line}: {error}", self.file)?,
                None => write!(f, "{}: {error}", self.file)?,
            }
        }
        Ok(())
    }
}

/// Why [`load_and_validate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The Experiment breaks one or more rules.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// Algorithm names the suggestion service knows (Katib reads them from katib-config).
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    /// Names accepted in `spec.algorithm.algorithmName`.
    pub algorithms: &'a [&'a str],
    /// Names accepted in `spec.earlyStopping.algorithmName`.
    pub early_stopping: &'a [&'a str],
}

/// katib-rs's built-in search algorithms.
pub const BUILTIN_ALGORITHMS: &[&str] = &[
    "random",
    "grid",
    "bayesianoptimization",
    "tpe",
    "multivariate-tpe",
    "cmaes",
    "sobol",
    "hyperband",
];
/// katib-rs's built-in early-stopping algorithms.
pub const BUILTIN_EARLY_STOPPING: &[&str] = &["medianstop", "asha"];

impl Known<'static> {
    /// katib-rs's built-in algorithms.
    pub const BUILTIN: Known<'static> = Known {
        algorithms: BUILTIN_ALGORITHMS,
        early_stopping: BUILTIN_EARLY_STOPPING,
    };
}

impl Default for Known<'static> {
    fn default() -> Self {
        Known::BUILTIN
    }
}

/// Reads `path`, applies Katib's defaults and validates against the built-in algorithms;
/// returns the defaulted Experiment.
pub fn load_and_validate(path: &Path) -> Result<Experiment, Error> {
    load_and_validate_with(path, &Known::BUILTIN)
}

/// [`load_and_validate`] with another set of known algorithms.
pub fn load_and_validate_with(path: &Path, known: &Known<'_>) -> Result<Experiment, Error> {
    let loaded = load_experiment(path)?;
    Ok(default_and_validate(loaded, &path.display().to_string(), known)?)
}

/// Applies the defaults to a loaded Experiment and validates it; `file` names it in messages.
/// Fields the file has but Katib's Experiment does not ([`LoadedExperiment::unknown_fields`])
/// are reported too.
pub fn default_and_validate(
    loaded: LoadedExperiment,
    file: &str,
    known: &Known<'_>,
) -> Result<Experiment, ValidationError> {
    let LoadedExperiment {
        mut experiment,
        lines,
        unknown_fields,
    } = loaded;
    set_defaults(&mut experiment);
    let mut errors: Vec<FieldError> = unknown_fields.iter().map(|p| unknown_field(p)).collect();
    errors.extend(validate_with(&experiment, known));
    if errors.is_empty() {
        Ok(experiment)
    } else {
        Err(ValidationError {
            file: file.to_owned(),
            errors,
            lines,
        })
    }
}

/// The problem for a field Katib's Experiment does not have.
fn unknown_field(path: &str) -> FieldError {
    let key = path
        .rsplit(['.', '['])
        .next()
        .unwrap_or(path)
        .trim_matches(['"', ']']);
    FieldError::new(
        path,
        format!("unknown field {key:?}"),
        with_suggestion(
            key,
            KNOWN_FIELDS,
            "remove it or fix its spelling: Katib's v1beta1 Experiment has no such field (kubectl \
             rejects it, and katib would ignore it)",
        ),
    )
}

/// Field names of Katib's Experiment types, for "did you mean" hints.
const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "status",
    "parameters",
    "objective",
    "algorithm",
    "earlyStopping",
    "trialTemplate",
    "parallelTrialCount",
    "maxTrialCount",
    "maxFailedTrialCount",
    "metricsCollectorSpec",
    "nasConfig",
    "resumePolicy",
    "name",
    "parameterType",
    "feasibleSpace",
    "min",
    "max",
    "list",
    "step",
    "distribution",
    "type",
    "goal",
    "objectiveMetricName",
    "additionalMetricNames",
    "metricStrategies",
    "value",
    "algorithmName",
    "algorithmSettings",
    "retain",
    "trialSpec",
    "configMap",
    "configMapName",
    "configMapNamespace",
    "templatePath",
    "trialParameters",
    "description",
    "reference",
    "primaryPodLabels",
    "primaryContainerName",
    "successCondition",
    "failureCondition",
    "source",
    "collector",
    "httpGet",
    "fileSystemPath",
    "filter",
    "metricsFormat",
    "path",
    "format",
    "customCollector",
    "graphConfig",
    "numLayers",
    "inputSizes",
    "outputSizes",
    "operations",
    "operationType",
];

/// Checks a defaulted Experiment against Katib's rules and katib-rs's built-in algorithms.
pub fn validate(exp: &Experiment) -> Vec<FieldError> {
    validate_with(exp, &Known::BUILTIN)
}

/// Checks a defaulted Experiment against Katib's rules, with `known` algorithm names.
pub fn validate_with(exp: &Experiment, known: &Known<'_>) -> Vec<FieldError> {
    let mut v = Validator { errors: Vec::new() };
    v.name(exp);
    v.budget(exp);
    v.objective(exp);
    v.algorithm(exp, known);
    v.early_stopping(exp, known);
    v.resume_policy(exp);
    v.trial_template(exp);
    v.search_space(exp);
    v.metrics_collector(exp);
    v.errors
}

// ------------------------------------------------------------------------------------------

/// Longest Experiment name: `<name>-<algorithm>` names a Service (at most 63 characters).
pub const MAX_NAME_LEN: usize = 40;

const PARAMETER_TYPES: &[&str] = &["double", "int", "discrete", "categorical", "unknown"];
const DISTRIBUTIONS: &[&str] = &["uniform", "logUniform", "normal", "logNormal", "unknown"];
const RESUME_POLICIES: &[&str] = &["Never", "LongRunning", "FromVolume"];
const COLLECTOR_KINDS: &[&str] = &[
    "StdOut",
    "File",
    "TensorFlowEvent",
    "PrometheusMetric",
    "Custom",
    "Push",
];
const TRIAL_META_KEYS: &[&str] = &["Name", "Namespace", "Kind", "APIVersion", "Labels", "Annotations"];

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{trialParameters\..+?\}").expect("valid regex"));
static META_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{trialSpec\.(.+?)\}").expect("valid regex"));
static META_INDEXED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(.+)\[(.+)]").expect("valid regex"));

/// Katib's default metrics filter, quoted in hints.
const EXAMPLE_FILTER: &str = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)";

const TEMPLATE: &str = "spec.trialTemplate";
const TRIAL_SPEC: &str = "spec.trialTemplate.trialSpec";
const TRIAL_PARAMETERS: &str = "spec.trialTemplate.trialParameters";
const COLLECTOR: &str = "spec.metricsCollectorSpec.collector";
const SOURCE: &str = "spec.metricsCollectorSpec.source";
const FS_PATH: &str = "spec.metricsCollectorSpec.source.fileSystemPath";

struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, problem: impl Into<String>, hint: impl Into<String>) {
        self.errors.push(FieldError::new(path, problem, hint));
    }

    fn name(&mut self, exp: &Experiment) {
        let meta = &exp.metadata;
        match (meta.name.as_deref(), meta.generate_name.as_deref()) {
            (Some(name), _) if !name.is_empty() => {
                if !is_dns1035_label(name) {
                    self.err(
                        "metadata.name",
                        format!(
                            "{name:?} is not valid: name must consist of lower case alphanumeric \
                             characters or '-', start with an alphabetic character, and end with an \
                             alphanumeric character (regex used for validation is \
                             '^[a-z]([-a-z0-9]*[a-z0-9])?$')"
                        ),
                        format!("use a name such as {:?}", suggest_name(name)),
                    );
                }
                if name.len() > MAX_NAME_LEN {
                    self.err(
                        "metadata.name",
                        format!(
                            "name is {} characters long; it may not be longer than {MAX_NAME_LEN} \
                             characters",
                            name.len()
                        ),
                        "shorten it: the suggestion Service is named <name>-<algorithmName> and \
                         Kubernetes limits Service names to 63 characters",
                    );
                }
            }
            (_, Some(prefix)) if !prefix.is_empty() => {
                // The API server appends 5 random characters.
                let valid_prefix = prefix.starts_with(|c: char| c.is_ascii_lowercase())
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !valid_prefix || prefix.len() + 5 > MAX_NAME_LEN {
                    self.err(
                        "metadata.generateName",
                        format!(
                            "{prefix:?} is not a valid name prefix: generated names must be DNS-1035 \
                             labels of at most {MAX_NAME_LEN} characters"
                        ),
                        format!(
                            "use lower case letters, digits and '-', start with a letter, and keep \
                             it to {} characters",
                            MAX_NAME_LEN - 5
                        ),
                    );
                }
            }
            _ => self.err(
                "metadata.name",
                "must be specified",
                "add metadata.name, e.g. name: random-example (lower case letters, digits and '-', \
                 at most 40 characters)",
            ),
        }
    }

    fn budget(&mut self, exp: &Experiment) {
        let s = &exp.spec;
        if let Some(n) = s.max_failed_trial_count
            && n < 0
        {
            self.err(
                "spec.maxFailedTrialCount",
                format!("{n} should not be less than 0"),
                "use 0 to stop the experiment at the first failed trial, a positive count to \
                 tolerate failures, or remove the field for no limit",
            );
        }
        if let Some(n) = s.max_trial_count
            && n <= 0
        {
            self.err(
                "spec.maxTrialCount",
                format!("{n} must be greater than 0"),
                "set the number of trials to run, e.g. 12, or remove the field to run until the \
                 goal is reached",
            );
        }
        if let Some(n) = s.parallel_trial_count
            && n <= 0
        {
            self.err(
                "spec.parallelTrialCount",
                format!("{n} must be greater than 0"),
                "set how many trials run at the same time, e.g. 3 (the default when the field is \
                 left out)",
            );
        }
        if let (Some(failed), Some(max)) = (s.max_failed_trial_count, s.max_trial_count)
            && failed > max
        {
            self.err(
                "spec.maxFailedTrialCount",
                format!("{failed} should be less than or equal to spec.maxTrialCount ({max})"),
                format!("lower spec.maxFailedTrialCount to at most {max}, or raise spec.maxTrialCount"),
            );
        }
        if let (Some(parallel), Some(max)) = (s.parallel_trial_count, s.max_trial_count)
            && parallel > max
        {
            self.err(
                "spec.parallelTrialCount",
                format!("{parallel} should be less than or equal to spec.maxTrialCount ({max})"),
                format!("lower spec.parallelTrialCount to at most {max}, or raise spec.maxTrialCount"),
            );
        }
    }

    fn objective(&mut self, exp: &Experiment) {
        let Some(obj) = &exp.spec.objective else {
            self.err(
                "spec.objective",
                "must be specified",
                "add spec.objective with type (minimize or maximize) and objectiveMetricName, the \
                 metric your trials report",
            );
            return;
        };
        if obj.type_ != "minimize" && obj.type_ != "maximize" {
            let problem = if obj.type_.is_empty() {
                "must be specified: it must be minimize or maximize".to_owned()
            } else {
                format!("{:?} is not valid: it must be minimize or maximize", obj.type_)
            };
            self.err(
                "spec.objective.type",
                problem,
                with_suggestion(
                    &obj.type_,
                    &["minimize", "maximize"],
                    "use minimize (lower is better, e.g. loss) or maximize (higher is better, e.g. \
                     accuracy)",
                ),
            );
        }
        if obj.objective_metric_name.is_empty() {
            self.err(
                "spec.objective.objectiveMetricName",
                "must be specified",
                "name the metric to optimize as your trials print or report it, e.g. accuracy",
            );
        } else if let Some(i) = obj
            .additional_metric_names
            .iter()
            .position(|m| *m == obj.objective_metric_name)
        {
            self.err(
                join_index("spec.objective.additionalMetricNames", i),
                "should not contain spec.objective.objectiveMetricName",
                format!(
                    "remove {:?} from additionalMetricNames: the objective metric is always \
                     collected",
                    obj.objective_metric_name
                ),
            );
        }
        for (i, s) in obj.metric_strategies.iter().enumerate() {
            if !matches!(s.value.as_str(), "min" | "max" | "latest") {
                self.err(
                    join_key(&join_index("spec.objective.metricStrategies", i), "value"),
                    format!("{:?} is not a metric strategy", s.value),
                    with_suggestion(
                        &s.value,
                        &["min", "max", "latest"],
                        "use min, max or latest (which of a trial's reported values counts)",
                    ),
                );
            }
        }
    }

    fn algorithm(&mut self, exp: &Experiment, known: &Known<'_>) {
        let Some(alg) = &exp.spec.algorithm else {
            self.err(
                "spec.algorithm",
                "must be specified",
                format!(
                    "add spec.algorithm.algorithmName, one of: {}",
                    known.algorithms.join(", ")
                ),
            );
            return;
        };
        self.algorithm_name(
            "spec.algorithm.algorithmName",
            &alg.algorithm_name,
            known.algorithms,
            "Suggestion",
        );
    }

    fn early_stopping(&mut self, exp: &Experiment, known: &Known<'_>) {
        if let Some(es) = &exp.spec.early_stopping {
            self.algorithm_name(
                "spec.earlyStopping.algorithmName",
                &es.algorithm_name,
                known.early_stopping,
                "EarlyStopping",
            );
        }
    }

    fn algorithm_name(&mut self, path: &str, name: &str, known: &[&str], what: &str) {
        let list = known.join(", ");
        if name.is_empty() {
            self.err(path, "must be specified", format!("use one of: {list}"));
        } else if !known.contains(&name) {
            self.err(
                path,
                format!(
                    "unknown algorithm {name:?} (unable to get {what} config data for algorithm \
                     {name})"
                ),
                with_suggestion(name, known, &format!("use one of: {list}")),
            );
        }
    }

    fn resume_policy(&mut self, exp: &Experiment) {
        if let Some(p) = exp.spec.resume_policy.as_deref()
            && !p.is_empty()
            && !RESUME_POLICIES.contains(&p)
        {
            self.err(
                "spec.resumePolicy",
                format!("{p:?} is an invalid ResumePolicyType"),
                with_suggestion(
                    p,
                    RESUME_POLICIES,
                    "use Never (the default), LongRunning or FromVolume",
                ),
            );
        }
    }

    // --------------------------------------------------------------------------------------
    // Trial template
    // --------------------------------------------------------------------------------------

    fn trial_template(&mut self, exp: &Experiment) {
        let Some(t) = &exp.spec.trial_template else {
            self.err(
                TEMPLATE,
                "must be specified",
                "add spec.trialTemplate with primaryContainerName, trialParameters and trialSpec \
                 (the job each trial runs)",
            );
            return;
        };
        let containers = t.trial_spec.as_ref().map(container_names).unwrap_or_default();
        if t.primary_container_name.is_empty() {
            let hint = match containers.first() {
                Some(c) => format!("set it to the name of the training container, e.g. {c:?}"),
                None => "set it to the name of the training container in trialSpec".to_owned(),
            };
            self.err(
                join_key(TEMPLATE, "primaryContainerName"),
                "must be specified",
                hint,
            );
        } else if !containers.is_empty()
            && !containers
                .iter()
                .any(|c| *c == t.primary_container_name || c.contains("${"))
        {
            self.err(
                join_key(TEMPLATE, "primaryContainerName"),
                format!(
                    "no container in spec.trialTemplate.trialSpec is named {:?} (containers: {})",
                    t.primary_container_name,
                    containers.join(", ")
                ),
                "set primaryContainerName to the training container's name: Katib injects the \
                 metrics collector next to it and rejects trial pods without it",
            );
        }
        for (field, example) in [
            (
                "successCondition",
                r#"status.conditions.#(type=="Complete")#|#(status=="True")#"#,
            ),
            (
                "failureCondition",
                r#"status.conditions.#(type=="Failed")#|#(status=="True")#"#,
            ),
        ] {
            let value = if field == "successCondition" {
                &t.success_condition
            } else {
                &t.failure_condition
            };
            if value.is_empty() {
                self.err(
                    join_key(TEMPLATE, field),
                    "must be specified (successCondition and failureCondition must be specified)",
                    format!(
                        "set a GJSON path on the job that matches when it {}, e.g. {example}; it \
                         is filled in for kind Job, TFJob, PyTorchJob, XGBoostJob, MPIJob and \
                         TrainJob",
                        if field == "successCondition" {
                            "succeeded"
                        } else {
                            "failed"
                        }
                    ),
                );
            }
        }

        match (&t.trial_spec, &t.config_map) {
            (None, None) => self.err(
                TEMPLATE,
                "spec.trialTemplate.trialSpec or spec.trialTemplate.configMap must be specified",
                "add trialSpec: the Kubernetes job (e.g. a batch/v1 Job) each trial runs",
            ),
            (Some(_), Some(_)) => self.err(
                join_key(TEMPLATE, "configMap"),
                "only one of spec.trialTemplate.trialSpec or spec.trialTemplate.configMap can be \
                 specified",
                "remove configMap to use the inline trialSpec, or remove trialSpec",
            ),
            (None, Some(cm)) => {
                for (field, value) in [
                    ("configMapName", &cm.config_map_name),
                    ("configMapNamespace", &cm.config_map_namespace),
                    ("templatePath", &cm.template_path),
                ] {
                    if value.is_empty() {
                        self.err(
                            join_key(&join_key(TEMPLATE, "configMap"), field),
                            "must be specified (configMapName, configMapNamespace and \
                             templatePath must be specified)",
                            "name the ConfigMap, its namespace and the key that holds the template",
                        );
                    }
                }
            }
            (Some(spec), None) => self.trial_spec(spec),
        }

        let Some(params) = &t.trial_parameters else {
            self.err(
                TRIAL_PARAMETERS,
                "must be specified",
                "list each ${trialParameters.<name>} the template uses, e.g. - name: learningRate \
                 with reference: lr (write trialParameters: [] if it uses none)",
            );
            return;
        };
        self.trial_parameters(exp, t, params);
    }

    fn trial_spec(&mut self, spec: &Value) {
        let Some(obj) = spec.as_object() else {
            self.err(
                TRIAL_SPEC,
                "unable to convert spec.trialTemplate to unstructured: it must be a Kubernetes \
                 object",
                "write trialSpec as a mapping with apiVersion, kind and spec, e.g. a batch/v1 Job",
            );
            return;
        };
        for field in ["apiVersion", "kind"] {
            if obj.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                self.err(
                    join_key(TRIAL_SPEC, field),
                    "APIVersion and Kind in spec.trialTemplate must be specified",
                    "add apiVersion and kind of the job, e.g. apiVersion: batch/v1 and kind: Job",
                );
            }
        }
        let meta = obj.get("metadata");
        for field in ["name", "namespace"] {
            let set = meta
                .and_then(|m| m.get(field))
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
            if set {
                self.err(
                    join_key(&join_key(TRIAL_SPEC, "metadata"), field),
                    "metadata.name and metadata.namespace in spec.trialTemplate must be omitted",
                    "remove it: each trial's job is named after the trial and created in the \
                     experiment's namespace",
                );
            }
        }
    }

    fn trial_parameters(
        &mut self,
        exp: &Experiment,
        t: &TrialTemplate,
        params: &[crate::crd::TrialParameterSpec],
    ) {
        let parameter_names: Vec<&str> = exp.spec.parameters.iter().map(|p| p.name.as_str()).collect();
        let template = t.trial_spec.as_ref().map(|s| s.to_string());
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut refs: HashMap<&str, usize> = HashMap::new();
        let mut declared: Vec<&str> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let base = join_index(TRIAL_PARAMETERS, i);
            let name_ok = !p.name.is_empty() && !p.name.contains(['{', '}']);
            // A usable name counts as declared even if the entry has another problem, so its
            // placeholders are not reported a second time.
            if name_ok && !declared.contains(&p.name.as_str()) {
                declared.push(&p.name);
            }
            if !name_ok || p.reference.is_empty() {
                let (field, hint) = if p.name.is_empty() {
                    (
                        "name",
                        "add name: the placeholder ${trialParameters.<name>} it fills",
                    )
                } else if p.name.contains(['{', '}']) {
                    (
                        "name",
                        "write the bare name (learningRate), not the placeholder \
                         (${trialParameters.learningRate})",
                    )
                } else {
                    (
                        "reference",
                        "add reference: the spec.parameters name whose value fills the placeholder",
                    )
                };
                self.err(
                    join_key(&base, field),
                    "name and reference must be specified and name must not contain '{' or '}'",
                    hint,
                );
                continue;
            }
            if let Some(first) = names.get(p.name.as_str()) {
                self.err(
                    join_key(&base, "name"),
                    format!(
                        "parameter name {} can't be duplicated in spec.trialTemplate.trialParameters \
                         (also in trialParameters[{first}])",
                        p.name
                    ),
                    "give each trial parameter a unique name",
                );
                continue;
            }
            if let Some(first) = refs.get(p.reference.as_str()) {
                self.err(
                    join_key(&base, "reference"),
                    format!(
                        "parameter reference {} can't be duplicated in \
                         spec.trialTemplate.trialParameters (also in trialParameters[{first}])",
                        p.reference
                    ),
                    "reference each spec.parameters entry from one trial parameter only",
                );
                continue;
            }
            names.insert(&p.name, i);
            refs.insert(&p.reference, i);

            if !parameter_names.is_empty()
                && !is_meta_reference(&p.reference)
                && !parameter_names.contains(&p.reference.as_str())
            {
                self.err(
                    join_key(&base, "reference"),
                    format!(
                        "parameter reference {} does not exist in spec.parameters",
                        p.reference
                    ),
                    with_suggestion(
                        &p.reference,
                        &parameter_names,
                        &format!(
                            "use one of the spec.parameters names ({}) or a trial metadata \
                             reference such as ${{trialSpec.Name}}",
                            parameter_names.join(", ")
                        ),
                    ),
                );
            }
            if let Some(template) = &template
                && !template.contains(&placeholder(&p.name))
            {
                self.err(
                    join_key(&base, "name"),
                    format!(
                        "parameter name: {} in spec.trialParameters not found in spec.trialTemplate",
                        p.name
                    ),
                    format!(
                        "use {} in the trial template (e.g. in the container's command), or \
                         remove this trial parameter",
                        placeholder(&p.name)
                    ),
                );
            }
        }
        // Placeholders the template uses that no trial parameter declares.
        if let Some(spec) = &t.trial_spec {
            let mut found: Vec<(String, String)> = Vec::new();
            walk_strings(spec, TRIAL_SPEC.to_owned(), &mut |path, text| {
                let mut rest = text.to_owned();
                for name in &declared {
                    rest = rest.replace(&placeholder(name), "");
                }
                for m in PLACEHOLDER.find_iter(&rest) {
                    found.push((path.to_owned(), m.as_str().to_owned()));
                }
            });
            for (path, used) in found {
                let name = used
                    .trim_start_matches("${trialParameters.")
                    .trim_end_matches('}');
                self.err(
                    path,
                    format!("parameters: {used} in spec.trialTemplate not found in spec.trialParameters"),
                    with_suggestion(
                        name,
                        &declared,
                        &format!(
                            "declare it in spec.trialTemplate.trialParameters (- name: {name} with \
                             reference: <a spec.parameters name>) or fix the placeholder"
                        ),
                    ),
                );
            }
        }
    }

    // --------------------------------------------------------------------------------------
    // Search space
    // --------------------------------------------------------------------------------------

    fn search_space(&mut self, exp: &Experiment) {
        let s = &exp.spec;
        if s.parameters.is_empty() && s.nas_config.is_none() {
            self.err(
                "spec.parameters",
                "spec.parameters or spec.nasConfig must be specified",
                "add spec.parameters, the search space, e.g. - name: lr with parameterType: double \
                 and feasibleSpace: {min: \"0.01\", max: \"0.05\"}",
            );
        }
        if !s.parameters.is_empty() && s.nas_config.is_some() {
            self.err(
                "spec.nasConfig",
                "only one of spec.parameters and spec.nasConfig can be specified",
                "remove spec.nasConfig for hyperparameter tuning, or spec.parameters for neural \
                 architecture search",
            );
        }
        self.parameters("spec.parameters", &s.parameters);
        if let Some(nas) = &s.nas_config {
            for (i, op) in nas.operations.iter().enumerate() {
                let base = join_key(&join_index("spec.nasConfig.operations", i), "parameters");
                self.parameters(&base, &op.parameters);
            }
        }
    }

    fn parameters(&mut self, base: &str, params: &[ParameterSpec]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, p) in params.iter().enumerate() {
            let path = join_index(base, i);
            if p.name.is_empty() {
                self.err(
                    join_key(&path, "name"),
                    "must be specified",
                    "name the parameter; trialParameters refer to it by this name",
                );
            } else if let Some(first) = seen.get(p.name.as_str()) {
                self.err(
                    join_key(&path, "name"),
                    format!(
                        "parameter name {} is used twice (also {})",
                        p.name,
                        join_index(base, *first)
                    ),
                    "give each parameter a unique name",
                );
            } else {
                seen.insert(&p.name, i);
            }
            self.parameter(&path, p);
        }
    }

    fn parameter(&mut self, path: &str, p: &ParameterSpec) {
        let ty = p.parameter_type.as_str();
        if !PARAMETER_TYPES.contains(&ty) {
            let alias = match ty.to_ascii_lowercase().as_str() {
                "float" | "real" | "continuous" | "number" => Some("double"),
                "integer" | "long" => Some("int"),
                "choice" | "enum" | "string" | "category" => Some("categorical"),
                _ => None,
            };
            let base_hint = "use double, int, discrete or categorical";
            let hint = match alias {
                Some(a) => format!("did you mean {a:?}? {base_hint}"),
                None => with_suggestion(ty, &PARAMETER_TYPES[..4], base_hint),
            };
            let problem = if ty.is_empty() {
                "parameterType must be specified".to_owned()
            } else {
                format!("parameterType: {ty} is not supported")
            };
            self.err(join_key(path, "parameterType"), problem, hint);
        }
        let fs = &p.feasible_space;
        let fs_path = join_key(path, "feasibleSpace");
        let field = |name: &str| join_key(&fs_path, name);
        if let Some(d) = fs.distribution.as_deref()
            && !d.is_empty()
            && !DISTRIBUTIONS.contains(&d)
        {
            self.err(
                field("distribution"),
                format!("distribution: {d} is not supported"),
                with_suggestion(
                    d,
                    &DISTRIBUTIONS[..4],
                    "use uniform, logUniform, normal or logNormal",
                ),
            );
        }
        if fs.is_empty() {
            let hint = match ty {
                "categorical" | "discrete" => "add feasibleSpace.list with the values to try",
                _ => "add feasibleSpace with min and max, e.g. min: \"0.01\" and max: \"0.05\"",
            };
            self.err(fs_path.clone(), "feasibleSpace must be specified", hint);
            return;
        }
        match ty {
            "double" | "int" => self.range(&fs_path, p),
            "categorical" | "discrete" => {
                let present: Vec<&str> = [("min", &fs.min), ("max", &fs.max), ("step", &fs.step)]
                    .into_iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(n, _)| n)
                    .collect();
                if let Some(first) = present.first() {
                    self.err(
                        field(first),
                        format!(
                            "feasibleSpace .max, .min and .step is not supported for parameterType: \
                             {ty} (found {})",
                            present.join(", ")
                        ),
                        format!(
                            "list the values in feasibleSpace.list and remove {}, or change \
                             parameterType to double or int for a range",
                            present.join(" and ")
                        ),
                    );
                }
                if fs.list.is_empty() {
                    self.err(
                        field("list"),
                        format!("must list at least one value for parameterType: {ty}"),
                        if ty == "discrete" {
                            "add list: [\"16\", \"32\", \"64\"]"
                        } else {
                            "add list: [\"sgd\", \"adam\"]"
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// Rules for `double` and `int` parameters: no list, numeric min <= max, step > 0.
    fn range(&mut self, fs_path: &str, p: &ParameterSpec) {
        let ty = p.parameter_type.as_str();
        let fs = &p.feasible_space;
        let field = |name: &str| join_key(fs_path, name);
        if !fs.list.is_empty() {
            self.err(
                field("list"),
                format!("feasibleSpace.list is not supported for parameterType: {ty}"),
                "use min and max (and optionally step) for a range, or change parameterType to \
                 discrete or categorical to try the listed values",
            );
        }
        let is_int = ty == "int";
        let mut number = |name: &str, value: &Option<String>| -> Option<f64> {
            let text = value.as_deref()?.trim();
            if text.is_empty() {
                return None;
            }
            match parse_number(text, is_int) {
                Ok(n) => Some(n),
                Err(kind) => {
                    let hint = if is_int {
                        "int parameters take whole numbers such as 1 or 64; use parameterType: \
                         double for fractional values"
                    } else {
                        "use a number such as 0.01 or 1e-3"
                    };
                    self.err(field(name), format!("{text:?} is not {kind}"), hint);
                    None
                }
            }
        };
        let min = number("min", &fs.min);
        let max = number("max", &fs.max);
        let step = number("step", &fs.step);
        for (name, value, other) in [("min", &fs.min, "max"), ("max", &fs.max, "min")] {
            if value.as_deref().is_none_or(str::is_empty) {
                self.err(
                    field(name),
                    format!(
                        "feasibleSpace.max or feasibleSpace.min must be specified for \
                         parameterType: {ty}"
                    ),
                    format!("add {name} next to {other}: both bounds of the range are needed"),
                );
            }
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            self.err(
                field("min"),
                format!("min ({lo}) is greater than max ({hi})"),
                "swap min and max, or fix the range so that min <= max",
            );
        }
        if let Some(s) = step
            && s <= 0.0
        {
            self.err(
                field("step"),
                format!("step ({s}) must be greater than 0"),
                "use a positive step such as 0.01, or remove step",
            );
        }
        let dist = fs.distribution.as_deref().unwrap_or("");
        if matches!(dist, "logUniform" | "logNormal")
            && let Some(lo) = min
            && lo <= 0.0
        {
            self.err(
                field("min"),
                format!("min ({lo}) must be greater than 0 for distribution {dist}"),
                format!(
                    "raise min above 0 (e.g. 1e-5): {dist} samples log(value), or use \
                     distribution: uniform"
                ),
            );
        }
    }

    // --------------------------------------------------------------------------------------
    // Metrics collector
    // --------------------------------------------------------------------------------------

    fn metrics_collector(&mut self, exp: &Experiment) {
        let mc = exp.spec.metrics_collector_spec.as_ref();
        let kind = match mc.and_then(|m| m.collector.as_ref()) {
            Some(c) => c.kind.as_str(),
            None => "StdOut",
        };
        let source = mc.and_then(|m| m.source.as_ref());
        let fsp = source.and_then(|s| s.file_system_path.as_ref());
        let kinds = COLLECTOR_KINDS.join(", ");
        match kind {
            "StdOut" | "Push" => {}
            "File" => {
                match fsp {
                    None => self.err(
                        join_key(FS_PATH, "path"),
                        "file path where metrics file exists is required",
                        "set source.fileSystemPath.path to the absolute path of the file the \
                         trial writes its metrics to, e.g. /var/log/katib/metrics.log",
                    ),
                    Some(f) => {
                        if f.kind != "File" {
                            self.err(
                                join_key(FS_PATH, "kind"),
                                format!("{:?} must be File for the File metrics collector", f.kind),
                                "set source.fileSystemPath.kind: File",
                            );
                        }
                        self.absolute(&f.path, "/var/log/katib/metrics.log");
                    }
                }
                let format = fsp.map_or("", |f| f.format.as_str());
                if format != "TEXT" && format != "JSON" {
                    self.err(
                        join_key(FS_PATH, "format"),
                        if format.is_empty() {
                            "format of metrics file is required for metrics collector".to_owned()
                        } else {
                            format!("{format:?} is not a metrics file format")
                        },
                        with_suggestion(
                            format,
                            &["TEXT", "JSON"],
                            "use TEXT (lines such as accuracy=0.9) or JSON (one JSON object per line)",
                        ),
                    );
                }
                if format == "JSON" && source.is_some_and(|s| s.filter.is_some()) {
                    self.err(
                        join_key(SOURCE, "filter"),
                        "filter must be nil when format of metrics file is json",
                        "remove source.filter: JSON metrics files are read by key, not by regex",
                    );
                }
            }
            "TensorFlowEvent" => match fsp {
                None => self.err(
                    join_key(FS_PATH, "path"),
                    "directory path where tensorflow event files exist is required by \
                         .spec.metricsCollectorSpec.source.fileSystemPath.path",
                    "set source.fileSystemPath.path to the absolute directory the trial writes \
                         its TensorFlow event files to",
                ),
                Some(f) => {
                    if f.kind != "Directory" {
                        self.err(
                            join_key(FS_PATH, "kind"),
                            format!(
                                "{:?} must be Directory for the TensorFlowEvent metrics \
                                     collector",
                                f.kind
                            ),
                            "set source.fileSystemPath.kind: Directory",
                        );
                    }
                    self.absolute(&f.path, "/var/log/katib/tfevent/");
                    if !f.format.is_empty() {
                        self.err(
                            join_key(FS_PATH, "format"),
                            format!("{:?} must be empty", f.format),
                            "remove format: TensorFlow event files have a fixed format",
                        );
                    }
                }
            },
            "PrometheusMetric" => {
                let http = source.and_then(|s| s.http_get.as_ref());
                let port = http.and_then(|h| h.get("port"));
                let port_ok = match port {
                    Some(Value::Number(n)) => n.as_i64().is_some_and(|p| p > 0),
                    Some(Value::String(s)) => s.parse::<i64>().is_ok_and(|p| p > 0),
                    _ => false,
                };
                if !port_ok {
                    self.err(
                        join_key(&join_key(SOURCE, "httpGet"), "port"),
                        format!("must be a positive integer value for metrics collector kind: {kind}"),
                        "set source.httpGet.port to the port the trial serves metrics on, e.g. 8080",
                    );
                }
                let path = http
                    .and_then(|h| h.get("path"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !path.starts_with('/') {
                    self.err(
                        join_key(&join_key(SOURCE, "httpGet"), "path"),
                        format!("path {path:?} is invalid for metrics collector kind: {kind}"),
                        "use an absolute URL path such as /metrics",
                    );
                }
            }
            "Custom" => {
                if mc
                    .and_then(|m| m.collector.as_ref())
                    .is_none_or(|c| c.custom_collector.is_none())
                {
                    self.err(
                        join_key(COLLECTOR, "customCollector"),
                        format!("metrics collector kind: {kind} is required"),
                        "add collector.customCollector: the container that collects the metrics",
                    );
                }
                if let Some(f) = fsp
                    && (!f.path.starts_with('/') || (f.kind != "File" && f.kind != "Directory"))
                {
                    self.err(
                        FS_PATH,
                        ".spec.metricsCollectorSpec.source is invalid",
                        "give fileSystemPath an absolute path and kind File or Directory",
                    );
                }
            }
            "" => self.err(
                join_key(COLLECTOR, "kind"),
                "must be specified",
                format!("use one of: {kinds}"),
            ),
            other => self.err(
                join_key(COLLECTOR, "kind"),
                format!("invalid metrics collector kind: {other}"),
                with_suggestion(other, COLLECTOR_KINDS, &format!("use one of: {kinds}")),
            ),
        }
        let formats = source
            .and_then(|s| s.filter.as_ref())
            .map(|f| f.metrics_format.as_slice())
            .unwrap_or_default();
        let filter_path = join_key(&join_key(SOURCE, "filter"), "metricsFormat");
        for (i, format) in formats.iter().enumerate() {
            // Katib compiles filters as Go regexps; read them the way Go does.
            match Regex::new(&crate::goregex::translate(format)) {
                Err(e) => self.err(
                    join_index(&filter_path, i),
                    format!("invalid filter {format:?}: {}", regex_error(&e)),
                    format!(
                        "fix the regular expression (Go RE2 syntax) so it has one group for the \
                         metric name and one for its value, e.g. {EXAMPLE_FILTER}"
                    ),
                ),
                Ok(re) if re.captures_len() < 3 => self.err(
                    join_index(&filter_path, i),
                    format!(
                        "{format:?}: two top subexpressions are required (found {} capture group(s))",
                        re.captures_len() - 1
                    ),
                    format!(
                        "use one group for the metric name and one for its value, e.g. \
                         {EXAMPLE_FILTER}"
                    ),
                ),
                Ok(_) => {}
            }
        }
    }

    fn absolute(&mut self, path: &str, example: &str) {
        if !path.starts_with('/') {
            self.err(
                join_key(FS_PATH, "path"),
                if path.is_empty() {
                    "must be specified".to_owned()
                } else {
                    format!("{path:?} must be an absolute path")
                },
                format!("use an absolute path such as {example}"),
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// `^[a-z]([-a-z0-9]*[a-z0-9])?$`.
fn is_dns1035_label(name: &str) -> bool {
    let b = name.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_lowercase()
                && (last.is_ascii_lowercase() || last.is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        }
        _ => false,
    }
}

/// A valid name close to `name`: lower-cased, other characters turned into `-`, trimmed.
fn suggest_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let trimmed = out.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let mut s: String = trimmed.chars().take(MAX_NAME_LEN).collect();
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        "my-experiment".to_owned()
    } else {
        s
    }
}

/// Parses a feasible-space bound; `Err` names what it should have been.
fn parse_number(text: &str, whole: bool) -> Result<f64, &'static str> {
    if whole {
        text.parse::<i64>()
            .map(|n| n as f64)
            .map_err(|_| "a whole number")
    } else {
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err("a number"),
        }
    }
}

fn placeholder(name: &str) -> String {
    format!("${{trialParameters.{name}}}")
}

/// Katib's `isMetaKey`: `${trialSpec.Name}`, `${trialSpec.Labels[key]}`, ...
fn is_meta_reference(reference: &str) -> bool {
    let Some(caps) = META_REFERENCE.captures(reference) else {
        return false;
    };
    let key = &caps[1];
    if TRIAL_META_KEYS.contains(&key) {
        return true;
    }
    META_INDEXED
        .captures(key)
        .is_some_and(|c| TRIAL_META_KEYS.contains(&&c[1]))
}

/// Names of every container listed under a `containers` key anywhere in `spec`.
fn container_names(spec: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "containers"
                        && let Some(list) = child.as_array()
                    {
                        for c in list {
                            if let Some(name) = c.get("name").and_then(Value::as_str) {
                                out.insert(name.to_owned());
                            }
                        }
                    }
                    walk(child, out);
                }
            }
            Value::Array(list) => list.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(spec, &mut out);
    out.into_iter().collect()
}

/// Calls `f(path, text)` for every string value and every mapping key under `value`.
fn walk_strings(value: &Value, path: String, f: &mut impl FnMut(&str, &str)) {
    match value {
        Value::String(s) => f(&path, s),
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                walk_strings(v, join_index(&path, i), f);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let child = join_key(&path, k);
                f(&child, k);
                walk_strings(v, child, f);
            }
        }
        _ => {}
    }
}

/// The one-line gist of a regex syntax error (the crate's message spans several lines).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.lines().last().unwrap_or("").trim().to_owned(),
            str::to_owned,
        )
}

/// `hint`, preceded by `did you mean "x"? ` when `input` is close to one of `candidates`.
fn with_suggestion(input: &str, candidates: &[&str], hint: &str) -> String {
    match closest(input, candidates) {
        Some(c) => format!("did you mean {c:?}? {hint}"),
        None => hint.to_owned(),
    }
}

fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if input.is_empty() {
        return None;
    }
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let n = norm(input);
    if let Some(c) = candidates.iter().find(|c| norm(c) == n) {
        return Some(c);
    }
    candidates
        .iter()
        .map(|c| (edit_distance(&n, &norm(c)), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .or_else(|| {
            (n.len() >= 4)
                .then(|| {
                    candidates
                        .iter()
                        .find(|c| {
                            let c = norm(c);
                            c.starts_with(&n) || (c.len() >= 4 && n.starts_with(&c))
                        })
                        .copied()
                })
                .flatten()
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
