//! Invalid objects of the common kinds are refused with 422 Invalid, kube-apiserver's
//! field paths and messages, as the real kubectl prints them; immutable fields stay so.

mod common;

use common::*;

const K: &str = KUBECTL_NEW;

/// Creates `yaml` and expects it refused as Invalid with every one of `wants`.
async fn refused(fx: &Fixture, yaml: &str, wants: &[&str]) {
    let f = fx.file("bad.yaml", yaml);
    let (ok, out, err) = fx
        .run(K, &["create", "-f", f.to_str().unwrap_or_default()])
        .await;
    assert!(!ok, "created: {out}\n{yaml}");
    assert!(err.contains("is invalid"), "{err}");
    for w in wants {
        assert!(err.contains(w), "missing {w}\nin: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_of_common_kinds() {
    if !have_kubectl() {
        return;
    }
    let fx = Fixture::start().await;

    // The status code and reason as the API says them.
    let f = fx.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
    );
    let (ok, out, err) = fx
        .run(K, &["create", "-f", f.to_str().unwrap_or_default(), "-v=6"])
        .await;
    assert!(!ok, "{out}");
    assert!(err.contains("422 Unprocessable Entity"), "{err}");

    refused(
        &fx,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\ndata: {\"a b\": x}\n",
        &[
            r#"The ConfigMap "Bad_Name" is invalid"#,
            r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#,
            r#"data[a b]: Invalid value: "a b": a valid config key"#,
        ],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes: [{name: data, emptyDir: {}}, {name: data, emptyDir: {}}]
  initContainers: [{name: init}]
  containers:
  - name: c
    image: busybox
    imagePullPolicy: Sometimes
    ports: [{containerPort: 0}, {containerPort: 70000}]
    volumeMounts: [{name: cache, mountPath: /cache}]
"#,
        &[
            r#"spec.volumes[1].name: Duplicate value: "data""#,
            "spec.initContainers[0].image: Required value",
            r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
            "spec.containers[0].ports[0].containerPort: Required value",
            "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            r#"spec.containers[0].volumeMounts[0].name: Not found: "cache""#,
        ],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: other}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"#,
        &[
            r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#,
            r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#,
        ],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  template:
    metadata: {labels: {app: ds}}
    spec:
      containers: [{name: c, image: busybox}]
"#,
        &["spec.selector: Required value"],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    spec:
      containers: [{name: c, image: busybox}]
"#,
        &[
            r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
        ],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: cj}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Always
          containers: [{name: c, image: busybox}]
"#,
        &[
            "spec.schedule: Required value",
            r#"spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
        ],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  type: Sideways
  ports: [{port: 80}, {name: b, port: 0, protocol: FOO}]
"#,
        &[
            r#"spec.type: Unsupported value: "Sideways": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
            "spec.ports[0].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            r#"spec.ports[1].protocol: Unsupported value: "FOO": supported values: "SCTP", "TCP", "UDP""#,
        ],
    )
    .await;
    refused(
        &fx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName}\n",
        &["spec.externalName: Required value"],
    )
    .await;
    refused(
        &fx,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==}\n",
        &["data[tls.key]: Required value"],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: i}
spec:
  rules:
  - http:
      paths:
      - path: /
        backend: {service: {name: web, port: {number: 80}}}
      - path: relative
        pathType: Prefix
        backend: {service: {name: web}}
"#,
        &[
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
            r#"spec.rules[0].http.paths[1].path: Invalid value: "relative": must be an absolute path"#,
            "spec.rules[0].http.paths[1].backend.service.port: Required value: port name or number is required",
        ],
    )
    .await;
    refused(
        &fx,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {resources: {}}\n",
        &[
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ],
    )
    .await;
    refused(
        &fx,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v}\nspec: {accessModes: [ReadSometimes]}\n",
        &[
            "spec.capacity: Required value",
            r#"spec.accessModes: Unsupported value: "ReadSometimes""#,
            "spec: Required value: must specify a volume type",
        ],
    )
    .await;
    refused(
        &fx,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: Not.A.Label}\n",
        &[r#"metadata.name: Invalid value: "Not.A.Label": a lowercase RFC 1123 label"#],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r}
rules:
- resources: [pods]
"#,
        &[
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        ],
    )
    .await;
    refused(
        &fx,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: Robot, name: x}]
"#,
        &[
            r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
            r#"subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
        ],
    )
    .await;

    // Immutable fields.
    fx.ok(K, &["create", "deployment", "web", "--image=busybox"])
        .await;
    let err = fx
        .fails(
            K,
            &[
                "patch",
                "deployment",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}}}}}"#,
            ],
        )
        .await;
    assert!(err.contains(r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#), "{err}");
    fx.ok(
        K,
        &[
            "create",
            "rolebinding",
            "rb",
            "--clusterrole=view",
            "--user=alice",
        ],
    )
    .await;
    let err = fx
        .fails(
            K,
            &[
                "patch",
                "rolebinding",
                "rb",
                "--type=merge",
                "-p",
                r#"{"roleRef":{"name":"edit"}}"#,
            ],
        )
        .await;
    assert!(err.contains(r#"roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef"#), "{err}");
    let sts = fx.file(
        "sts.yaml",
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts}
spec:
  replicas: 0
  serviceName: web
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec:
      restartPolicy: Always
      containers: [{name: c, image: busybox}]
"#,
    );
    fx.ok(K, &["create", "-f", sts.to_str().unwrap_or_default()])
        .await;
    let err = fx
        .fails(
            K,
            &[
                "patch",
                "statefulset",
                "sts",
                "--type=merge",
                "-p",
                r#"{"spec":{"serviceName":"other"}}"#,
            ],
        )
        .await;
    assert!(err.contains("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"), "{err}");
}
