//! CustomResourceDefinitions for Experiment, Trial and Suggestion, built in Rust.
//!
//! Katib's own CRDs carry no OpenAPI validation: the schema is `type: object` with
//! `x-kubernetes-preserve-unknown-fields: true`, and every rule lives in the admission
//! webhook (see katib-compat.md §2). We keep that contract so any object Katib accepts is
//! stored unchanged (a typed schema would prune or reject fields Katib keeps), and name the
//! top-level parts (`spec`, `status`) so `kubectl explain` shows them. The kinds, plurals,
//! printer columns and categories come from [`KINDS`], the one table the controller also
//! uses to build its API handles.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ApiResource;
use std::collections::BTreeMap;

use katib_api::crd::{API_VERSION, GROUP};

/// API version of every Katib kind.
pub const VERSION: &str = "v1beta1";

/// One Katib kind: names and printer columns.
#[derive(Clone, Copy, Debug)]
pub struct KindInfo {
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    /// (name, JSONPath, type) of the extra printer columns (Age is appended).
    pub columns: &'static [(&'static str, &'static str, &'static str)],
}

const TYPE_STATUS: [(&str, &str, &str); 2] = [
    ("Type", ".status.conditions[-1:].type", "string"),
    ("Status", ".status.conditions[-1:].status", "string"),
];

/// Experiment, Trial, Suggestion as Katib defines them.
pub const EXPERIMENT: KindInfo = KindInfo {
    kind: "Experiment",
    plural: "experiments",
    singular: "experiment",
    columns: &TYPE_STATUS,
};
pub const TRIAL: KindInfo = KindInfo {
    kind: "Trial",
    plural: "trials",
    singular: "trial",
    columns: &TYPE_STATUS,
};
pub const SUGGESTION: KindInfo = KindInfo {
    kind: "Suggestion",
    plural: "suggestions",
    singular: "suggestion",
    columns: &[
        ("Type", ".status.conditions[-1:].type", "string"),
        ("Status", ".status.conditions[-1:].status", "string"),
        ("Requested", ".spec.requests", "string"),
        ("Assigned", ".status.suggestionCount", "string"),
    ],
};
/// Every kind, in the order `katib crds` prints them.
pub const KINDS: [KindInfo; 3] = [EXPERIMENT, TRIAL, SUGGESTION];

impl KindInfo {
    /// The dynamic API resource for this kind.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: GROUP.into(),
            version: VERSION.into(),
            api_version: API_VERSION.into(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    /// The CRD for this kind.
    pub fn crd(&self) -> CustomResourceDefinition {
        let open = |description: &str| JSONSchemaProps {
            type_: Some("object".into()),
            description: Some(description.into()),
            x_kubernetes_preserve_unknown_fields: Some(true),
            ..Default::default()
        };
        let mut properties = BTreeMap::new();
        properties.insert(
            "spec".to_string(),
            open(&format!(
                "Katib v1beta1 {}Spec (validated by the admission webhook).",
                self.kind
            )),
        );
        properties.insert(
            "status".to_string(),
            open(&format!(
                "Katib v1beta1 {}Status, written by katib-controller.",
                self.kind
            )),
        );
        let schema = JSONSchemaProps {
            type_: Some("object".into()),
            description: Some(format!("Katib {} (kubeflow.org/v1beta1).", self.kind)),
            properties: Some(properties),
            x_kubernetes_preserve_unknown_fields: Some(true),
            ..Default::default()
        };
        let mut columns: Vec<CustomResourceColumnDefinition> = self
            .columns
            .iter()
            .map(|(name, path, type_)| CustomResourceColumnDefinition {
                name: (*name).into(),
                json_path: (*path).into(),
                type_: (*type_).into(),
                ..Default::default()
            })
            .collect();
        columns.push(CustomResourceColumnDefinition {
            name: "Age".into(),
            json_path: ".metadata.creationTimestamp".into(),
            type_: "date".into(),
            ..Default::default()
        });
        CustomResourceDefinition {
            metadata: ObjectMeta {
                name: Some(format!("{}.{GROUP}", self.plural)),
                ..Default::default()
            },
            spec: CustomResourceDefinitionSpec {
                group: GROUP.into(),
                names: CustomResourceDefinitionNames {
                    kind: self.kind.into(),
                    list_kind: Some(format!("{}List", self.kind)),
                    plural: self.plural.into(),
                    singular: Some(self.singular.into()),
                    categories: Some(vec!["all".into(), "kubeflow".into(), "katib".into()]),
                    ..Default::default()
                },
                scope: "Namespaced".into(),
                versions: vec![CustomResourceDefinitionVersion {
                    name: VERSION.into(),
                    served: true,
                    storage: true,
                    additional_printer_columns: Some(columns),
                    schema: Some(CustomResourceValidation {
                        open_api_v3_schema: Some(schema),
                    }),
                    subresources: Some(CustomResourceSubresources {
                        status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            status: None,
        }
    }
}

/// The three CRDs.
pub fn all() -> Vec<CustomResourceDefinition> {
    KINDS.iter().map(KindInfo::crd).collect()
}

/// The three CRDs as one multi-document YAML stream (what `katib crds` prints).
pub fn yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in all() {
        let mut doc = serde_json::to_value(&crd).unwrap_or_default();
        // `apiVersion`/`kind` come first in hand-written manifests; k8s-openapi puts them
        // there as well, but the JSON value keeps insertion order only with preserve_order.
        if let Some(o) = doc.as_object_mut() {
            o.remove("status");
        }
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&doc)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_have_katibs_shape() {
        let crds = all();
        assert_eq!(crds.len(), 3);
        let s = serde_json::to_value(&crds[2]).unwrap();
        assert_eq!(s["metadata"]["name"], "suggestions.kubeflow.org");
        assert_eq!(s["spec"]["scope"], "Namespaced");
        let v = &s["spec"]["versions"][0];
        assert_eq!(v["name"], "v1beta1");
        assert_eq!(v["subresources"]["status"], serde_json::json!({}));
        let cols: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, ["Type", "Status", "Requested", "Assigned", "Age"]);
        assert_eq!(
            v["schema"]["openAPIV3Schema"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        let y = yaml().unwrap();
        assert_eq!(y.matches("kind: CustomResourceDefinition").count(), 3, "{y}");
    }

    #[test]
    fn committed_manifest_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crds.yaml");
        let committed = std::fs::read_to_string(path).unwrap();
        assert!(
            committed == yaml().unwrap(),
            "manifests/crds.yaml is stale: run `katib crds > manifests/crds.yaml`"
        );
    }
}
