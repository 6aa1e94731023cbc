//! Objects the tests use: manifests they apply and, with the `k8s` feature, Pods and
//! Nodes built from JSON for unit tests.

/// A Deployment of one busybox `sleep` pod in namespace `ns`, with a 1 s grace period.
pub fn sleeper_deployment(name: &str, ns: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n")
}

/// A Pod from its JSON.
#[cfg(feature = "k8s")]
pub fn pod(v: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(v).expect("test pod JSON")
}

/// A Ready node `name` with `labels` (plus `kubernetes.io/hostname`), `allocatable`
/// (also its capacity) and `spec`.
#[cfg(feature = "k8s")]
pub fn node(
    name: &str,
    labels: serde_json::Value,
    allocatable: serde_json::Value,
    spec: serde_json::Value,
) -> k8s_openapi::api::core::v1::Node {
    let mut labels = labels;
    if let Some(m) = labels.as_object_mut() {
        m.entry("kubernetes.io/hostname")
            .or_insert_with(|| serde_json::json!(name));
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {
            "capacity": allocatable,
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    }))
    .expect("test node JSON")
}
