//! Invalid objects of the common kinds are refused with 422 Invalid, kube-apiserver's
//! field paths and messages, as the real kubectl prints them; immutable fields stay so.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

    // A quantity that does not parse fails the decoding of the whole body (400), as
    // resource.Quantity does in kube-apiserver.
    for (kind, yaml) in [
        ("Pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers: [{name: c, image: busybox, resources: {limits: {memory: lots}}}]\n"),
        ("ResourceQuota", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec:\n  hard: {pods: abc}\n"),
        ("Pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers: [{name: c, image: busybox}]\n  volumes: [{name: v, emptyDir: {sizeLimit: huge}}]\n"),
    ] {
        let f = fx.file("q.yaml", yaml);
        let err = fx
            .fails(K, &["create", "-f", f.to_str().unwrap_or_default(), "--validate=false"])
            .await;
        assert!(
            err.contains(&format!("Error from server (BadRequest): error when creating \"{}\": {kind} in version \"v1\" cannot be handled as a {kind}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'", f.display())),
            "{err}"
        );
    }
    // LimitRange items hold quantities by name; a type is not one.
    fx.ok(
        K,
        &[
            "create",
            "-f",
            fx.file(
                "lr.yaml",
                "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr}\nspec:\n  limits: [{type: Container}]\n",
            )
            .to_str()
            .unwrap_or_default(),
        ],
    )
    .await;
    // Requests within limits, nothing negative, in containers and init containers.
    refused(
        &fx,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: res}\nspec:\n  initContainers: [{name: i, image: busybox, resources: {requests: {cpu: \"-1\"}}}]\n  containers:\n  - name: c\n    image: busybox\n    resources: {limits: {cpu: \"1\", memory: 1Gi}, requests: {cpu: \"2\", memory: -1Gi}}\n",
        &[
            r#"spec.initContainers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#,
            r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
            r#"spec.containers[0].resources.requests[memory]: Invalid value: "-1Gi": must be greater than or equal to 0"#,
        ],
    )
    .await;
    // Projected tokens live at least 10 minutes; TokenRequest says the same.
    refused(
        &fx,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: tok}\nspec:\n  containers: [{name: c, image: busybox}]\n  volumes:\n  - name: t\n    projected:\n      sources:\n      - serviceAccountToken: {path: token, expirationSeconds: 60}\n      - serviceAccountToken: {path: \"\"}\n",
        &[
            "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
            "spec.volumes[0].projected.sources[1].serviceAccountToken.path: Required value",
        ],
    )
    .await;
    let err = fx
        .fails(K, &["create", "token", "default", "--duration", "1m"])
        .await;
    assert!(
        err.contains("spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"),
        "{err}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_containers_are_only_added_through_their_subresource() {
    if !have_kubectl() {
        return;
    }
    let fx = Fixture::start().await;
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dbg\nspec:\n  containers:\n  - name: app\n    image: busybox\n";
    let f = fx.file("pod.yaml", pod);
    fx.ok(K, &["create", "-f", f.to_str().unwrap_or_default()])
        .await;
    // Not on create.
    refused(
        &fx,
        &format!(
            "{}  ephemeralContainers:\n  - name: e\n    image: busybox\n",
            pod.replace("name: dbg", "name: dbg2")
        ),
        &["spec.ephemeralContainers: Forbidden: cannot be set on create"],
    )
    .await;

    // kubectl debug (both ends of the supported range) adds them through the subresource.
    for (k, name) in [(KUBECTL_OLD, "d1"), (KUBECTL_NEW, "d2")] {
        let out = fx
            .ok(
                k,
                &[
                    "debug",
                    "dbg",
                    "--image=busybox",
                    "-c",
                    name,
                    "--target=app",
                    "--",
                    "sh",
                ],
            )
            .await;
        assert!(out.is_empty() || !out.contains("error"), "{out}");
    }
    let raw = "/api/v1/namespaces/default/pods/dbg/ephemeralcontainers";
    let got: serde_json::Value =
        serde_json::from_str(&fx.ok(K, &["get", "--raw", raw]).await).expect("json");
    assert_eq!(got["kind"], "Pod", "{got}");
    let ecs = got["spec"]["ephemeralContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ecs.len(), 2, "{got}");
    assert_eq!(ecs[0]["name"], "d1");
    assert_eq!(ecs[1]["targetContainerName"], "app");
    assert_eq!(ecs[1]["command"], serde_json::json!(["sh"]));
    // Defaulted as containers are.
    assert_eq!(ecs[0]["terminationMessagePolicy"], "File", "{got}");
    assert_eq!(ecs[0]["imagePullPolicy"], "Always", "{got}");
    let managers: Vec<(String, String)> = got["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_string(),
                m["subresource"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // kubectl debug sends no fieldManager: the manager comes from its user agent.
    assert!(
        managers
            .iter()
            .any(|(m, s)| m.starts_with("kubectl") && s == "ephemeralcontainers"),
        "{managers:?}"
    );

    // Through the subresource: added, never changed or removed; no ports, probes,
    // resources; targets must exist; names are unique across the pod.
    let put = |mutate: &dyn Fn(&mut serde_json::Value)| {
        let mut body = got.clone();
        mutate(&mut body);
        fx.file("ec.json", &body.to_string())
    };
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|b| b["spec"]["ephemeralContainers"][0]["image"] = "busybox:2".into()),
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"d1\" may not be changed",
        ),
        (
            Box::new(|b| {
                if let Some(l) = b["spec"]["ephemeralContainers"].as_array_mut() {
                    l.remove(0);
                }
            }),
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"d1\" may not be removed",
        ),
        (
            Box::new(|b| {
                push_ephemeral(b, serde_json::json!({"name": "d3", "image": "busybox",
                    "ports": [{"containerPort": 80}], "readinessProbe": {"exec": {"command": ["true"]}},
                    "resources": {"limits": {"cpu": "1"}}, "targetContainerName": "nope"}));
            }),
            "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container",
        ),
        (
            Box::new(|b| {
                push_ephemeral(b, serde_json::json!({"name": "app", "image": "busybox"}));
            }),
            "spec.ephemeralContainers[2].name: Duplicate value: \"app\"",
        ),
    ];
    for (mutate, want) in &cases {
        let f = put(mutate.as_ref());
        let err = fx
            .fails(
                K,
                &[
                    "replace",
                    "--raw",
                    raw,
                    "-f",
                    f.to_str().unwrap_or_default(),
                ],
            )
            .await;
        assert!(err.contains(want), "want {want}\nin: {err}");
    }
    let f = put(&|b| {
        push_ephemeral(
            b,
            serde_json::json!({"name": "d3", "image": "busybox", "targetContainerName": "nope"}),
        );
    });
    let err = fx
        .fails(
            K,
            &[
                "replace",
                "--raw",
                raw,
                "-f",
                f.to_str().unwrap_or_default(),
            ],
        )
        .await;
    assert!(
        err.contains("spec.ephemeralContainers[2].targetContainerName: Not found: \"nope\""),
        "{err}"
    );
    for f in ["readinessProbe", "resources"] {
        let f = format!("spec.ephemeralContainers[2].{f}: Forbidden");
        let err = fx
            .fails(
                K,
                &[
                    "replace",
                    "--raw",
                    raw,
                    "-f",
                    put(cases[2].0.as_ref()).to_str().unwrap_or_default(),
                ],
            )
            .await;
        assert!(err.contains(&f), "want {f}\nin: {err}");
    }
    // A good addition lands; the rest of the pod is untouched by it.
    let f = put(&|b| {
        push_ephemeral(b, serde_json::json!({"name": "d3", "image": "busybox"}));
        b["spec"]["containers"][0]["image"] = "changed".into();
        b["metadata"]["labels"] = serde_json::json!({"x": "y"});
    });
    fx.ok(
        K,
        &[
            "replace",
            "--raw",
            raw,
            "-f",
            f.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let now: serde_json::Value =
        serde_json::from_str(&fx.ok(K, &["get", "pod", "dbg", "-o", "json"]).await).expect("json");
    assert_eq!(
        now["spec"]["ephemeralContainers"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(now["spec"]["containers"][0]["image"], "busybox", "{now}");
    assert!(now["metadata"]["labels"].is_null(), "{now}");

    // The pod itself cannot change them.
    let err = fx
        .fails(
            K,
            &[
                "patch",
                "pod",
                "dbg",
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
            ],
        )
        .await;
    assert!(err.contains("pod updates may not change fields"), "{err}");
    // Discovery lists the subresource.
    let out = fx.ok(K, &["get", "--raw", "/api/v1"]).await;
    assert!(out.contains("\"pods/ephemeralcontainers\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_spec_is_fixed_but_for_binding_and_expansion() {
    if !have_kubectl() {
        return;
    }
    let fx = Fixture::start().await;
    let f = fx.file(
        "pvc.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: v}\nspec:\n  accessModes: [ReadWriteOnce]\n  capacity: {storage: 1Gi}\n  hostPath: {path: /tmp/v}\n",
    );
    fx.ok(K, &["create", "-f", f.to_str().unwrap_or_default()])
        .await;
    // Defaults as kube-apiserver sets them.
    let spec = fx
        .ok(K, &["get", "pvc", "c", "-o", "jsonpath={.spec.volumeMode}"])
        .await;
    assert_eq!(spec, "Filesystem");
    let pv = fx
        .ok(
            K,
            &[
                "get",
                "pv",
                "v",
                "-o",
                "jsonpath={.spec.persistentVolumeReclaimPolicy}/{.spec.volumeMode}",
            ],
        )
        .await;
    assert_eq!(pv, "Retain/Filesystem");
    let fixed = "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";
    let patch = |p: &'static str| ["patch", "pvc", "c", "-p", p];
    for p in [
        r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#,
        r#"{"spec":{"storageClassName":"other"}}"#,
        // An unbound claim's request is fixed too.
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ] {
        let err = fx.fails(K, &patch(p)).await;
        assert!(err.contains(fixed), "{p}: {err}");
    }
    // Binding sets the volume once; labels are not the spec.
    fx.ok(K, &patch(r#"{"spec":{"volumeName":"v"}}"#)).await;
    let err = fx.fails(K, &patch(r#"{"spec":{"volumeName":"w"}}"#)).await;
    assert!(err.contains(fixed), "{err}");
    fx.ok(K, &["label", "pvc", "c", "a=b"]).await;
    // A bound claim may grow, never shrink.
    fx.ok(
        K,
        &[
            "patch",
            "pvc",
            "c",
            "--subresource=status",
            "-p",
            r#"{"status":{"phase":"Bound"}}"#,
        ],
    )
    .await;
    fx.ok(
        K,
        &patch(r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#),
    )
    .await;
    let err = fx
        .fails(
            K,
            &patch(r#"{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}"#),
        )
        .await;
    assert!(
        err.contains(
            "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_cluster_ip_may_not_change_once_set() {
    if !have_kubectl() {
        return;
    }
    let fx = Fixture::start().await;
    let f = fx.file(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}]\n",
    );
    fx.ok(K, &["apply", "-f", f.to_str().unwrap_or_default()])
        .await;
    let ip = fx
        .ok(K, &["get", "svc", "s", "-o", "jsonpath={.spec.clusterIP}"])
        .await;
    assert!(ip.starts_with("10.43."), "{ip}");
    // An old client's change of clusterIP alone, and a new client's of both.
    for p in [
        r#"{"spec":{"clusterIP":"10.43.250.250"}}"#,
        r#"{"spec":{"clusterIP":"10.43.250.250","clusterIPs":["10.43.250.250"]}}"#,
    ] {
        let err = fx.fails(K, &["patch", "svc", "s", "-p", p]).await;
        assert!(
            err.contains(r#"spec.clusterIPs[0]: Invalid value: []string{"10.43.250.250"}: may not change once set"#),
            "{p}: {err}"
        );
    }
    // Leaving it out keeps it: applying the same file again, or a label.
    fx.ok(K, &["apply", "-f", f.to_str().unwrap_or_default()])
        .await;
    fx.ok(K, &["label", "svc", "s", "a=b"]).await;
    let now = fx
        .ok(
            K,
            &[
                "get",
                "svc",
                "s",
                "-o",
                "jsonpath={.spec.clusterIP}/{.spec.clusterIPs[0]}",
            ],
        )
        .await;
    assert_eq!(now, format!("{ip}/{ip}"));
}

/// Appends an ephemeral container to a pod body.
fn push_ephemeral(pod: &mut serde_json::Value, ec: serde_json::Value) {
    if let Some(l) = pod["spec"]["ephemeralContainers"].as_array_mut() {
        l.push(ec);
    }
}
