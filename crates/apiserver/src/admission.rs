//! Admission on create, as kube-apiserver's default plugins do it (after the namespace
//! lifecycle check): Priority (a pod's `priorityClassName` → `priority` and
//! `preemptionPolicy`; the global default class otherwise) and DefaultStorageClass (a claim
//! without `storageClassName` gets the default class).

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::{ListOptions, Registry};
use crate::resources::{lookup, Resource};

type ApiResult<T> = Result<T, ApiError>;

/// Mutating admission of a new object.
pub async fn admit_create(reg: &Registry, res: &Resource, obj: &mut Value) -> ApiResult<()> {
    match res.kind {
        "Pod" => priority(reg, obj).await,
        "PersistentVolumeClaim" => default_storage_class(reg, obj).await,
        _ => Ok(()),
    }
}

async fn classes(reg: &Registry, group: &str, plural: &str) -> ApiResult<Vec<Value>> {
    let Some(res) = lookup(group, "v1", plural) else {
        return Ok(Vec::new());
    };
    Ok(reg.list(res, None, &ListOptions::default()).await?.items)
}

async fn priority(reg: &Registry, pod: &mut Value) -> ApiResult<()> {
    let wanted = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let all = classes(reg, "scheduling.k8s.io", "priorityclasses").await?;
    let class = if wanted.is_empty() {
        all.iter()
            .find(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
    } else {
        let found = all
            .iter()
            .find(|c| c.pointer("/metadata/name").and_then(Value::as_str) == Some(wanted.as_str()));
        if found.is_none() {
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: no PriorityClass with name {wanted} was found"
            )));
        }
        found
    };
    let (value, policy, class_name) = match class {
        Some(c) => (
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
            c.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string(), String::new()),
    };
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("priority".into(), json!(value));
        spec.insert("preemptionPolicy".into(), json!(policy));
        if !class_name.is_empty() {
            spec.insert("priorityClassName".into(), json!(class_name));
        }
    }
    Ok(())
}

async fn default_storage_class(reg: &Registry, pvc: &mut Value) -> ApiResult<()> {
    if pvc
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    let all = classes(reg, "storage.k8s.io", "storageclasses").await?;
    let default = all.iter().find(|c| {
        c.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
            .and_then(Value::as_str)
            == Some("true")
    });
    if let (Some(class), Some(spec)) = (default, pvc.get_mut("spec").and_then(Value::as_object_mut))
    {
        if let Some(name) = class.pointer("/metadata/name") {
            spec.insert("storageClassName".into(), name.clone());
        }
    }
    Ok(())
}
