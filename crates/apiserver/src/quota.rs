//! ResourceQuota: admission refuses a create that would exceed a quota of its namespace
//! (with the real server's `exceeded quota` message), and `status.used` of the quotas is
//! recomputed after creates and deletes (the quota controller's job), for object counts
//! (`pods`, `services`, `count/<resource>[.<group>]`, …) and pods' compute resources
//! (`requests.cpu`, `limits.memory`, `cpu`, …) and claims' `requests.storage`.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::quantity::{from_milli, milli_value};
use crate::registry::{ListOptions, Registry};
use crate::resources::{lookup, Resource, RESOURCES};
use crate::strategy::Subresource;

type ApiResult<T> = Result<T, ApiError>;

fn quotas_res() -> Option<&'static Resource> {
    lookup("", "v1", "resourcequotas")
}

/// The resource a quota key counts objects of (`pods`, `count/deployments.apps`).
fn counted(key: &str) -> Option<&'static Resource> {
    let name = key.strip_prefix("count/").unwrap_or(key);
    let (plural, group) = name.split_once('.').unwrap_or((name, ""));
    if !key.starts_with("count/")
        && !matches!(
            plural,
            "pods"
                | "services"
                | "configmaps"
                | "secrets"
                | "persistentvolumeclaims"
                | "replicationcontrollers"
                | "resourcequotas"
        )
    {
        return None;
    }
    RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.group == group && r.namespaced)
}

/// Whether a pod still counts (terminal pods do not).
fn pod_counts(pod: &Value) -> bool {
    !matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// A pod's effective request or limit of `resource` in thousandths: the larger of the sum
/// over containers and the largest init container. `None` when no container sets it.
fn pod_amount(pod: &Value, field: &str, resource: &str) -> Option<i128> {
    let get = |c: &Value| {
        c.pointer(&format!("/resources/{field}/{resource}"))
            .and_then(Value::as_str)
            .and_then(milli_value)
    };
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array)?;
    let values: Vec<Option<i128>> = containers.iter().map(get).collect();
    if values.iter().any(Option::is_none) {
        return None;
    }
    let sum: i128 = values.into_iter().flatten().sum();
    let init = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(get)
        .max()
        .unwrap_or(0);
    Some(sum.max(init))
}

/// What one object uses of the quota key `key` (thousandths): `Ok(None)` if it does not
/// concern this key; `Err(key)` if the object must specify it and does not.
fn usage_of(res: &Resource, obj: &Value, key: &str) -> Result<Option<i128>, String> {
    if let Some(r) = counted(key) {
        return Ok((r.plural == res.plural && r.group == res.group).then_some(1000));
    }
    match (res.kind, key) {
        ("Pod", _) if !pod_counts(obj) => Ok(None),
        ("Pod", "cpu" | "memory" | "ephemeral-storage") => pod_amount(obj, "requests", key)
            .map(Some)
            .ok_or_else(|| format!("requests.{key}")),
        ("Pod", k) if k.starts_with("requests.") || k.starts_with("limits.") => {
            let (field, resource) = k.split_once('.').unwrap_or((k, ""));
            if resource == "storage" {
                return Ok(None);
            }
            pod_amount(obj, field, resource)
                .map(Some)
                .ok_or_else(|| k.to_string())
        }
        ("PersistentVolumeClaim", "requests.storage") => Ok(obj
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(milli_value)),
        _ => Ok(None),
    }
}

/// The quota keys that concern objects of `res`.
fn concerns(res: &Resource, key: &str) -> bool {
    match counted(key) {
        Some(r) => r.plural == res.plural && r.group == res.group,
        None => match res.kind {
            "Pod" => {
                matches!(key, "cpu" | "memory" | "ephemeral-storage")
                    || ((key.starts_with("requests.") || key.starts_with("limits."))
                        && key != "requests.storage")
            }
            "PersistentVolumeClaim" => key == "requests.storage",
            _ => false,
        },
    }
}

fn hard_of(q: &Value) -> Vec<(String, i128)> {
    q.pointer("/spec/hard")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), milli_value(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// What the objects of `ns` use of `key`.
async fn used(reg: &Registry, ns: &str, key: &str) -> ApiResult<i128> {
    let mut total = 0;
    let kinds: Vec<&Resource> = match counted(key) {
        Some(r) => vec![r],
        None => ["pods", "persistentvolumeclaims"]
            .iter()
            .filter_map(|p| lookup("", "v1", p))
            .collect(),
    };
    for res in kinds {
        if !concerns(res, key) {
            continue;
        }
        for obj in reg
            .list(res, Some(ns), &ListOptions::default())
            .await?
            .items
        {
            if res.kind == "Pod" && !pod_counts(&obj) {
                continue;
            }
            if let Ok(Some(u)) = usage_of(res, &obj, key) {
                total += u;
            }
        }
    }
    Ok(total)
}

/// Refuses `obj` (about to be created) if it would exceed a quota of its namespace.
pub async fn admit(reg: &Registry, res: &Resource, obj: &Value) -> ApiResult<()> {
    let Some(ns) = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|_| res.namespaced)
    else {
        return Ok(());
    };
    let Some(qres) = quotas_res() else {
        return Ok(());
    };
    let quotas = reg
        .list(qres, Some(ns), &ListOptions::default())
        .await?
        .items;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    };
    for q in &quotas {
        let qname = q
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut missing = Vec::new();
        let mut over: Vec<(String, i128, i128, i128)> = Vec::new();
        for (key, hard) in hard_of(q) {
            if !concerns(res, &key) {
                continue;
            }
            match usage_of(res, obj, &key) {
                Err(m) => missing.push(m),
                Ok(None) => {}
                Ok(Some(delta)) => {
                    let now = used(reg, ns, &key).await?;
                    if now + delta > hard {
                        over.push((key, delta, now, hard));
                    }
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            return Err(ApiError::forbidden(format!(
                "{plural} \"{name}\" is forbidden: failed quota: {qname}: must specify {}",
                missing.join(",")
            )));
        }
        if !over.is_empty() {
            over.sort();
            let list = |field: usize| {
                over.iter()
                    .map(|o| {
                        let v = [o.1, o.2, o.3][field];
                        format!("{}={}", o.0, from_milli(v))
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(ApiError::forbidden(format!(
                "{plural} \"{name}\" is forbidden: exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                list(0),
                list(1),
                list(2)
            )));
        }
    }
    Ok(())
}

/// [`refresh`] as a boxed future (for [`Registry::update`], which it calls back).
pub fn refresh_boxed<'a>(
    reg: &'a Registry,
    res: &'a Resource,
    ns: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<()>> + Send + 'a>> {
    Box::pin(refresh(reg, res, ns))
}

/// Recomputes `status.hard` and `status.used` of the quotas in `ns` that concern `res`.
pub async fn refresh(reg: &Registry, res: &Resource, ns: &str) -> ApiResult<()> {
    let Some(qres) = quotas_res() else {
        return Ok(());
    };
    let quotas = reg
        .list(qres, Some(ns), &ListOptions::default())
        .await?
        .items;
    for q in quotas {
        let keys: Vec<String> = q
            .pointer("/spec/hard")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if res.kind != "ResourceQuota" && !keys.iter().any(|k| concerns(res, k)) {
            continue;
        }
        let mut used_map = serde_json::Map::new();
        for k in &keys {
            used_map.insert(k.clone(), json!(from_milli(used(reg, ns, k).await?)));
        }
        let hard = q.pointer("/spec/hard").cloned().unwrap_or(json!({}));
        let status = json!({"hard": hard, "used": used_map});
        if q.get("status") == Some(&status) {
            continue;
        }
        let name = q
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let result = reg
            .update(qres, Some(ns), &name, Subresource::Status, false, |old| {
                let mut new = crate::handler::without_rv(old);
                new["status"] = status.clone();
                Ok(new)
            })
            .await;
        match result {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}]}});
        assert_eq!(usage_of(pods, &pod, "pods"), Ok(Some(1000)));
        assert_eq!(usage_of(pods, &pod, "count/pods"), Ok(Some(1000)));
        assert_eq!(usage_of(pods, &pod, "requests.cpu"), Ok(Some(300)));
        assert_eq!(usage_of(pods, &pod, "cpu"), Ok(Some(300)));
        assert_eq!(usage_of(pods, &pod, "limits.cpu"), Err("limits.cpu".into()));
        assert_eq!(usage_of(pods, &pod, "services"), Ok(None));
        assert!(counted("count/deployments.apps").is_some_and(|r| r.kind == "Deployment"));
        assert!(counted("requests.cpu").is_none());
    }
}
