//! The real kubectl against a real server: the dispatcher and the 1.27 and 1.33 clients.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_end_to_end() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = DISPATCHER;

    let out = fx.ok(k, &["version"]).await;
    assert!(out.contains("Server Version: v1.33.0"), "{out}");

    let out = fx.ok(k, &["get", "ns"]).await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(ns), "{out}");
    }
    assert!(out.starts_with("NAME") && out.contains("Active"), "{out}");
    fx.ok(k, &["create", "ns", "team-a"]).await;
    let err = fx.fails(k, &["create", "ns", "team-a"]).await;
    assert!(err.contains("AlreadyExists"), "{err}");

    let out = fx.ok(k, &["api-resources"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("pods") && l.contains("po ")),
        "{out}"
    );

    // apply, then apply a change: dropped list items and keys go away.
    let file = fx.file("app.yaml", DEPLOYMENT);
    let out = fx
        .ok(k, &["apply", "-f", file.to_str().unwrap_or_default()])
        .await;
    assert!(
        out.contains("deployment.apps/web created") && out.contains("configmap/cfg created"),
        "{out}"
    );
    let changed = DEPLOYMENT
        .replace("nginx:1.25", "nginx:1.26")
        .replace("        - {name: B, value: \"2\"}\n", "")
        .replace("  b: \"2\"\n", "  c: \"3\"\n");
    fx.file("app.yaml", &changed);
    let out = fx.ok(k, &["apply", "-f", "app.yaml"]).await;
    assert!(
        out.contains("deployment.apps/web configured") && out.contains("configmap/cfg configured"),
        "{out}"
    );
    let d = json(&fx.ok(k, &["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["metadata"]["generation"], 2);
    let cm = json(&fx.ok(k, &["get", "cm", "cfg", "-o", "json"]).await);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "c": "3"}));

    let out = fx.ok(k, &["get", "deploy", "-o", "wide"]).await;
    let header = out.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ] {
        assert!(header.contains(col), "{out}");
    }
    assert!(
        out.contains("0/2") && out.contains("nginx:1.26") && out.contains("app=web"),
        "{out}"
    );
    let out = fx.ok(k, &["get", "cm", "cfg", "-o", "yaml"]).await;
    assert!(
        out.contains("kind: ConfigMap") && out.contains("resourceVersion:"),
        "{out}"
    );

    fx.ok(k, &["label", "deploy", "web", "tier=front"]).await;
    fx.ok(k, &["annotate", "deploy", "web", "note=hello"]).await;
    let out = fx.ok(k, &["scale", "deploy", "web", "--replicas=3"]).await;
    assert!(out.contains("scaled"), "{out}");
    fx.ok(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"paused":true}}"#,
        ],
    )
    .await;
    fx.ok(
        k,
        &[
            "patch",
            "cm",
            "cfg",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/z","value":"26"}]"#,
        ],
    )
    .await;
    let d = json(&fx.ok(k, &["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["paused"], true);
    assert_eq!(d["metadata"]["labels"]["tier"], "front");
    assert_eq!(d["metadata"]["annotations"]["note"], "hello");
    let out = fx
        .ok(
            k,
            &["get", "deploy", "-l", "tier in (front,back)", "-o", "name"],
        )
        .await;
    assert_eq!(out.trim(), "deployment.apps/web");
    let out = fx
        .ok(k, &["get", "deploy", "-l", "tier!=front", "-o", "name"])
        .await;
    assert_eq!(out.trim(), "");
    let out = fx
        .ok(k, &["get", "cm", "cfg", "-o", "jsonpath={.data.z}"])
        .await;
    assert_eq!(out, "26");

    // Typed create commands (protobuf bodies from 1.32+ clients).
    fx.ok(
        k,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
            "--from-literal=pw=s3cret",
        ],
    )
    .await;
    let s = json(&fx.ok(k, &["get", "secret", "creds", "-o", "json"]).await);
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    assert_eq!(s["type"], "Opaque");
    let f = fx.file("settings.conf", "key=value\n");
    fx.ok(
        k,
        &[
            "create",
            "configmap",
            "fromfile",
            &format!("--from-file={}", f.display()),
        ],
    )
    .await;
    let out = fx
        .ok(
            k,
            &[
                "get",
                "cm",
                "fromfile",
                "-o",
                "jsonpath={.data.settings\\.conf}",
            ],
        )
        .await;
    assert_eq!(out, "key=value\n");
    let out = fx.ok(k, &["get", "secrets"]).await;
    assert!(
        out.lines().next().unwrap_or_default().contains("TYPE")
            && out.contains("creds")
            && out.contains("Opaque"),
        "{out}"
    );

    // A pod: defaults and the table columns.
    let pod = fx.file("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  namespace: team-a\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests: {cpu: 0.5, memory: 1.5Gi}\n      limits: {cpu: 1000m}\n");
    fx.ok(k, &["apply", "-f", pod.to_str().unwrap_or_default()])
        .await;
    let out = fx
        .ok(k, &["get", "pods", "-n", "team-a", "-o", "wide"])
        .await;
    let header = out.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ] {
        assert!(header.contains(col), "{out}");
    }
    assert!(
        out.contains("p1") && out.contains("0/1") && out.contains("Pending"),
        "{out}"
    );
    let p = json(
        &fx.ok(k, &["get", "pod", "p1", "-n", "team-a", "-o", "json"])
            .await,
    );
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "Burstable");
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "1536Mi"
    );
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1"
    );
    // Not scheduled (no agent here): no log yet, and nowhere to exec.
    assert_eq!(fx.ok(k, &["logs", "p1", "-n", "team-a"]).await, "");
    let err = fx
        .fails(k, &["exec", "p1", "-n", "team-a", "--", "true"])
        .await;
    assert!(
        err.contains("pod p1 does not have a host assigned"),
        "{err}"
    );

    // Errors as the real server words them.
    let bad = fx.file(
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n",
    );
    let err = fx
        .fails(k, &["create", "-f", bad.to_str().unwrap_or_default()])
        .await;
    assert!(
        err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );
    let err = fx.fails(k, &["get", "deploy", "nope"]).await;
    assert!(err.contains("deployments.apps \"nope\" not found"), "{err}");
    let err = fx
        .fails(
            k,
            &[
                "create",
                "cm",
                "x",
                "-n",
                "missing-ns",
                "--from-literal=a=b",
            ],
        )
        .await;
    assert!(err.contains("namespaces \"missing-ns\" not found"), "{err}");

    fx.ok(k, &["delete", "deploy", "web"]).await;
    fx.ok(k, &["delete", "cm", "cfg", "fromfile"]).await;
    let out = fx.ok(k, &["get", "deploy,cm", "-o", "name"]).await;
    assert!(!out.contains("web") && !out.contains("cfg"), "{out}");
    // Namespaces wait for their finalizer (no namespace controller yet), as on a real
    // server without a controller manager.
    fx.ok(k, &["delete", "ns", "team-a", "--wait=false"]).await;
    let out = fx.ok(k, &["get", "ns", "team-a"]).await;
    assert!(out.contains("Terminating"), "{out}");
    let err = fx
        .fails(
            k,
            &["create", "cm", "late", "-n", "team-a", "--from-literal=a=b"],
        )
        .await;
    assert!(err.contains("being terminated"), "{err}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_client_1_27() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_OLD;
    let out = fx.ok(k, &["version"]).await;
    assert!(
        out.contains("Server Version") && out.contains("v1.33.0"),
        "{out}"
    );
    let file = fx.file("app.yaml", DEPLOYMENT);
    // kubectl 1.27/1.28 learn from OpenAPI v2 (protobuf) that the server validates fields.
    fx.ok(k, &["apply", "-f", file.to_str().unwrap_or_default()])
        .await;
    fx.file(
        "app.yaml",
        &DEPLOYMENT.replace("replicas: 2", "replicas: 4"),
    );
    fx.ok(k, &["apply", "-f", "app.yaml"]).await;
    let bad = fx.file(
        "bad.yaml",
        &DEPLOYMENT.replace("spec:\n  replicas: 2", "spec:\n  bogus: 1\n  replicas: 2"),
    );
    let err = fx
        .fails(k, &["apply", "-f", bad.to_str().unwrap_or_default()])
        .await;
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    let out = fx
        .ok(
            k,
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        )
        .await;
    assert_eq!(out, "4");
    fx.ok(k, &["scale", "deploy", "web", "--replicas=1"]).await;
    let out = fx.ok(k, &["get", "deploy"]).await;
    assert!(out.contains("0/1"), "{out}");
    fx.ok(
        k,
        &["create", "secret", "generic", "s", "--from-literal=a=b"],
    )
    .await;
    fx.ok(k, &["create", "deployment", "d2", "--image=nginx"])
        .await;
    let out = fx.ok(k, &["get", "all"]).await;
    assert!(
        out.contains("deployment.apps/web")
            && out.contains("deployment.apps/d2")
            && out.contains("service/kubernetes"),
        "{out}"
    );
    fx.ok(k, &["delete", "-f", "app.yaml"]).await;
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_client_1_33_typed_creates() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    fx.ok(
        k,
        &[
            "create",
            "deployment",
            "d",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
    )
    .await;
    fx.ok(
        k,
        &["create", "service", "clusterip", "svc", "--tcp=80:8080"],
    )
    .await;
    fx.ok(k, &["create", "serviceaccount", "robot"]).await;
    fx.ok(
        k,
        &[
            "create",
            "job",
            "once",
            "--image=busybox",
            "--",
            "echo",
            "hi",
        ],
    )
    .await;
    fx.ok(
        k,
        &[
            "create",
            "cronjob",
            "tick",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ],
    )
    .await;
    let d = json(&fx.ok(k, &["get", "deploy", "d", "-o", "json"]).await);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    let out = fx.ok(k, &["get", "svc", "svc", "-o", "wide"]).await;
    assert!(
        out.contains("ClusterIP") && out.contains("10.43.") && out.contains("80/TCP"),
        "{out}"
    );
    fx.ok(
        k,
        &[
            "patch",
            "svc",
            "svc",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ],
    )
    .await;
    let svc = json(&fx.ok(k, &["get", "svc", "svc", "-o", "json"]).await);
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap_or_default();
    assert!((30000..=32767).contains(&node_port), "{svc}");
    fx.ok(
        k,
        &[
            "patch",
            "svc",
            "svc",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#,
        ],
    )
    .await;
    let svc = json(&fx.ok(k, &["get", "svc", "svc", "-o", "json"]).await);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");
    let out = fx.ok(k, &["get", "jobs,cronjobs"]).await;
    assert!(
        out.contains("job.batch/once")
            && out.contains("cronjob.batch/tick")
            && out.contains("*/5 * * * *"),
        "{out}"
    );
    let out = fx.ok(k, &["get", "deploy", "d", "-o", "yaml"]).await;
    assert!(out.contains("progressDeadlineSeconds: 600"), "{out}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_events() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(KUBECTL_NEW)
        .arg("--kubeconfig")
        .arg(&fx.kubeconfig)
        .arg("--cache-dir")
        .arg(fx.cache_dir.path())
        .args(["get", "cm", "-w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // Give the watch a moment to start, then make a change.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    fx.ok(
        KUBECTL_NEW,
        &["create", "cm", "watched", "--from-literal=a=b"],
    )
    .await;
    let seen = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("watched") {
                return Some(line);
            }
        }
        None
    })
    .await
    .expect("watch event within 20s");
    let line = seen.expect("watch output");
    assert!(line.starts_with("watched") && line.contains('1'), "{line}");
    let _ = child.kill().await;

    // A raw watch from a resourceVersion, with the JSON event framing.
    let list = json(
        &fx.ok(
            KUBECTL_NEW,
            &["get", "--raw", "/api/v1/namespaces/default/configmaps"],
        )
        .await,
    );
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    fx.ok(KUBECTL_NEW, &["delete", "cm", "watched"]).await;
    let out = fx
        .ok(KUBECTL_NEW, &["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2")])
        .await;
    let ev = json(out.lines().next().unwrap_or_default());
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["name"], "watched");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_objects_and_certs() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let ca = fx
        .server
        .as_ref()
        .map(|s| s.ca_cert_pem.clone())
        .unwrap_or_default();
    let token = fx
        .server
        .as_ref()
        .map(|s| s.token.clone())
        .unwrap_or_default();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    fx.ok(KUBECTL_NEW, &["create", "cm", "keep", "--from-literal=a=b"])
        .await;
    fx.stop().await;

    let mut cfg = config(fx.data_dir.path());
    cfg.write_kubeconfig = Some(fx.kubeconfig.clone());
    let server = skiff_apiserver::start(cfg).await.expect("restart");
    assert_eq!(server.ca_cert_pem, ca);
    assert_eq!(server.token, token);
    fx.server = Some(server);
    let out = fx
        .ok(
            KUBECTL_NEW,
            &["get", "cm", "keep", "-o", "jsonpath={.data.a}"],
        )
        .await;
    assert_eq!(out, "b");
    let out = fx.ok(KUBECTL_NEW, &["get", "ns"]).await;
    assert_eq!(out.lines().count(), 5, "{out}");
    // The kubernetes service's endpoints follow the server's (new) port.
    let port = fx.port().to_string();
    let out = fx
        .ok(
            KUBECTL_NEW,
            &[
                "get",
                "endpoints",
                "kubernetes",
                "-o",
                "jsonpath={.subsets[0].ports[0].port}",
            ],
        )
        .await;
    assert_eq!(out, port);
    let out = fx.ok(KUBECTL_NEW, &["get", "endpointslices"]).await;
    assert!(out.contains("IPv4") && out.contains(&port), "{out}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_field_descriptions() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    for k in [KUBECTL_NEW, KUBECTL_OLD] {
        let out = fx.ok(k, &["explain", "pods.spec.containers"]).await;
        assert!(out.contains("KIND:") && out.contains("Pod"), "{k}: {out}");
        assert!(
            out.contains("A single application container that you want to run within a pod"),
            "{k}: {out}"
        );
        assert!(
            out.contains("image") && out.contains("<string>"),
            "{k}: {out}"
        );
        assert!(
            out.contains("env") && out.contains("<[]EnvVar>"),
            "{k}: {out}"
        );
        let out = fx
            .ok(
                k,
                &[
                    "explain",
                    "deployments.spec.replicas",
                    "--api-version=apps/v1",
                ],
            )
            .await;
        assert!(out.contains("<integer>"), "{k}: {out}");
        assert!(out.contains("Number of desired pods"), "{k}: {out}");
    }
    // Explain from the OpenAPI v2 document (protobuf).
    let out = fx
        .ok(
            KUBECTL_OLD,
            &[
                "explain",
                "pods.spec.containers",
                "--output=plaintext-openapiv2",
            ],
        )
        .await;
    assert!(
        out.contains("A single application container that you want to run within a pod"),
        "{out}"
    );
    // v2 names referenced types Object, as the real server's document makes kubectl do.
    assert!(
        out.contains("RESOURCE: containers <[]Object>") && out.contains("<string>"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("env") && l.contains("<[]Object>")),
        "{out}"
    );
    fx.stop().await;
}
