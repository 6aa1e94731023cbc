//! The scale subresource: a workload's replicas as an autoscaling/v1 Scale, and a
//! Scale's replicas written back to the workload.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::resource::Resource;
use skiff_meta::object::without_rv;

use crate::error::ApiResult;

pub(crate) fn selector_of(obj: &Value) -> String {
    let Some(ml) = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .or_else(|| {
            obj.pointer("/spec/selector")
                .and_then(Value::as_object)
                .filter(|m| !m.contains_key("matchExpressions"))
        })
    else {
        return String::new();
    };
    ml.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `autoscaling/v1` Scale of an object with `spec.replicas`.
pub(crate) fn scale_of(_res: &Resource, obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            meta[k] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector_of(obj)},
    })
}

pub(crate) fn scale_replicas(scale: &Value) -> ApiResult<i64> {
    match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0 && *n <= i64::from(i32::MAX))
            .ok_or_else(|| ApiError::new(422, "Invalid", format!("Scale.autoscaling \"\" is invalid: spec.replicas: Invalid value: {v}: must be greater than or equal to 0"))),
    }
}

/// The object `old` with a Scale's `replicas` written to `spec.replicas`, conditional on
/// the Scale's resourceVersion if it has one.
pub(crate) fn scaled(old: &Value, replicas: i64, rv: Option<&Value>) -> Value {
    let mut new = without_rv(old);
    new["spec"]["replicas"] = json!(replicas);
    if let Some(rv) = rv {
        new["metadata"]["resourceVersion"] = rv.clone();
    }
    new
}
