//! Conversions between kube's dynamic objects and katib-api's typed CRDs, and the small
//! API helpers the reconcilers share.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;

/// The field manager of every write the controller makes.
pub const MANAGER: &str = "katib-controller";

/// A dynamic object as one of katib-api's typed CRDs. Fails (with the object's name) when
/// a field has the wrong JSON type, e.g. `maxTrialCount: "three"`.
pub fn typed<T: DeserializeOwned>(obj: &DynamicObject) -> Result<T, Error> {
    let value = serde_json::to_value(obj).map_err(|e| Error::Decode {
        name: obj.name_any(),
        message: e.to_string(),
    })?;
    serde_json::from_value(value).map_err(|e| Error::Decode {
        name: obj.name_any(),
        message: e.to_string(),
    })
}

/// A JSON merge patch that turns `old` into `new` at the top level of `status`: changed
/// or added keys are set, keys that `new` no longer has are set to null (our status types
/// skip empty lists and zero counters, so a plain merge would leave stale ones behind).
pub fn status_patch(old: Option<&Value>, new: &Value) -> Value {
    let mut out = Map::new();
    let empty = Map::new();
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let new_map = new.as_object().cloned().unwrap_or_default();
    for key in old.keys() {
        if !new_map.contains_key(key) {
            out.insert(key.clone(), Value::Null);
        }
    }
    for (k, v) in new_map {
        if old.get(&k) != Some(&v) {
            out.insert(k, v);
        }
    }
    serde_json::json!({ "status": Value::Object(out) })
}

/// Writes `new_status` to `name`'s status subresource with a merge patch from `old_status`.
pub async fn patch_status(
    api: &Api<DynamicObject>,
    name: &str,
    old_status: Option<&Value>,
    new_status: &Value,
) -> Result<(), Error> {
    let patch = status_patch(old_status, new_status);
    if patch["status"].as_object().is_some_and(Map::is_empty) {
        return Ok(());
    }
    api.patch_status(name, &params(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Kube {
            action: "patch status of",
            name: name.to_string(),
            source,
        })?;
    Ok(())
}

/// A controller owner reference to `owner` (so the garbage collector deletes the child
/// with it, and `Controller::owns` maps child events back to it).
pub fn owner_ref(owner: &DynamicObject, api_version: &str, kind: &str) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.metadata.name.clone()?,
        uid: owner.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// True when `obj` has a controller owner reference with this uid.
pub fn owned_by(obj: &DynamicObject, uid: &str) -> bool {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

/// Patch parameters for merge and JSON patches under our field manager (`force` is only
/// for server-side apply).
pub fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_patch_nulls_removed_keys_and_skips_unchanged() {
        let old = json!({"trials": 2, "runningTrialList": ["a"], "conditions": [1]});
        let new = json!({"trials": 2, "succeededTrialList": ["a"], "conditions": [1, 2]});
        let p = status_patch(Some(&old), &new);
        assert_eq!(
            p,
            json!({"status": {"runningTrialList": null, "succeededTrialList": ["a"], "conditions": [1, 2]}})
        );
        assert_eq!(status_patch(Some(&new), &new), json!({"status": {}}));
    }
}
