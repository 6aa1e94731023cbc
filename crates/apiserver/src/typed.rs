//! Checks a JSON object against the typed Kubernetes schema (k8s-openapi's structs), as the
//! real server's decoder does: wrongly typed fields are a 400, unknown fields are pruned
//! and reported (`fieldValidation`: Strict → error, Warn → warning, Ignore → silent).

use serde_json::Value;

use crate::resources::Resource;

/// The Kubernetes minor version whose API this server implements (the k8s-openapi feature).
pub fn kube_minor() -> u32 {
    #[allow(unused_mut)]
    let mut v = 33;
    k8s_openapi::k8s_if_1_34! { v = 34; }
    k8s_openapi::k8s_if_1_35! { v = 35; }
    k8s_openapi::k8s_if_1_36! { v = 36; }
    k8s_openapi::k8s_if_1_37! { v = 37; }
    v
}

/// The key of a resource's typed struct in [`with_type!`]: its kind, `events.k8s.io/Event`
/// for the events API's Event.
pub fn type_key(res: &Resource) -> &'static str {
    if res.group == "events.k8s.io" {
        "events.k8s.io/Event"
    } else {
        res.kind
    }
}

/// `with_type!(key, m, default)`: expands `m!(Type)` for the k8s-openapi struct of the
/// [`type_key`] `key`, `default` for kinds without one (one table for the decoder and the
/// OpenAPI schemas).
#[macro_export]
macro_rules! with_type {
    ($key:expr, $m:ident, $default:expr) => {{
        use k8s_openapi::api::{
            apps, autoscaling, batch, certificates, coordination, core, discovery, networking,
            policy, rbac, scheduling, storage,
        };
        match $key {
            "ConfigMap" => $m!(core::v1::ConfigMap),
            "Endpoints" => $m!(core::v1::Endpoints),
            "Event" => $m!(core::v1::Event),
            "events.k8s.io/Event" => $m!(k8s_openapi::api::events::v1::Event),
            "LimitRange" => $m!(core::v1::LimitRange),
            "Namespace" => $m!(core::v1::Namespace),
            "Node" => $m!(core::v1::Node),
            "PersistentVolumeClaim" => $m!(core::v1::PersistentVolumeClaim),
            "PersistentVolume" => $m!(core::v1::PersistentVolume),
            "Pod" => $m!(core::v1::Pod),
            "PodTemplate" => $m!(core::v1::PodTemplate),
            "ReplicationController" => $m!(core::v1::ReplicationController),
            "ResourceQuota" => $m!(core::v1::ResourceQuota),
            "Secret" => $m!(core::v1::Secret),
            "ServiceAccount" => $m!(core::v1::ServiceAccount),
            "Service" => $m!(core::v1::Service),
            "ControllerRevision" => $m!(apps::v1::ControllerRevision),
            "DaemonSet" => $m!(apps::v1::DaemonSet),
            "Deployment" => $m!(apps::v1::Deployment),
            "ReplicaSet" => $m!(apps::v1::ReplicaSet),
            "StatefulSet" => $m!(apps::v1::StatefulSet),
            "CronJob" => $m!(batch::v1::CronJob),
            "Job" => $m!(batch::v1::Job),
            "Lease" => $m!(coordination::v1::Lease),
            "CertificateSigningRequest" => $m!(certificates::v1::CertificateSigningRequest),
            "EndpointSlice" => $m!(discovery::v1::EndpointSlice),
            "IngressClass" => $m!(networking::v1::IngressClass),
            "Ingress" => $m!(networking::v1::Ingress),
            "NetworkPolicy" => $m!(networking::v1::NetworkPolicy),
            "PodDisruptionBudget" => $m!(policy::v1::PodDisruptionBudget),
            "ClusterRoleBinding" => $m!(rbac::v1::ClusterRoleBinding),
            "ClusterRole" => $m!(rbac::v1::ClusterRole),
            "RoleBinding" => $m!(rbac::v1::RoleBinding),
            "Role" => $m!(rbac::v1::Role),
            "PriorityClass" => $m!(scheduling::v1::PriorityClass),
            "StorageClass" => $m!(storage::v1::StorageClass),
            "HorizontalPodAutoscaler" => $m!(autoscaling::v2::HorizontalPodAutoscaler),
            _ => $default,
        }
    }};
}

/// Round-trips `obj` through the typed struct of `kind`. `Ok(None)` for kinds without one.
fn round_trip(res: &Resource, obj: &Value) -> Result<Option<Value>, String> {
    macro_rules! rt {
        ($t:ty) => {{
            let typed: $t = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
            serde_json::to_value(&typed)
                .map(Some)
                .map_err(|e| e.to_string())
        }};
    }
    with_type!(type_key(res), rt, Ok(None))
}

/// Checks `obj` (of `kind`): `Err(message)` if it does not decode; otherwise removes
/// unknown fields from it and returns their paths.
pub fn check(res: &Resource, obj: &mut Value) -> Result<Vec<String>, String> {
    let Some(typed) = round_trip(res, obj)? else {
        return Ok(Vec::new());
    };
    // resource.Quantity fails to decode in kube-apiserver: the whole body is refused.
    if has_bad_quantity(obj, "") {
        return Err(format!(
            "quantities must match the regular expression '{}'",
            crate::quantity::PATTERN
        ));
    }
    let mut unknown = Vec::new();
    prune(obj, &typed, String::new(), &mut unknown);
    Ok(unknown)
}

/// Fields of the built-in kinds that hold resource lists (name → Quantity).
const QUANTITY_LISTS: [&str; 12] = [
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
    "min",
    "max",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
    "overhead",
];
/// Fields that are one Quantity.
const QUANTITY_FIELDS: [&str; 2] = ["sizeLimit", "divisor"];

/// Whether a Quantity field of `v` (under key `key`) does not parse.
fn has_bad_quantity(v: &Value, key: &str) -> bool {
    let bad = |q: &Value| match q {
        Value::String(s) => crate::quantity::canonicalize(s).is_none(),
        Value::Number(_) | Value::Null => false,
        _ => true,
    };
    match v {
        Value::Object(m) if QUANTITY_LISTS.contains(&key) && m.values().all(|q| !q.is_object()) => {
            m.values().any(bad)
        }
        Value::Object(m) => m.iter().any(|(k, c)| has_bad_quantity(c, k)),
        Value::Array(a) => a.iter().any(|c| has_bad_quantity(c, "")),
        q if QUANTITY_FIELDS.contains(&key) => bad(q),
        _ => false,
    }
}

fn prune(input: &mut Value, typed: &Value, path: String, unknown: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(m), Value::Object(t)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (m.get_mut(&k), t.get(&k)) {
                    (Some(Value::Null), _) => {}
                    (Some(v), Some(tv)) => prune(v, tv, p, unknown),
                    (Some(_), None) => {
                        m.remove(&k);
                        unknown.push(p);
                    }
                    (None, _) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(t)) => {
            for (i, (v, tv)) in a.iter_mut().zip(t).enumerate() {
                prune(v, tv, format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;
    use serde_json::json;

    #[test]
    fn finds_and_prunes_unknown_fields() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicy": null, "colour": "red"}]}});
        let unknown = check(lookup("", "v1", "pods").unwrap(), &mut pod).unwrap();
        assert_eq!(unknown, vec!["metadata.bogus", "spec.containers[0].colour"]);
        assert!(pod["spec"]["containers"][0].get("colour").is_none());
        assert_eq!(pod["spec"]["containers"][0]["image"], "x");
    }

    #[test]
    fn wrong_types_fail() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        assert!(check(lookup("apps", "v1", "deployments").unwrap(), &mut d).is_err());
    }

    #[test]
    fn version_is_known() {
        assert!(kube_minor() >= 33);
    }
}
