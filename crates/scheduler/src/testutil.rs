//! Builders for realistic Node and Pod objects in unit tests.

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};
use skiff_informer::CachedPod;

/// A pod from its JSON (with the defaults the API server gives), as the pods
/// informer caches it.
pub fn pod(v: Value) -> CachedPod {
    CachedPod::from(skiff_testsupport::objects::pod(v))
}

/// A Ready node with the given labels (plus kubernetes.io/hostname) and allocatable.
pub fn node(name: &str, labels: Value, allocatable: Value) -> Node {
    skiff_testsupport::objects::node(name, labels, allocatable, json!({}))
}

pub fn small_alloc() -> Value {
    json!({"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"})
}

pub fn tainted(name: &str, taints: Value) -> Node {
    let mut n = node(name, json!({}), small_alloc());
    n.spec = Some(serde_json::from_value(json!({"taints": taints})).expect("taints"));
    n
}

/// An unbound pod in namespace default with one container and no requests.
pub fn simple_pod(name: &str, labels: Value) -> CachedPod {
    pod(json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
}

/// A running pod bound to `node_name`.
pub fn bound_pod(name: &str, node_name: &str, labels: Value, spec: Value) -> CachedPod {
    let mut spec = spec;
    spec["nodeName"] = json!(node_name);
    pod(json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": spec,
        "status": {"phase": "Running"}
    }))
}
