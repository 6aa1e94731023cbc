//! Server-side apply and managed fields with the real kubectl, YAML request bodies.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
"#;

/// The managed-fields entries of an object (from `-o json --show-managed-fields`).
async fn managed(fx: &Fixture, k: &str, what: &[&str]) -> Vec<Value> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    let obj = json(&fx.ok(k, &args).await);
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(list: &'a [Value], manager: &str, op: &str) -> Option<&'a Value> {
    list.iter()
        .find(|e| e["manager"] == manager && e["operation"] == op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_create_conflict_force_and_removal() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    let file = fx.file("web.yaml", WEB);
    let path = file.to_str().unwrap_or_default();

    // Apply creates the object; kubectl owns exactly what it applied.
    let out = fx.ok(k, &["apply", "--server-side", "-f", path]).await;
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let list = managed(&fx, k, &["deploy", "web"]).await;
    let mine = entry(&list, "kubectl", "Apply").unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(mine["apiVersion"], "apps/v1");
    assert_eq!(mine["fieldsType"], "FieldsV1");
    assert!(
        mine["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{mine}"
    );
    let f = &mine["fieldsV1"];
    assert_eq!(f["f:spec"]["f:replicas"], serde_json::json!({}));
    assert_eq!(f["f:spec"]["f:selector"], serde_json::json!({}), "{f}");
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(c["."], serde_json::json!({}), "{f}");
    assert_eq!(c["f:image"], serde_json::json!({}), "{f}");
    assert!(
        c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"].is_object(),
        "{f}"
    );
    assert!(
        c["f:env"]["k:{\"name\":\"B\"}"]["f:value"].is_object(),
        "{f}"
    );
    // Defaults the server filled in are nobody's.
    assert!(c.get("f:imagePullPolicy").is_none(), "{f}");

    // Plain -o yaml hides them (kubectl does); --show-managed-fields shows them.
    let plain = fx.ok(k, &["get", "deploy", "web", "-o", "yaml"]).await;
    assert!(!plain.contains("managedFields"), "{plain}");
    let shown = fx
        .ok(
            k,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "yaml",
                "--show-managed-fields",
            ],
        )
        .await;
    assert!(
        shown.contains("managedFields:")
            && shown.contains("manager: kubectl")
            && shown.contains("operation: Apply"),
        "{shown}"
    );

    // Another manager changes replicas: it takes the field over (an Update).
    fx.ok(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ],
    )
    .await;
    let list = managed(&fx, k, &["deploy", "web"]).await;
    let patcher = entry(&list, "kubectl-patch", "Update").unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(
        patcher["fieldsV1"],
        serde_json::json!({"f:spec": {"f:replicas": {}}})
    );
    let mine = entry(&list, "kubectl", "Apply").unwrap_or_else(|| panic!("{list:?}"));
    assert!(
        mine["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{mine}"
    );

    // Re-applying replicas: 2 conflicts with it (the real message) ...
    let err = fx.fails(k, &["apply", "--server-side", "-f", path]).await;
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    let d = json(&fx.ok(k, &["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(d["spec"]["replicas"], 5);
    // ... the same value does not (shared ownership) ...
    let same = fx.file("same.yaml", &WEB.replace("replicas: 2", "replicas: 5"));
    fx.ok(
        k,
        &[
            "apply",
            "--server-side",
            "-f",
            same.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let list = managed(&fx, k, &["deploy", "web"]).await;
    assert!(
        entry(&list, "kubectl-patch", "Update").is_some(),
        "{list:?}"
    );
    // ... and --force-conflicts takes it.
    fx.ok(
        k,
        &["apply", "--server-side", "--force-conflicts", "-f", path],
    )
    .await;
    let d = json(&fx.ok(k, &["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(d["spec"]["replicas"], 2);
    let list = managed(&fx, k, &["deploy", "web"]).await;
    assert!(
        entry(&list, "kubectl-patch", "Update").is_none(),
        "{list:?}"
    );

    // Fields dropped from the configuration go; fields others own stay.
    fx.ok(k, &["label", "deploy", "web", "owner=ops"]).await;
    let list = managed(&fx, k, &["deploy", "web"]).await;
    assert!(
        entry(&list, "kubectl-label", "Update").is_some(),
        "{list:?}"
    );
    let smaller = WEB
        .replace("{app: web, tier: front}", "{app: web}")
        .replace("        - {name: B, value: \"2\"}\n", "");
    let smaller = fx.file("smaller.yaml", &smaller);
    let smaller = smaller.to_str().unwrap_or_default();

    // kubectl diff --server-side shows what the apply would change (exit 1: differences).
    let (ok, out, err) = fx.run(k, &["diff", "--server-side", "-f", smaller]).await;
    assert!(!ok && err.is_empty(), "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with('-') && l.contains("tier: front")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with('-') && l.contains("name: B")),
        "{out}"
    );

    // A server dry run changes nothing.
    let out = fx
        .ok(
            k,
            &["apply", "--server-side", "--dry-run=server", "-f", smaller],
        )
        .await;
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    let d = json(&fx.ok(k, &["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(d["metadata"]["labels"]["tier"], "front");

    fx.ok(k, &["apply", "--server-side", "-f", smaller]).await;
    let d = json(&fx.ok(k, &["get", "deploy", "web", "-o", "json"]).await);
    let labels = &d["metadata"]["labels"];
    assert!(labels.get("tier").is_none(), "{labels}");
    assert_eq!(labels["owner"], "ops");
    assert_eq!(labels["app"], "web");
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(env.len(), 1, "{env:?}");
    assert_eq!(env[0]["name"], "A");
    // Server-filled defaults survive the apply.
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );

    // A Service: ports merge by (port, protocol) with the defaulted protocol; the
    // allocated cluster IP stays.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: https, port: 443}\n";
    fx.file("svc.yaml", svc);
    fx.ok(k, &["apply", "--server-side", "-f", "svc.yaml"])
        .await;
    let before = json(&fx.ok(k, &["get", "svc", "web", "-o", "json"]).await);
    fx.file(
        "svc.yaml",
        &svc.replace("targetPort: 8080", "targetPort: 9090")
            .replace("  - {name: https, port: 443}\n", ""),
    );
    fx.ok(k, &["apply", "--server-side", "-f", "svc.yaml"])
        .await;
    let after = json(&fx.ok(k, &["get", "svc", "web", "-o", "json"]).await);
    assert_eq!(before["spec"]["clusterIP"], after["spec"]["clusterIP"]);
    assert_eq!(
        after["spec"]["ports"],
        serde_json::json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090}]),
        "{after}"
    );

    // kubectl scale writes through the scale subresource: its manager says so, and an
    // apply that would undo it conflicts with it.
    fx.ok(k, &["scale", "deploy", "web", "--replicas=3"]).await;
    let list = managed(&fx, k, &["deploy", "web"]).await;
    let scaler = list
        .iter()
        .find(|e| e["subresource"] == "scale")
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(scaler["operation"], "Update");
    assert_eq!(
        scaler["fieldsV1"],
        serde_json::json!({"f:spec": {"f:replicas": {}}})
    );
    let err = fx
        .fails(k, &["apply", "--server-side", "-f", smaller])
        .await;
    assert!(
        err.contains(r#"with subresource "scale" using apps/v1: .spec.replicas"#),
        "{err}"
    );

    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_migrates_to_server_side() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    for (k, name) in [(KUBECTL_NEW, "new"), (KUBECTL_OLD, "old")] {
        migrate(&fx, k, name).await;
    }
    fx.stop().await;
}

/// Client-side apply, then server-side apply of ConfigMap `name` with client `k`.
async fn migrate(fx: &Fixture, k: &str, name: &str) {
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: \"1\"\n  b: \"2\"\n"
    );
    let file = format!("{name}.yaml");
    fx.file(&file, &cm);
    fx.ok(k, &["apply", "-f", &file]).await;
    let list = managed(fx, k, &["cm", name]).await;
    let csa =
        entry(&list, "kubectl-client-side-apply", "Update").unwrap_or_else(|| panic!("{list:?}"));
    let f = &csa["fieldsV1"];
    assert!(f["f:data"]["f:b"].is_object(), "{f}");
    assert!(
        f["f:metadata"]["f:annotations"]["f:kubectl.kubernetes.io/last-applied-configuration"]
            .is_object(),
        "{f}"
    );

    // Another manager changing a field client-side apply set conflicts.
    fx.file("other.yaml", &cm.replace("b: \"2\"", "b: \"3\""));
    let err = fx
        .fails(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager=other",
                "-f",
                "other.yaml",
            ],
        )
        .await;
    assert!(
        err.contains(r#"conflict with "kubectl-client-side-apply" using v1: .data.b"#),
        "{err}"
    );

    // kubectl apply --server-side upgrades client-side apply's fields to its own: then the
    // fields dropped from the configuration go.
    fx.file(&file, &cm.replace("  b: \"2\"\n", ""));
    fx.ok(k, &["apply", "--server-side", "-f", &file]).await;
    let list = managed(fx, k, &["cm", name]).await;
    assert!(
        entry(&list, "kubectl-client-side-apply", "Update").is_none(),
        "{list:?}"
    );
    assert!(entry(&list, "kubectl", "Apply").is_some(), "{list:?}");
    fx.ok(k, &["apply", "--server-side", "-f", &file]).await;
    let d = json(&fx.ok(k, &["get", "cm", name, "-o", "json"]).await);
    assert_eq!(d["data"], serde_json::json!({"a": "1"}), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_request_bodies() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, "yaml-token,yamler,1002,\"system:masters\"\n")
            .expect("write token file");
        cfg.token_auth_file = Some(file);
    })
    .await;
    let t = "yaml-token";
    let cms = "/api/v1/namespaces/default/configmaps";

    // Create and update with application/yaml.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yc\n  labels:\n    app: yc\ndata:\n  n: \"1\"\n  text: |\n    two\n    lines\n";
    let (code, body) = fx.curl(t, "POST", cms, "application/yaml", cm).await;
    assert_eq!(code, 201, "{body}");
    let created = json(&body);
    assert_eq!(created["data"]["text"], "two\nlines\n");
    // The manager of a request without fieldManager is its user agent's program.
    let mf = &created["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "curl", "{created}");
    assert_eq!(mf["operation"], "Update");
    // A pod's fields, defaults included, are its creator's; what admission adds (the
    // service-account token volume) belongs to no manager, as in kube-apiserver.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: yp\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let (code, body) = fx
        .curl(
            t,
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/yaml",
            pod,
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let created = json(&body);
    assert!(created["spec"]["volumes"][0]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("kube-api-access-")));
    let fields = &created["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(fields.get("f:dnsPolicy").is_some(), "{fields}");
    assert!(fields.get("f:volumes").is_none(), "{fields}");
    let put = cm.replace("n: \"1\"", "n: \"2\"");
    let (code, body) = fx
        .curl(
            t,
            "PUT",
            &format!("{cms}/yc"),
            "application/yaml; charset=utf-8",
            &put,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["data"]["n"], "2");
    let (code, body) = fx
        .curl(t, "POST", cms, "application/yaml", "data: [unclosed\n")
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = fx.curl(t, "POST", cms, "text/plain", "x").await;
    assert_eq!(code, 415, "{body}");

    // Server-side apply in real YAML; fieldManager is required.
    let apply =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yc\ndata:\n  n: \"3\"  # a comment\n";
    let patch = "application/apply-patch+yaml";
    let (code, body) = fx
        .curl(t, "PATCH", &format!("{cms}/yc"), patch, apply)
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("fieldManager"), "{body}");
    let (code, body) = fx
        .curl(
            t,
            "PATCH",
            &format!("{cms}/yc?fieldManager=tool"),
            patch,
            apply,
        )
        .await;
    assert_eq!(code, 409, "{body}");
    let status = json(&body);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"curl\" using v1: .data.n"
    );
    assert_eq!(status["details"]["causes"][0]["field"], ".data.n");
    let (code, body) = fx
        .curl(
            t,
            "PATCH",
            &format!("{cms}/yc?fieldManager=tool&force=true"),
            patch,
            apply,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["data"]["n"], "3");
    // Apply creates a missing object (201) and refuses a body of another name.
    let (code, body) = fx
        .curl(
            t,
            "PATCH",
            &format!("{cms}/z?fieldManager=tool"),
            patch,
            &apply.replace("name: yc", "name: z"),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = fx
        .curl(
            t,
            "PATCH",
            &format!("{cms}/w?fieldManager=tool"),
            patch,
            apply,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let out = fx
        .ok(KUBECTL_NEW, &["get", "cm", "z", "-o", "jsonpath={.data.n}"])
        .await;
    assert_eq!(out, "3");
    fx.stop().await;
}
