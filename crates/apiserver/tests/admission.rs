//! Quota scopes and LimitRange items other than Container, driven by the real kubectl
//! against a real server: what is admitted, what is refused with kube-apiserver's
//! messages, what the quotas' `status.used` counts, and the validation of both kinds.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const K: &str = KUBECTL_NEW;

/// Applies `yaml` (written to `name`); returns (success, stdout, stderr).
async fn apply(fx: &Fixture, name: &str, yaml: &str) -> (bool, String, String) {
    let f = fx.file(name, yaml);
    fx.run(K, &["apply", "-f", f.to_str().unwrap_or_default()])
        .await
}

fn pod(name: &str, extra_spec: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: q\nspec:\n{extra_spec}  containers:\n  - name: c\n    image: busybox:1.36\n    resources: {resources}\n"
    )
}

async fn used(fx: &Fixture, quota: &str) -> Value {
    let q = json(
        &fx.ok(K, &["get", "quota", quota, "-n", "q", "-o", "json"])
            .await,
    );
    q["status"]["used"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_scopes() {
    if !have_kubectl() {
        return;
    }
    let fx = Fixture::start().await;
    fx.ok(K, &["create", "ns", "q"]).await;
    fx.ok(K, &["create", "priorityclass", "high", "--value=1000"])
        .await;
    let quotas = r#"apiVersion: v1
kind: ResourceQuota
metadata: {name: besteffort, namespace: q}
spec:
  hard: {pods: "1"}
  scopes: [BestEffort]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: notbesteffort, namespace: q}
spec:
  hard: {pods: "5", requests.cpu: "1", limits.memory: 1Gi}
  scopes: [NotBestEffort, NotTerminating]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: high, namespace: q}
spec:
  hard: {pods: "1"}
  scopeSelector:
    matchExpressions:
    - {scopeName: PriorityClass, operator: In, values: [high]}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: terminating, namespace: q}
spec:
  hard: {pods: "1", count/configmaps: "1"}
  scopes: [Terminating]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: objects, namespace: q}
spec:
  hard: {count/configmaps: "3"}
"#;
    let (ok, out, err) = apply(&fx, "quotas.yaml", quotas).await;
    assert!(ok, "{out}{err}");

    // A BestEffort pod counts only against the BestEffort quota.
    let (ok, out, err) = apply(&fx, "p1.yaml", &pod("be1", "", "{}")).await;
    assert!(ok, "{out}{err}");
    assert_eq!(used(&fx, "besteffort").await["pods"], "1");
    assert_eq!(used(&fx, "notbesteffort").await["pods"], "0");
    let (ok, _, err) = apply(&fx, "p2.yaml", &pod("be2", "", "{}")).await;
    assert!(!ok);
    assert!(err.contains(r#"pods "be2" is forbidden: exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1"#), "{err}");

    // NotBestEffort: every container must state what the quota limits.
    let (ok, _, err) = apply(
        &fx,
        "p3.yaml",
        &pod("burst", "", "{requests: {memory: 64Mi}}"),
    )
    .await;
    assert!(!ok);
    assert!(err.contains(r#"pods "burst" is forbidden: failed quota: notbesteffort: must specify limits.memory for: c; requests.cpu for: c"#), "{err}");
    let (ok, out, err) = apply(
        &fx,
        "p3.yaml",
        &pod(
            "burst",
            "",
            "{requests: {cpu: 600m, memory: 64Mi}, limits: {memory: 512Mi}}",
        ),
    )
    .await;
    assert!(ok, "{out}{err}");
    let u = used(&fx, "notbesteffort").await;
    assert_eq!(
        u,
        serde_json::json!({"pods": "1", "requests.cpu": "600m", "limits.memory": "512Mi"})
    );
    assert_eq!(used(&fx, "besteffort").await["pods"], "1");
    let (ok, _, err) = apply(
        &fx,
        "p4.yaml",
        &pod(
            "burst2",
            "",
            "{requests: {cpu: 500m}, limits: {memory: 256Mi}}",
        ),
    )
    .await;
    assert!(!ok);
    assert!(err.contains(r#"pods "burst2" is forbidden: exceeded quota: notbesteffort, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"#), "{err}");
    // A terminating pod (activeDeadlineSeconds) escapes NotTerminating but not Terminating.
    let (ok, out, err) = apply(
        &fx,
        "p5.yaml",
        &pod(
            "deadline",
            "  activeDeadlineSeconds: 60\n",
            "{requests: {cpu: 500m}, limits: {memory: 256Mi}}",
        ),
    )
    .await;
    assert!(ok, "{out}{err}");
    assert_eq!(used(&fx, "terminating").await["pods"], "1");
    assert_eq!(used(&fx, "notbesteffort").await["requests.cpu"], "600m");

    // The PriorityClass scope selector.
    let (ok, out, err) = apply(
        &fx,
        "p6.yaml",
        &pod(
            "vip",
            "  priorityClassName: high\n",
            "{requests: {cpu: 100m}, limits: {memory: 64Mi}}",
        ),
    )
    .await;
    assert!(ok, "{out}{err}");
    assert_eq!(used(&fx, "high").await["pods"], "1");
    let (ok, _, err) = apply(
        &fx,
        "p7.yaml",
        &pod(
            "vip2",
            "  priorityClassName: high\n",
            "{requests: {cpu: 100m}, limits: {memory: 64Mi}}",
        ),
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains(r#"pods "vip2" is forbidden: exceeded quota: high, requested: pods=1, used: pods=1, limited: pods=1"#),
        "{err}"
    );

    // A scoped quota never counts objects other than pods; an unscoped one does (the
    // namespace's kube-root-ca.crt included).
    fx.ok(K, &["create", "configmap", "a", "-n", "q"]).await;
    fx.ok(K, &["create", "configmap", "b", "-n", "q"]).await;
    assert_eq!(used(&fx, "terminating").await["count/configmaps"], "0");
    assert_eq!(used(&fx, "objects").await["count/configmaps"], "3");
    let err = fx.fails(K, &["create", "configmap", "c", "-n", "q"]).await;
    assert!(err.contains(r#"configmaps "c" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3"#), "{err}");

    // Deleting frees the scoped quota.
    fx.ok(K, &["delete", "pod", "be1", "-n", "q", "--wait=false"])
        .await;
    assert_eq!(used(&fx, "besteffort").await["pods"], "0");

    // describe lists the scopes as kubectl explains them.
    let out = fx
        .ok(K, &["describe", "quota", "besteffort", "-n", "q"])
        .await;
    assert!(out.contains("Scopes:     BestEffort"), "{out}");
    assert!(
        out.contains("Matches all pods that do not have resource requirements set"),
        "{out}"
    );
    let out = fx.ok(K, &["describe", "quota", "high", "-n", "q"]).await;
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "1", "1"]),
        "{out}"
    );

    // Validation of scopes against resources, conflicting scopes, selector operators.
    let bad = r#"apiVersion: v1
kind: ResourceQuota
metadata: {name: bad, namespace: q}
spec:
  hard: {requests.cpu: "1", foo: "1", pods: 1500m}
  scopes: [BestEffort, NotBestEffort]
"#;
    let (ok, _, err) = apply(&fx, "bad.yaml", bad).await;
    assert!(!ok);
    for want in [
        r#"The ResourceQuota "bad" is invalid"#,
        r#"spec.hard[foo]: Invalid value: "foo": must be a standard resource type or fully qualified"#,
        r#"spec.hard[foo]: Invalid value: "foo": must be a standard resource for quota"#,
        r#"spec.hard[pods]: Invalid value: "1500m": must be an integer"#,
        r#"spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort", "NotBestEffort"}: unsupported scope applied to resource"#,
        r#"spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort", "NotBestEffort"}: conflicting scopes"#,
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
    let bad = r#"apiVersion: v1
kind: ResourceQuota
metadata: {name: bad, namespace: q}
spec:
  hard: {pods: "1"}
  scopeSelector:
    matchExpressions:
    - {scopeName: BestEffort, operator: In, values: [x]}
    - {scopeName: PriorityClass, operator: In}
    - {scopeName: Nope, operator: Exists}
"#;
    let (ok, _, err) = apply(&fx, "bad.yaml", bad).await;
    assert!(!ok);
    for want in [
        r#"spec.scopeSelector.matchExpressions.operator: Invalid value: "In": must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"#,
        r#"spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"#,
        r#"spec.scopeSelector.matchExpressions.scopeName: Invalid value: "Nope": unsupported scope"#,
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
    // Scopes are immutable.
    let err = fx
        .fails(
            K,
            &[
                "patch",
                "quota",
                "besteffort",
                "-n",
                "q",
                "--type=merge",
                "-p",
                r#"{"spec":{"scopes":["NotTerminating"]}}"#,
            ],
        )
        .await;
    assert!(
        err.contains(r#"spec.scopes: Invalid value: []core.ResourceQuotaScope{"NotTerminating"}: field is immutable"#),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_range_items() {
    if !have_kubectl() {
        return;
    }
    let fx = Fixture::start().await;
    fx.ok(K, &["create", "ns", "q"]).await;
    let lr = r#"apiVersion: v1
kind: LimitRange
metadata: {name: lr, namespace: q}
spec:
  limits:
  - type: Container
    max: {memory: 768Mi}
    min: {cpu: 50m}
  - type: Pod
    max: {memory: 1Gi}
    maxLimitRequestRatio: {memory: "4"}
  - type: PersistentVolumeClaim
    min: {storage: 1Gi}
    max: {storage: 5Gi}
"#;
    let (ok, out, err) = apply(&fx, "lr.yaml", lr).await;
    assert!(ok, "{out}{err}");
    // The API defaults of a Container item: default limit = max, default request =
    // default limit, else min.
    let stored = json(
        &fx.ok(K, &["get", "limits", "lr", "-n", "q", "-o", "json"])
            .await,
    );
    let c = &stored["spec"]["limits"][0];
    assert_eq!(c["default"], serde_json::json!({"memory": "768Mi"}), "{c}");
    assert_eq!(
        c["defaultRequest"],
        serde_json::json!({"memory": "768Mi", "cpu": "50m"}),
        "{c}"
    );

    // Defaults land in every container and are noted in the annotation.
    let (ok, out, err) = apply(&fx, "one.yaml", &pod("one", "", "{}")).await;
    assert!(ok, "{out}{err}");
    let p = json(
        &fx.ok(K, &["get", "pod", "one", "-n", "q", "-o", "json"])
            .await,
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; memory limit for container c"
    );
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "768Mi"
    );

    // Pod items are checked against the sum of the containers.
    let two = r#"apiVersion: v1
kind: Pod
metadata: {name: two, namespace: q}
spec:
  containers:
  - {name: a, image: busybox:1.36, resources: {limits: {memory: 512Mi}, requests: {memory: 512Mi}}}
  - {name: b, image: busybox:1.36, resources: {limits: {memory: 512Mi}, requests: {memory: 512Mi}}}
  - {name: c, image: busybox:1.36, resources: {limits: {memory: 512Mi}, requests: {memory: 512Mi}}}
"#;
    let (ok, _, err) = apply(&fx, "two.yaml", two).await;
    assert!(!ok);
    assert!(
        err.contains(
            r#"pods "two" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1536Mi"#
        ),
        "{err}"
    );
    let ratio = r#"apiVersion: v1
kind: Pod
metadata: {name: ratio, namespace: q}
spec:
  containers:
  - {name: a, image: busybox:1.36, resources: {limits: {memory: 512Mi}, requests: {memory: 64Mi}}}
"#;
    let (ok, _, err) = apply(&fx, "ratio.yaml", ratio).await;
    assert!(!ok);
    assert!(
        err.contains(r#"pods "ratio" is forbidden: memory max limit to request ratio per Pod is 4, but provided ratio is 8.000000"#),
        "{err}"
    );
    let small = r#"apiVersion: v1
kind: Pod
metadata: {name: small, namespace: q}
spec:
  containers:
  - {name: a, image: busybox:1.36, resources: {requests: {cpu: 10m}}}
"#;
    let (ok, _, err) = apply(&fx, "small.yaml", small).await;
    assert!(!ok);
    assert!(
        err.contains(r#"pods "small" is forbidden: minimum cpu usage per Container is 50m, but request is 10m"#),
        "{err}"
    );

    // Claims: min and max storage of the request.
    let claim = |name: &str, size: &str| {
        format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: q}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n")
    };
    let (ok, _, err) = apply(&fx, "big.yaml", &claim("big", "10Gi")).await;
    assert!(!ok);
    assert!(err.contains(r#"persistentvolumeclaims "big" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"#), "{err}");
    let (ok, _, err) = apply(&fx, "tiny.yaml", &claim("tiny", "100Mi")).await;
    assert!(!ok);
    assert!(err.contains(r#"persistentvolumeclaims "tiny" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 100Mi"#), "{err}");
    let (ok, out, err) = apply(&fx, "fine.yaml", &claim("fine", "2Gi")).await;
    assert!(ok, "{out}{err}");
    // Growing a bound claim past the maximum is refused the same way.
    fx.ok(
        K,
        &[
            "patch",
            "pvc",
            "fine",
            "-n",
            "q",
            "--subresource=status",
            "-p",
            r#"{"status":{"phase":"Bound"}}"#,
        ],
    )
    .await;
    let err = fx
        .fails(
            K,
            &[
                "patch",
                "pvc",
                "fine",
                "-n",
                "q",
                "-p",
                r#"{"spec":{"resources":{"requests":{"storage":"6Gi"}}}}"#,
            ],
        )
        .await;
    assert!(err.contains(r#"persistentvolumeclaims "fine" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 6Gi"#), "{err}");

    // describe shows every item.
    let out = fx.ok(K, &["describe", "limits", "lr", "-n", "q"]).await;
    for want in [
        "Container",
        "Pod",
        "PersistentVolumeClaim",
        "storage",
        "5Gi",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }

    // Validation of LimitRange items.
    let bad = r#"apiVersion: v1
kind: LimitRange
metadata: {name: bad, namespace: q}
spec:
  limits:
  - type: Pod
    default: {cpu: "1"}
    max: {cpu: "1"}
    min: {cpu: "2"}
  - type: PersistentVolumeClaim
    max: {cpu: "1"}
  - type: Container
    maxLimitRequestRatio: {cpu: 500m}
"#;
    let (ok, _, err) = apply(&fx, "badlr.yaml", bad).await;
    assert!(!ok);
    for want in [
        r#"The LimitRange "bad" is invalid"#,
        "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'",
        r#"spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1"#,
        "spec.limits[1].limits: Required value: either minimum or maximum storage value is required, but neither was provided",
        r#"spec.limits[2].maxLimitRequestRatio[cpu]: Invalid value: "500m": ratio 500m is less than 1"#,
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

/// Updates are admitted against quotas too: what they add must fit (a claim that grows,
/// a Service that takes node ports), as the quota evaluator checks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_on_updates() {
    if !have_kubectl() {
        return;
    }
    let fx = Fixture::start().await;
    fx.ok(K, &["create", "ns", "q"]).await;
    let (ok, _, err) = apply(
        &fx,
        "objs.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: q}\nspec:\n  hard: {requests.storage: 2Gi, services.nodeports: \"1\"}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c, namespace: q}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: q}\nspec:\n  ports: [{port: 80, name: a}, {port: 81, name: b}]\n",
    )
    .await;
    assert!(ok, "{err}");
    // A bound claim may grow within the quota, not past it.
    fx.ok(
        K,
        &[
            "patch",
            "pvc",
            "c",
            "-n",
            "q",
            "--subresource=status",
            "-p",
            r#"{"status":{"phase":"Bound"}}"#,
        ],
    )
    .await;
    let grow = |size: &'static str| {
        [
            "patch".to_string(),
            "pvc".into(),
            "c".into(),
            "-n".into(),
            "q".into(),
            "-p".into(),
            format!(r#"{{"spec":{{"resources":{{"requests":{{"storage":"{size}"}}}}}}}}"#),
        ]
    };
    let args = grow("3Gi");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = fx.fails(K, &args).await;
    assert!(
        err.contains("persistentvolumeclaims \"c\" is forbidden: exceeded quota: q, requested: requests.storage=2Gi, used: requests.storage=1Gi, limited: requests.storage=2Gi"),
        "{err}"
    );
    let args = grow("2Gi");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fx.ok(K, &args).await;
    // A ClusterIP Service turned NodePort takes two node ports; the quota allows one.
    let err = fx
        .fails(
            K,
            &[
                "patch",
                "svc",
                "s",
                "-n",
                "q",
                "-p",
                r#"{"spec":{"type":"NodePort"}}"#,
            ],
        )
        .await;
    assert!(
        err.contains("services \"s\" is forbidden: exceeded quota: q, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"),
        "{err}"
    );
}
