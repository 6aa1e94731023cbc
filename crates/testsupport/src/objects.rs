//! Object manifests the tests apply.

/// A Deployment of one busybox `sleep` pod in namespace `ns`, with a 1 s grace period.
pub fn sleeper_deployment(name: &str, ns: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n")
}
