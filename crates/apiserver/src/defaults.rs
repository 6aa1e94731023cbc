//! The defaults several kinds share, as kube-apiserver's `defaults.go` files and helpers
//! hold them: setting a field only where it is unset, pod specs and pod templates,
//! canonical quantities, zeroed status counters and labels; the image pull policy and a
//! pod's QoS class. Each kind's own defaults are in its `kinds/` file and call these.

use serde_json::{json, Map, Value};

pub(crate) use skiff_meta::object::obj_mut;

/// Sets `map[key]` to `value` unless it holds something other than null.
pub(crate) fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// Zero in each of `fields` of `obj`'s status that no controller has set yet: what a
/// typed client insists on finding.
pub(crate) fn zero_status(obj: &mut Value, fields: &[&str]) {
    let status = obj_mut(obj, "status");
    for f in fields {
        default(status, f, json!(0));
    }
}

/// Sets one label of `obj`.
pub(crate) fn set_label(obj: &mut Value, key: &str, value: Value) {
    let meta = obj_mut(obj, "metadata");
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta.insert("labels".into(), json!({}));
    }
    if let Some(Value::Object(labels)) = meta.get_mut("labels") {
        labels.insert(key.into(), value);
    }
}

/// PodSpec defaults of the pod template at `template` (workloads).
pub(crate) fn template_defaults(template: Option<&mut Value>) {
    if let Some(spec) = template
        .and_then(|t| t.get_mut("spec"))
        .filter(|s| s.is_object())
    {
        pod_spec_defaults(spec, false);
    }
}

/// PodSpec defaults (`is_pod`: defaults only real pods get, not templates).
pub(crate) fn pod_spec_defaults(spec: &mut Value, is_pod: bool) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    default(s, "restartPolicy", json!("Always"));
    default(s, "dnsPolicy", json!("ClusterFirst"));
    default(s, "terminationGracePeriodSeconds", json!(30));
    default(s, "schedulerName", json!("default-scheduler"));
    default(s, "securityContext", json!({}));
    if is_pod {
        default(s, "enableServiceLinks", json!(true));
        let mut tolerations = s
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !tolerations
                .iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
            {
                tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
        s.insert("tolerations".into(), Value::Array(tolerations));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = s.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                for part in ["limits", "requests"] {
                    if let Some(Value::Object(m)) =
                        c.get_mut("resources").and_then(|r| r.get_mut(part))
                    {
                        crate::quantity::canonicalize_map(m);
                    }
                }
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                default(c, "imagePullPolicy", json!(default_pull_policy(image)));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Canonicalizes the quantity maps of kinds that carry them outside pod specs.
pub(crate) fn canonical_quantities(obj: &mut Value, pointers: &[&str]) {
    for p in pointers {
        if let Some(Value::Object(m)) = obj.pointer_mut(p) {
            crate::quantity::canonicalize_map(m);
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests included).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The pod's QoS class from its containers' requests and limits (`qos.GetPodQOS`): only
/// non-zero cpu and memory count; a request not given is the limit (the API default);
/// Guaranteed when every container limits both and the summed requests equal the
/// summed limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut requests: std::collections::BTreeMap<&str, i128> = Default::default();
    let mut limits: std::collections::BTreeMap<&str, i128> = Default::default();
    let mut guaranteed = true;
    let amount = |c: &Value, part: &str, r: &str| {
        c.pointer(&format!("/resources/{part}/{r}"))
            .and_then(Value::as_str)
            .and_then(crate::quantity::milli_value)
            .filter(|v| *v > 0)
    };
    for list in ["containers", "initContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut limited = 0;
            for r in ["cpu", "memory"] {
                let limit = amount(c, "limits", r);
                let request = if c.pointer(&format!("/resources/requests/{r}")).is_some() {
                    amount(c, "requests", r)
                } else {
                    limit
                };
                if let Some(v) = request {
                    *requests.entry(r).or_default() += v;
                }
                if let Some(v) = limit {
                    *limits.entry(r).or_default() += v;
                    limited += 1;
                }
            }
            if limited < 2 {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/nginx:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }
}
