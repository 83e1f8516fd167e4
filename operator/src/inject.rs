//! The pod-mutating webhook (`/mutate-pod`): trial pods get Katib's labels, the
//! `KATIB_TRIAL_NAME` variable and a metrics-collector sidecar, as Katib's injector does
//! (katib-compat.md §4.2).
//!
//! The Trial is found through owner references: the pod's owner (or an owner of an owner,
//! fetched through discovery) is the job, whose controller owner is the Trial; the job is
//! named as the Trial. Differences from Katib, on purpose:
//! - a pod without the primary container is left alone (Katib rejects it, which makes
//!   every replica need the same container name);
//! - the primary container's command must be spelled out to be wrapped (Katib reads the
//!   image's entrypoint from the registry); without it the pod is admitted unwrapped with
//!   a warning, and the collector reports whatever the file holds.
//!
//! No sidecar for `Push` (the trainer reports itself) and none for pods outside
//! `primaryPodLabels`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use katib_api::crd::{TRIAL_LABEL, Trial};
use kube::api::{Api, DynamicObject, GroupVersionKind};
use kube::core::admission::AdmissionResponse;
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::crds::TRIAL;
use crate::webhook::{Hooks, Json, review_request};

/// Where StdOut output and the completion marker go (Katib's default File path).
const DEFAULT_METRICS_FILE: &str = "/var/log/katib/metrics.log";

/// `/mutate-pod`.
pub(crate) async fn mutate_pod(State(hooks): State<Arc<Hooks>>, body: Bytes) -> Json {
    let req = match review_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let resp = AdmissionResponse::from(&req);
    let Some(pod) = req.object.as_ref() else {
        return Json(json!(resp.into_review()));
    };
    let namespace = req.namespace.clone().unwrap_or_default();
    let pod_value = serde_json::to_value(pod).unwrap_or_default();
    let Some(trial) = owning_trial(&hooks, &namespace, &pod_value).await else {
        return Json(json!(resp.into_review()));
    };
    let mutated = inject(&pod_value, &trial, &hooks);
    if mutated == pod_value {
        return Json(json!(resp.into_review()));
    }
    let patch = json!([
        {"op": "add", "path": "/metadata/labels", "value": mutated["metadata"]["labels"]},
        {"op": "add", "path": "/spec", "value": mutated["spec"]},
    ]);
    let resp = match serde_json::from_value::<json_patch::Patch>(patch).map(|p| resp.clone().with_patch(p)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            warn!(error = %e, "cannot serialize the pod patch");
            resp
        }
        Err(e) => {
            warn!(error = %e, "cannot build the pod patch");
            resp
        }
    };
    Json(json!(resp.into_review()))
}

/// The Trial that (through its job) owns this pod, if any.
async fn owning_trial(hooks: &Hooks, namespace: &str, obj: &Value) -> Option<Trial> {
    let mut current = obj.clone();
    // Pod -> (ReplicaSet/...) -> job -> Trial: a few levels at most.
    for _ in 0..4 {
        let refs = current["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(r) = refs
            .iter()
            .find(|r| r["kind"] == "Trial" && r["apiVersion"] == katib_api::crd::API_VERSION)
        {
            let name = r["name"].as_str()?;
            let api: Api<DynamicObject> =
                Api::namespaced_with(hooks.client.clone(), namespace, &TRIAL.api_resource());
            let t = api.get_opt(name).await.ok().flatten()?;
            return crate::util::typed(&t).ok();
        }
        let owner = refs
            .iter()
            .find(|r| r["controller"] == true)
            .or_else(|| refs.first())?;
        let api_version = owner["apiVersion"].as_str()?;
        let kind = owner["kind"].as_str()?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, _) = kube::discovery::pinned_kind(&hooks.client, &gvk).await.ok()?;
        let api: Api<DynamicObject> = Api::namespaced_with(hooks.client.clone(), namespace, &ar);
        let o = api.get_opt(owner["name"].as_str()?).await.ok().flatten()?;
        current = serde_json::to_value(o).ok()?;
    }
    None
}

/// The pod after injection (pure: unit-tested).
pub fn inject(pod: &Value, trial: &Trial, hooks: &Hooks) -> Value {
    inject_with(
        pod,
        trial,
        &hooks.args.metrics_collector_image,
        &hooks.args.tfevent_collector_image,
        &hooks.db_manager,
    )
}

fn inject_with(pod: &Value, trial: &Trial, image: &str, tf_image: &str, db_manager: &str) -> Value {
    let mut pod = pod.clone();
    let trial_name = trial.metadata.name.clone().unwrap_or_default();
    // 1. Labels: the Trial's plus katib.kubeflow.org/trial.
    let labels = pod["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let mut labels = labels;
    for (k, v) in &trial.metadata.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert(TRIAL_LABEL.into(), json!(trial_name));
    pod["metadata"]["labels"] = Value::Object(labels.clone());

    // 2. KATIB_TRIAL_NAME on the primary container.
    let primary = trial.spec.primary_container_name.clone();
    let Some(mut containers) = pod["spec"]["containers"].as_array().cloned() else {
        return pod;
    };
    let Some(idx) = containers.iter().position(|c| c["name"] == primary.as_str()) else {
        debug!(trial = %trial_name, "pod without the primary container: not injected");
        return pod;
    };
    let has_collector = containers.iter().any(is_collector);
    let mut main = containers[idx].clone();
    let env = main["env"].as_array().cloned().unwrap_or_default();
    if !env.iter().any(|e| e["name"] == "KATIB_TRIAL_NAME") {
        let mut env = env;
        env.push(json!({
            "name": "KATIB_TRIAL_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.labels['{TRIAL_LABEL}']")}}
        }));
        main["env"] = Value::Array(env);
    }

    // 3. Only primary pods get a collector, and none for Push.
    let is_primary = trial
        .spec
        .primary_pod_labels
        .iter()
        .all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v.as_str()));
    let mc = trial.spec.metrics_collector.clone().unwrap_or_default();
    let kind = mc.kind().to_string();
    containers[idx] = main.clone();
    pod["spec"]["containers"] = Value::Array(containers.clone());
    if !is_primary || kind == "Push" || has_collector {
        return pod;
    }
    if kind == "Custom" {
        if let Some(c) = mc.collector.as_ref().and_then(|c| c.custom_collector.clone()) {
            containers.push(c);
        }
        pod["spec"]["containers"] = Value::Array(containers);
        pod["spec"]["shareProcessNamespace"] = json!(true);
        return pod;
    }

    let fs = mc.source.as_ref().and_then(|s| s.file_system_path.clone());
    let path = match kind.as_str() {
        "StdOut" => DEFAULT_METRICS_FILE.to_string(),
        _ => fs
            .as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_else(|| DEFAULT_METRICS_FILE.into()),
    };
    let is_dir = kind == "TensorFlowEvent" || fs.as_ref().is_some_and(|f| f.kind == "Directory");
    let dir = if is_dir {
        path.trim_end_matches('/').to_string()
    } else {
        std::path::Path::new(&path)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/".into())
    };
    let objective = trial.spec.objective.clone().unwrap_or_default();
    let mut args: Vec<String> = vec![
        "-t".into(),
        trial_name.clone(),
        "-m".into(),
        objective.all_metric_names().join(";"),
        "-o-type".into(),
        objective.type_.clone(),
        "-s-db".into(),
        db_manager.into(),
        "-path".into(),
        path.clone(),
    ];
    let filters: Vec<String> = mc
        .source
        .as_ref()
        .and_then(|s| s.filter.as_ref())
        .map(|f| f.metrics_format.clone())
        .unwrap_or_default();
    if !filters.is_empty() {
        args.extend(["-f".into(), filters.join(";")]);
    }
    match kind.as_str() {
        "StdOut" => args.extend(["-format".into(), "TEXT".into()]),
        "File" => args.extend([
            "-format".into(),
            fs.as_ref()
                .map(|f| f.format.clone())
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "TEXT".into()),
        ]),
        _ => {}
    }
    for r in &trial.spec.early_stopping_rules {
        args.extend([
            "-stop-rule".into(),
            format!("{};{};{};{}", r.name, r.value, r.comparison, r.start_step),
        ]);
    }
    // Katib's behaviour that hangs behind an Istio proxy (issues #1638, #1042): wait only
    // for the training process, not every process in the pod.
    args.extend(["-w".into(), "false".into()]);
    let (name, img) = if kind == "TensorFlowEvent" {
        ("metrics-collector", tf_image)
    } else {
        ("metrics-logger-and-collector", image)
    };
    let mount = json!({"name": "metrics-volume", "mountPath": dir});
    // Wrap the training command: StdOut output to the file, then the completion marker the
    // collector waits for (`$$$$` is `$$` after Kubernetes' own `$$` escape).
    if matches!(kind.as_str(), "StdOut" | "File" | "TensorFlowEvent") {
        let mut argv: Vec<String> = main["command"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(main["args"].as_array().into_iter().flatten())
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        if argv.is_empty() {
            warn!(trial = %trial_name, "primary container has no command: not wrapped (Katib reads the image entrypoint)");
        } else {
            let shell = if argv.len() >= 2 && matches!(argv[0].as_str(), "sh" | "bash") && argv[1] == "-c" {
                let s = argv[0].clone();
                argv.drain(..2);
                s
            } else {
                "sh".into()
            };
            let mut script = argv.join(" ");
            if kind == "StdOut" {
                script.push_str(&format!(" 1>{path} 2>&1"));
            }
            script.push_str(&format!(" && echo completed > {dir}/$$$$.pid"));
            main["command"] = json!([shell, "-c"]);
            main["args"] = json!([script]);
        }
    }
    let mut mounts = main["volumeMounts"].as_array().cloned().unwrap_or_default();
    mounts.push(mount.clone());
    main["volumeMounts"] = Value::Array(mounts);
    containers[idx] = main;
    containers.push(json!({
        "name": name,
        "image": img,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "resources": {
            "requests": {"cpu": "50m", "memory": "10Mi", "ephemeral-storage": "500Mi"},
            "limits": {"cpu": "500m", "memory": "100Mi", "ephemeral-storage": "5Gi"}
        },
        "volumeMounts": [mount],
    }));
    pod["spec"]["containers"] = Value::Array(containers);
    let mut volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    volumes.push(json!({"name": "metrics-volume", "emptyDir": {}}));
    pod["spec"]["volumes"] = Value::Array(volumes);
    pod["spec"]["shareProcessNamespace"] = json!(true);
    pod
}

fn is_collector(c: &Value) -> bool {
    c["name"] == "metrics-logger-and-collector" || c["name"] == "metrics-collector"
}

#[cfg(test)]
mod tests {
    use super::*;
    use katib_api::crd::{ObjectiveSpec, TrialSpec};

    fn trial() -> Trial {
        Trial {
            api_version: String::new(),
            kind: String::new(),
            metadata: katib_api::crd::ObjectMeta {
                name: Some("exp-abc".into()),
                labels: [("katib.kubeflow.org/experiment".to_string(), "exp".to_string())].into(),
                ..Default::default()
            },
            spec: TrialSpec {
                objective: Some(ObjectiveSpec {
                    type_: "maximize".into(),
                    objective_metric_name: "accuracy".into(),
                    additional_metric_names: vec!["loss".into()],
                    ..Default::default()
                }),
                primary_container_name: "training-container".into(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "training-container", "image": "x", "command": ["python3", "train.py", "--lr=0.1"]}
        ]}})
    }

    #[test]
    fn stdout_collector_is_injected_like_katib() {
        let p = inject_with(&pod(), &trial(), "img", "tf", "katib-db-manager.kubeflow:6789");
        assert_eq!(p["metadata"]["labels"][TRIAL_LABEL], "exp-abc");
        assert_eq!(p["spec"]["shareProcessNamespace"], true);
        let c = &p["spec"]["containers"];
        assert_eq!(c[0]["command"], json!(["sh", "-c"]));
        assert_eq!(
            c[0]["args"][0],
            "python3 train.py --lr=0.1 1>/var/log/katib/metrics.log 2>&1 && echo completed > /var/log/katib/$$$$.pid"
        );
        assert_eq!(c[0]["env"][0]["name"], "KATIB_TRIAL_NAME");
        assert_eq!(c[1]["name"], "metrics-logger-and-collector");
        let args: Vec<&str> = c[1]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            &args[..10],
            [
                "-t",
                "exp-abc",
                "-m",
                "accuracy;loss",
                "-o-type",
                "maximize",
                "-s-db",
                "katib-db-manager.kubeflow:6789",
                "-path",
                DEFAULT_METRICS_FILE
            ]
        );
        assert_eq!(p["spec"]["volumes"][0]["name"], "metrics-volume");
        // Idempotent: a second pass adds nothing.
        let again = inject_with(&p, &trial(), "img", "tf", "db:1");
        assert_eq!(again["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn push_and_non_primary_pods_get_no_sidecar() {
        let mut t = trial();
        t.spec.metrics_collector = Some(katib_api::crd::MetricsCollectorSpec {
            collector: Some(katib_api::crd::CollectorSpec {
                kind: "Push".into(),
                custom_collector: None,
            }),
            source: None,
        });
        let p = inject_with(&pod(), &t, "img", "tf", "db:1");
        assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(p["spec"]["containers"][0]["env"][0]["name"], "KATIB_TRIAL_NAME");
        let mut t = trial();
        t.spec.primary_pod_labels = [("role".to_string(), "master".to_string())].into();
        let p = inject_with(&pod(), &t, "img", "tf", "db:1");
        assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 1);
    }
}
