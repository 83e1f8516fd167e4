//! Rendering a trial's job from the Experiment's trial template, and finding the command
//! to run locally in it.
//!
//! Rendering follows Katib: the template is serialised to JSON, every
//! `${trialParameters.<name>}` is replaced by the value its reference resolves to (a
//! parameter assignment, or `${trialSpec.Name|Namespace|Kind|APIVersion|Labels[k]|Annotations[k]}`),
//! the result is parsed back and its `metadata.name`/`namespace` set to the trial's.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use katib_api::crd::{Experiment, ParameterAssignment};
use regex::Regex;
use serde_json::Value;

/// Why a trial's job could not be rendered or has no runnable command.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("spec.trialTemplate.trialSpec is missing; the local runtime needs an inline trial template")]
    NoTemplate,
    #[error(
        "trial parameter \"{name}\" references \"{reference}\", which is not a parameter assignment of this trial"
    )]
    UnknownReference { name: String, reference: String },
    #[error("trial parameter \"{name}\": {problem}")]
    MetaReference { name: String, problem: String },
    #[error(
        "the rendered trial template is not valid JSON after substituting parameters (a value with a quote or \
         backslash?): {0}"
    )]
    Json(#[source] serde_json::Error),
    #[error(
        "no container named \"{0}\" in the trial template (spec.trialTemplate.primaryContainerName); the local \
         runtime runs that container's command"
    )]
    NoPrimaryContainer(String),
    #[error(
        "container \"{0}\" has no `command` (or `args`); the local runtime cannot read an image's entrypoint, so \
         spell the command out in the trial template"
    )]
    NoCommand(String),
}

/// The primary container's command and environment, as the local runtime runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalCommand {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Env entries that use `valueFrom` and are skipped locally.
    pub skipped_env: Vec<String>,
}

/// Renders the trial's job object (Katib's manifest generator).
pub fn render_run_spec(
    exp: &Experiment,
    trial_name: &str,
    assignments: &[ParameterAssignment],
) -> Result<Value, RenderError> {
    let template = exp.spec.trial_template.as_ref().ok_or(RenderError::NoTemplate)?;
    let spec = template.trial_spec.as_ref().ok_or(RenderError::NoTemplate)?;
    let namespace = exp.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    // Serialising a serde_json::Value cannot fail.
    let mut text = serde_json::to_string(spec).unwrap_or_default();
    // Compiled once per process: rendering runs for every trial.
    static META_RE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\$\{trialSpec\.(.+?)\}$").expect("static regex"));
    static INDEXED_RE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(.+)\[(.+)\]$").expect("static regex"));
    let (meta_re, indexed_re) = (&*META_RE, &*INDEXED_RE);
    for p in template.trial_parameters.iter().flatten() {
        let value = if let Some(c) = meta_re.captures(&p.reference) {
            let field = &c[1];
            let meta = |key: &str| spec.get("metadata").and_then(|m| m.get(key));
            match field {
                "Name" => trial_name.to_string(),
                "Namespace" => namespace.clone(),
                "Kind" => spec
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                "APIVersion" => spec
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                other => {
                    let Some(ic) = indexed_re.captures(other) else {
                        return Err(RenderError::MetaReference {
                            name: p.name.clone(),
                            problem: format!(
                                "unknown trialSpec field \"{other}\"; use Name, Namespace, Kind, APIVersion, \
                                 Labels[key] or Annotations[key]"
                            ),
                        });
                    };
                    let (map, key) = (&ic[1], &ic[2]);
                    let source = match map {
                        "Labels" => meta("labels"),
                        "Annotations" => meta("annotations"),
                        _ => None,
                    };
                    source
                        .and_then(|m| m.get(key))
                        .and_then(Value::as_str)
                        .ok_or_else(|| RenderError::MetaReference {
                            name: p.name.clone(),
                            problem: format!("{map}[{key}] is not set in the trial template's metadata"),
                        })?
                        .to_string()
                }
            }
        } else {
            assignments
                .iter()
                .find(|a| a.name == p.reference)
                .map(|a| a.value.clone())
                .ok_or_else(|| RenderError::UnknownReference {
                    name: p.name.clone(),
                    reference: p.reference.clone(),
                })?
        };
        text = text.replace(&format!("${{trialParameters.{}}}", p.name), &value);
    }
    let mut job: Value = serde_json::from_str(&text).map_err(RenderError::Json)?;
    if let Some(obj) = job.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            m.insert("name".into(), Value::String(trial_name.into()));
            m.insert("namespace".into(), Value::String(namespace));
        }
    }
    Ok(job)
}

/// Replica types searched for the primary container, most primary first.
const REPLICA_PREFERENCE: &[&str] = &["Master", "Chief", "Launcher", "Worker", "PS", "Evaluator"];

fn pod_specs(job: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    // batch/v1 Job (and most job-like kinds): spec.template.spec
    if let Some(ps) = job.pointer("/spec/template/spec") {
        out.push(ps);
    }
    // Training-operator kinds: spec.<x>ReplicaSpecs.<Type>.template.spec
    if let Some(spec) = job.get("spec").and_then(Value::as_object) {
        for (key, replicas) in spec {
            if !key.ends_with("ReplicaSpecs") {
                continue;
            }
            let Some(replicas) = replicas.as_object() else {
                continue;
            };
            let mut names: Vec<&String> = replicas.keys().collect();
            names.sort_by_key(|n| {
                REPLICA_PREFERENCE
                    .iter()
                    .position(|p| p == n)
                    .unwrap_or(usize::MAX)
            });
            for n in names {
                if let Some(ps) = replicas[n].pointer("/template/spec") {
                    out.push(ps);
                }
            }
        }
    }
    out
}

fn find_container<'a>(job: &'a Value, name: &str) -> Option<&'a Value> {
    fn walk<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(cs)) = m.get("containers")
                    && let Some(c) = cs
                        .iter()
                        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
                {
                    return Some(c);
                }
                m.values().find_map(|x| walk(x, name))
            }
            Value::Array(a) => a.iter().find_map(|x| walk(x, name)),
            _ => None,
        }
    }
    for ps in pod_specs(job) {
        if let Some(Value::Array(cs)) = ps.get("containers")
            && let Some(c) = cs
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        {
            return Some(c);
        }
    }
    walk(job, name)
}

/// The command the local runtime runs for a rendered job: the primary container's
/// `command` + `args` and its literal `env` values (the image is ignored locally).
pub fn local_command(job: &Value, primary_container: &str) -> Result<LocalCommand, RenderError> {
    let container = find_container(job, primary_container)
        .ok_or_else(|| RenderError::NoPrimaryContainer(primary_container.to_string()))?;
    let strings = |key: &str| -> Vec<String> {
        container
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings("command");
    argv.extend(strings("args"));
    if argv.is_empty() {
        return Err(RenderError::NoCommand(primary_container.to_string()));
    }
    let mut env = Vec::new();
    let mut skipped_env = Vec::new();
    let mut resolved: BTreeMap<String, String> = BTreeMap::new();
    for e in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        match e.get("value") {
            Some(Value::String(v)) => {
                // Kubernetes expands $(VAR) references to earlier entries.
                let mut v = v.clone();
                for (k, val) in &resolved {
                    v = v.replace(&format!("$({k})"), val);
                }
                resolved.insert(name.to_string(), v.clone());
                env.push((name.to_string(), v));
            }
            Some(other) if !other.is_null() => env.push((name.to_string(), other.to_string())),
            _ if e.get("valueFrom").is_some() => skipped_env.push(name.to_string()),
            _ => env.push((name.to_string(), String::new())),
        }
    }
    Ok(LocalCommand {
        argv,
        env,
        skipped_env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(template: Value, params: Value) -> Experiment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
            "metadata": {"name": "e", "namespace": "ns"},
            "spec": {"trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": params,
                "trialSpec": template
            }}
        }))
        .unwrap()
    }

    fn a(name: &str, value: &str) -> ParameterAssignment {
        ParameterAssignment {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn renders_job_parameters_and_meta_references() {
        let e = exp(
            serde_json::json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"labels": {"team": "ml"}},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "training-container",
                    "command": ["python3", "train.py", "--lr=${trialParameters.learningRate}"],
                    "args": ["--name=${trialParameters.trialName}", "--team=${trialParameters.team}"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-x"},
                            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]
                }]}}}
            }),
            serde_json::json!([
                {"name": "learningRate", "reference": "lr"},
                {"name": "trialName", "reference": "${trialSpec.Name}"},
                {"name": "team", "reference": "${trialSpec.Labels[team]}"}
            ]),
        );
        let job = render_run_spec(&e, "e-abc", &[a("lr", "0.01")]).unwrap();
        assert_eq!(job["metadata"]["name"], "e-abc");
        assert_eq!(job["metadata"]["namespace"], "ns");
        let cmd = local_command(&job, "training-container").unwrap();
        assert_eq!(
            cmd.argv,
            vec!["python3", "train.py", "--lr=0.01", "--name=e-abc", "--team=ml"]
        );
        assert_eq!(
            cmd.env,
            vec![("A".into(), "1".into()), ("B".into(), "1-x".into())]
        );
        assert_eq!(cmd.skipped_env, vec!["C".to_string()]);
    }

    #[test]
    fn finds_master_replica_of_training_operator_jobs() {
        let e = exp(
            serde_json::json!({
                "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                "spec": {"pytorchReplicaSpecs": {
                    "Worker": {"template": {"spec": {"containers": [{"name": "pytorch", "command": ["worker"]}]}}},
                    "Master": {"template": {"spec": {"containers": [{"name": "pytorch", "command": ["master", "${trialParameters.x}"]}]}}}
                }}
            }),
            serde_json::json!([{"name": "x", "reference": "x"}]),
        );
        let job = render_run_spec(&e, "t", &[a("x", "5")]).unwrap();
        assert_eq!(local_command(&job, "pytorch").unwrap().argv, vec!["master", "5"]);
    }

    #[test]
    fn clear_errors() {
        let e = exp(
            serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
                "spec": {"template": {"spec": {"containers": [{"name": "other", "image": "x"}]}}}}),
            serde_json::json!([{"name": "x", "reference": "missing"}]),
        );
        assert!(matches!(
            render_run_spec(&e, "t", &[]),
            Err(RenderError::UnknownReference { .. })
        ));
        let e = exp(
            serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
                "spec": {"template": {"spec": {"containers": [{"name": "other", "image": "x"}]}}}}),
            serde_json::json!([]),
        );
        let job = render_run_spec(&e, "t", &[]).unwrap();
        assert!(matches!(
            local_command(&job, "training-container"),
            Err(RenderError::NoPrimaryContainer(_))
        ));
        assert!(matches!(
            local_command(&job, "other"),
            Err(RenderError::NoCommand(_))
        ));
    }
}
