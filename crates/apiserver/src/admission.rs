//! Admission on create, as kube-apiserver's default plugins do it (after the namespace
//! lifecycle check): LimitRanger (container defaults and min/max from LimitRanges),
//! ServiceAccount (the pod's account must exist; its token, the cluster CA and the
//! namespace are mounted as the `kube-api-access-*` volume), Priority (a pod's
//! `priorityClassName` → `priority` and `preemptionPolicy`; the global default class
//! otherwise), DefaultStorageClass (a claim without `storageClassName` gets the default
//! class) and, last, ResourceQuota (see [`crate::quota`]). DefaultTolerationSeconds is
//! applied with the pod defaults in [`crate::strategy`].
//!
//! Also what the ServiceAccount and root-CA controllers keep in every namespace: the
//! `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap ([`namespace_defaults`]).

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::quantity::{from_milli, milli_value};
use crate::registry::{ListOptions, Registry};
use crate::resources::{lookup, Resource};

type ApiResult<T> = Result<T, ApiError>;

/// Mutating admission of a new object, then quota.
pub async fn admit_create(reg: &Registry, res: &Resource, obj: &mut Value) -> ApiResult<()> {
    match res.kind {
        "Pod" => {
            limit_ranger(reg, obj).await?;
            service_account(reg, obj).await?;
            priority(reg, obj).await?;
            let qos = crate::strategy::qos_class(obj.get("spec").unwrap_or(&Value::Null));
            obj["status"]["qosClass"] = json!(qos);
        }
        "PersistentVolumeClaim" => default_storage_class(reg, obj).await?,
        _ => {}
    }
    crate::quota::admit(reg, res, obj).await
}

fn forbidden(res_plural: &str, obj: &Value, msg: &str) -> ApiError {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    ApiError::forbidden(format!("{res_plural} \"{name}\" is forbidden: {msg}"))
}

/// Makes sure `ns` has its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap.
pub async fn namespace_defaults(reg: &Registry, ns: &str) -> ApiResult<()> {
    if let Some(sa) = lookup("", "v1", "serviceaccounts") {
        reg.ensure(sa, Some(ns), json!({"metadata": {"name": "default"}}))
            .await?;
    }
    if let (Some(cm), Some(ca)) = (lookup("", "v1", "configmaps"), reg.root_ca()) {
        reg.ensure(
            cm,
            Some(ns),
            json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": ca}}),
        )
        .await?;
    }
    Ok(())
}

pub const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

async fn service_account(reg: &Registry, pod: &mut Value) -> ApiResult<()> {
    if pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
    {
        return Ok(());
    }
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_str))
        .find(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    let Some(sares) = lookup("", "v1", "serviceaccounts") else {
        return Ok(());
    };
    let sa = match reg.get(sares, Some(&ns), &name).await {
        Ok(sa) => sa,
        Err(e) if e.code == 404 => {
            return Err(forbidden(
                "pods",
                pod,
                &format!(
                "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
            ),
            ))
        }
        Err(e) => return Err(e),
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let mounted = ["containers", "initContainers"].iter().any(|list| {
        spec.get(*list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("volumeMounts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SA_MOUNT_PATH))
    });
    if mounted {
        return Ok(());
    }
    let volume = format!("kube-api-access-{}", crate::strategy::random_suffix());
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}));
    }
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(m) = mounts.as_array_mut() {
                m.push(json!({"name": volume, "readOnly": true, "mountPath": SA_MOUNT_PATH}));
            }
        }
    }
    Ok(())
}

/// A map of resource name → quantity in thousandths.
fn milli_map(v: Option<&Value>) -> Vec<(String, i128, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, q)| {
                    let text = q.as_str()?.to_string();
                    Some((k.clone(), milli_value(&text)?, text))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// LimitRanger for `type: Container` items: defaults, then min/max/ratio checks.
async fn limit_ranger(reg: &Registry, pod: &mut Value) -> ApiResult<()> {
    let Some(lrres) = lookup("", "v1", "limitranges") else {
        return Ok(());
    };
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let ranges = reg
        .list(lrres, Some(&ns), &ListOptions::default())
        .await?
        .items;
    let items: Vec<Value> = ranges
        .iter()
        .flat_map(|r| {
            r.pointer("/spec/limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("Container"))
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let mut errors = Vec::new();
    let pod_snapshot = pod.clone();
    for item in &items {
        // The LimitRange defaults: max → default, default → defaultRequest.
        let mut default: Map<String, Value> = item
            .get("default")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in item
            .get("max")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut default_request: Map<String, Value> = item
            .get("defaultRequest")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in &default {
            default_request
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        for list in ["containers", "initContainers"] {
            let Some(cs) = pod
                .pointer_mut(&format!("/spec/{list}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let resources = c.entry("resources").or_insert_with(|| json!({}));
                if !resources.is_object() {
                    *resources = json!({});
                }
                for (field, defaults) in [("limits", &default), ("requests", &default_request)] {
                    if defaults.is_empty() {
                        continue;
                    }
                    let target = resources
                        .as_object_mut()
                        .map(|r| r.entry(field).or_insert_with(|| json!({})));
                    if let Some(Value::Object(t)) = target {
                        for (k, v) in defaults {
                            t.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
                let requests = milli_map(resources.get("requests"));
                let limits = milli_map(resources.get("limits"));
                let find = |l: &[(String, i128, String)], k: &str| {
                    l.iter().find(|(n, _, _)| n == k).cloned()
                };
                for (k, min, min_text) in milli_map(item.get("min")) {
                    match (find(&requests, &k), find(&limits, &k)) {
                        (None, _) => errors.push(format!("minimum {k} usage per Container is {min_text}.  No request is specified")),
                        (Some((_, r, rt)), _) if r < min => errors.push(format!("minimum {k} usage per Container is {min_text}, but request is {rt}")),
                        (_, Some((_, l, lt))) if l < min => errors.push(format!("minimum {k} usage per Container is {min_text}, but limit is {lt}")),
                        _ => {}
                    }
                }
                for (k, max, max_text) in milli_map(item.get("max")) {
                    match (find(&requests, &k), find(&limits, &k)) {
                        (_, None) => errors.push(format!(
                            "maximum {k} usage per Container is {max_text}.  No limit is specified"
                        )),
                        (_, Some((_, l, lt))) if l > max => errors.push(format!(
                            "maximum {k} usage per Container is {max_text}, but limit is {lt}"
                        )),
                        (Some((_, r, rt)), _) if r > max => errors.push(format!(
                            "maximum {k} usage per Container is {max_text}, but request is {rt}"
                        )),
                        _ => {}
                    }
                }
                for (k, ratio, ratio_text) in milli_map(item.get("maxLimitRequestRatio")) {
                    if let (Some((_, r, _)), Some((_, l, _))) =
                        (find(&requests, &k), find(&limits, &k))
                    {
                        if r > 0 && l * 1000 > ratio * r {
                            errors.push(format!(
                                "{k} max limit to request ratio per Container is {ratio_text}, but provided ratio is {}",
                                from_milli(l * 1000 / r)
                            ));
                        }
                    }
                }
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(forbidden("pods", &pod_snapshot, &errors[0])),
        _ => Err(forbidden(
            "pods",
            &pod_snapshot,
            &format!("[{}]", errors.join(", ")),
        )),
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
