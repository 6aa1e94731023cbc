//! API semantics through the real kubectl: conflicts, subresources, dry-run, generateName,
//! finalizers, paging, authentication, size limits and expired watches.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    let file = fx.file("app.yaml", DEPLOYMENT);
    fx.ok(k, &["apply", "-f", file.to_str().unwrap_or_default()])
        .await;

    // Optimistic concurrency: a replace with a stale resourceVersion is a 409.
    let stale = fx.ok(k, &["get", "deploy", "web", "-o", "yaml"]).await;
    fx.ok(k, &["label", "deploy", "web", "x=y"]).await;
    let stale_file = fx.file("stale.yaml", &stale);
    let err = fx
        .fails(
            k,
            &["replace", "-f", stale_file.to_str().unwrap_or_default()],
        )
        .await;
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );

    // Status subresource: status changes only through it; generation counts spec changes.
    fx.ok(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":2,"readyReplicas":1},"spec":{"replicas":9}}"#,
        ],
    )
    .await;
    fx.ok(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"status":{"readyReplicas":7}}"#,
        ],
    )
    .await;
    let d = json(&fx.ok(k, &["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(d["status"]["readyReplicas"], 1);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);
    let out = fx.ok(k, &["get", "deploy", "web"]).await;
    assert!(out.contains("1/2"), "{out}");
    fx.ok(k, &["scale", "deploy", "web", "--replicas=3"]).await;
    let scale = json(
        &fx.ok(
            k,
            &[
                "get",
                "--raw",
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
            ],
        )
        .await,
    );
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");

    // Server-side dry run stores nothing.
    fx.ok(
        k,
        &[
            "create",
            "cm",
            "dry",
            "--from-literal=a=b",
            "--dry-run=server",
        ],
    )
    .await;
    let err = fx.fails(k, &["get", "cm", "dry"]).await;
    assert!(err.contains("not found"), "{err}");

    // generateName.
    let gen = fx.file(
        "gen.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n",
    );
    let out = fx
        .ok(k, &["create", "-f", gen.to_str().unwrap_or_default()])
        .await;
    assert!(
        out.starts_with("configmap/gen-")
            && out.trim().len() == "configmap/gen-xxxxx created".len(),
        "{out}"
    );

    // Finalizers hold a deletion until they are removed.
    let fin = fx.file("fin.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fin\n  finalizers: [\"example.com/hold\"]\n");
    fx.ok(k, &["apply", "-f", fin.to_str().unwrap_or_default()])
        .await;
    fx.ok(k, &["delete", "cm", "fin", "--wait=false"]).await;
    let ts = fx
        .ok(
            k,
            &[
                "get",
                "cm",
                "fin",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ],
        )
        .await;
    assert!(!ts.is_empty());
    fx.ok(
        k,
        &[
            "patch",
            "cm",
            "fin",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    )
    .await;
    let err = fx.fails(k, &["get", "cm", "fin"]).await;
    assert!(err.contains("not found"), "{err}");

    // Paging with limit + continue, and label selectors.
    for i in 0..5 {
        fx.ok(
            k,
            &["create", "cm", &format!("page{i}"), "--from-literal=a=b"],
        )
        .await;
        fx.ok(
            k,
            &[
                "label",
                "cm",
                &format!("page{i}"),
                &format!("n={i}"),
                "group=pages",
            ],
        )
        .await;
    }
    let out = fx
        .ok(
            k,
            &[
                "get",
                "cm",
                "-l",
                "group=pages",
                "--chunk-size=2",
                "-o",
                "name",
            ],
        )
        .await;
    assert_eq!(out.lines().count(), 5, "{out}");
    let page = json(
        &fx.ok(
            k,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/configmaps?labelSelector=group%3Dpages&limit=2",
            ],
        )
        .await,
    );
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let cont = page["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!cont.is_empty());
    let rest = json(&fx.ok(k, &["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?labelSelector=group%3Dpages&limit=10&continue={cont}")]).await);
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(3));
    let out = fx
        .ok(k, &["get", "cm", "-l", "n notin (0,1),group", "-o", "name"])
        .await;
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = fx
        .ok(
            k,
            &[
                "get",
                "cm",
                "--field-selector",
                "metadata.name=page3",
                "-o",
                "name",
            ],
        )
        .await;
    assert_eq!(out.trim(), "configmap/page3");
    let err = fx
        .fails(k, &["get", "cm", "--field-selector", "data.a=b"])
        .await;
    assert!(err.contains("field label not supported"), "{err}");
    fx.ok(k, &["delete", "cm", "-l", "group=pages"]).await;
    let out = fx
        .ok(k, &["get", "cm", "-l", "group=pages", "-o", "name"])
        .await;
    assert_eq!(out.trim(), "");

    // Unknown fields: kubectl's default (Strict) is refused, Warn warns and drops them.
    let unknown = fx.file(
        "unknown.yaml",
        &DEPLOYMENT
            .split("---")
            .next()
            .unwrap_or_default()
            .replace("name: web\n", "name: web-u\n")
            .replace("spec:\n  replicas: 2", "spec:\n  bogus: 1\n  replicas: 2"),
    );
    let err = fx
        .fails(k, &["apply", "-f", unknown.to_str().unwrap_or_default()])
        .await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.bogus\""),
        "{err}"
    );
    let (ok, _, err) = fx
        .run(
            k,
            &[
                "apply",
                "--validate=warn",
                "-f",
                unknown.to_str().unwrap_or_default(),
            ],
        )
        .await;
    assert!(ok && err.contains("unknown field \"spec.bogus\""), "{err}");
    let d = json(&fx.ok(k, &["get", "deploy", "web-u", "-o", "json"]).await);
    assert!(d["spec"].get("bogus").is_none());

    // A list "not older than" a future resourceVersion times out with 504.
    let err = fx
        .fails(
            k,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/configmaps?resourceVersion=999999",
            ],
        )
        .await;
    assert!(err.contains("Too large resource version"), "{err}");

    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_limits() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, "s3cr3t-token,alice,1001,\"dev,ops\"\n").expect("write token file");
        cfg.token_auth_file = Some(file);
    })
    .await;
    let k = KUBECTL_NEW;
    // A kubeconfig with the CA and an unknown bearer token instead of the client certificate.
    let anon_path = fx.token_kubeconfig("anon", "not-a-valid-token");
    let (ok, out, err) = fx.run_with(&anon_path, k, &["get", "ns"]).await;
    assert!(
        !ok && err.contains("You must be logged in to the server"),
        "{out}{err}"
    );
    let (_, out, _) = fx
        .run_with(&anon_path, k, &["get", "--raw", "/version"])
        .await;
    assert!(out.contains("v1.33.0"), "{out}");

    // A token from the static token file authenticates as its user and groups.
    let alice = fx.token_kubeconfig("alice", "s3cr3t-token");
    let (_, text, err) = fx.run_with(&alice, k, &["auth", "whoami"]).await;
    assert!(
        text.contains("alice") && text.contains("dev") && text.contains("ops"),
        "{text}{err}"
    );

    // Bodies over 3 MiB are refused with 413.
    let big = fx.work_dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(4 * 1024 * 1024)).expect("write");
    let err = fx
        .fails(
            k,
            &[
                "create",
                "cm",
                "big",
                &format!("--from-file={}", big.display()),
            ],
        )
        .await;
    assert!(
        err.contains("too large") || err.contains("RequestEntityTooLarge"),
        "{err}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_revision_expires() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    for i in 0..3 {
        fx.ok(
            KUBECTL_NEW,
            &["create", "cm", &format!("c{i}"), "--from-literal=a=b"],
        )
        .await;
    }
    fx.stop().await;
    {
        let store = fx.open_store().await;
        let rev = store.current_revision().await.expect("revision");
        store.compact(rev).await.expect("compact");
    }
    let mut cfg = config(fx.data_dir.path());
    cfg.write_kubeconfig = Some(fx.kubeconfig.clone());
    fx.server = Some(skiff_apiserver::start(cfg).await.expect("restart"));
    let out = fx
        .ok(
            KUBECTL_NEW,
            &[
                "get",
                "--raw",
                "/api/v1/configmaps?watch=1&resourceVersion=2",
            ],
        )
        .await;
    let ev = json(out.lines().next().unwrap_or_default());
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    // A list still works, and a watch from "now" starts with the current objects.
    let out = fx
        .ok(
            KUBECTL_NEW,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1",
            ],
        )
        .await;
    // (and the namespace's kube-root-ca.crt)
    assert_eq!(
        out.lines().filter(|l| l.contains("\"ADDED\"")).count(),
        4,
        "{out}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_binding_deletion_and_bookmarks() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    let out = fx.ok(k, &["auth", "whoami"]).await;
    assert!(
        out.contains("system:admin") && out.contains("system:masters"),
        "{out}"
    );
    let out = fx.ok(k, &["auth", "can-i", "create", "pods"]).await;
    assert_eq!(out.trim(), "yes");
    let out = fx.ok(k, &["get", "priorityclasses,storageclasses"]).await;
    assert!(
        out.contains("system-node-critical")
            && out.contains("2000001000")
            && out.contains("local-path (default)"),
        "{out}"
    );

    // pods/binding sets spec.nodeName once.
    let pod = fx.file("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pb\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n");
    fx.ok(k, &["apply", "-f", pod.to_str().unwrap_or_default()])
        .await;
    let binding = fx.file("binding.json", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"pb"},"target":{"kind":"Node","name":"node-1"}}"#);
    let path = "/api/v1/namespaces/default/pods/pb/binding";
    fx.ok(
        k,
        &[
            "create",
            "--raw",
            path,
            "-f",
            binding.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let err = fx
        .fails(
            k,
            &[
                "create",
                "--raw",
                path,
                "-f",
                binding.to_str().unwrap_or_default(),
            ],
        )
        .await;
    assert!(err.contains("already assigned"), "{err}");
    let out = fx.ok(k, &["get", "pod", "pb", "-o", "wide"]).await;
    assert!(out.contains("node-1"), "{out}");
    // A bound pod is deleted gracefully (the node agent finishes it), unless forced.
    fx.ok(k, &["delete", "pod", "pb", "--wait=false"]).await;
    let out = fx.ok(k, &["get", "pod", "pb"]).await;
    assert!(out.contains("Terminating"), "{out}");
    fx.ok(k, &["delete", "pod", "pb", "--grace-period=0", "--force"])
        .await;
    let err = fx.fails(k, &["get", "pod", "pb"]).await;
    assert!(err.contains("not found"), "{err}");

    // Foreground deletion leaves the object with the foregroundDeletion finalizer.
    fx.ok(k, &["create", "deployment", "fg", "--image=nginx"])
        .await;
    fx.ok(
        k,
        &[
            "delete",
            "deployment",
            "fg",
            "--cascade=foreground",
            "--wait=false",
        ],
    )
    .await;
    let d = json(&fx.ok(k, &["get", "deploy", "fg", "-o", "json"]).await);
    assert_eq!(
        d["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    assert!(d["metadata"]["deletionTimestamp"].is_string());

    // Admission: Priority and DefaultStorageClass.
    let crit = fx.file("crit.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: crit\nspec:\n  priorityClassName: system-node-critical\n  containers:\n  - name: c\n    image: busybox:1.36\n");
    fx.ok(k, &["apply", "-f", crit.to_str().unwrap_or_default()])
        .await;
    let out = fx
        .ok(
            k,
            &["get", "pod", "crit", "-o", "jsonpath={.spec.priority}"],
        )
        .await;
    assert_eq!(out, "2000001000");
    let nope = fx.file("nope.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nope\nspec:\n  priorityClassName: no-such-class\n  containers:\n  - name: c\n    image: busybox:1.36\n");
    let err = fx
        .fails(k, &["apply", "-f", nope.to_str().unwrap_or_default()])
        .await;
    assert!(
        err.contains("no PriorityClass with name no-such-class was found"),
        "{err}"
    );
    let pvc = fx.file("pvc.yaml", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {storage: 1.5Gi}\n");
    fx.ok(k, &["apply", "-f", pvc.to_str().unwrap_or_default()])
        .await;
    let claim = json(&fx.ok(k, &["get", "pvc", "data", "-o", "json"]).await);
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1536Mi");
    assert_eq!(claim["status"]["phase"], "Pending");

    // core/v1 and events.k8s.io/v1 Events: one stored object, two APIs.
    let ev = fx.file("ev.yaml", "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: pulled\neventTime: \"2026-01-01T00:00:00.000000Z\"\nregarding: {kind: Pod, name: p1, namespace: default}\nreason: Pulled\nnote: pulled the image\ntype: Normal\naction: Pull\nreportingController: kubelet\nreportingInstance: node-1\n");
    fx.ok(k, &["apply", "-f", ev.to_str().unwrap_or_default()])
        .await;
    let core = json(
        &fx.ok(k, &["get", "events.v1.", "pulled", "-o", "json"])
            .await,
    );
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "pulled the image");
    assert_eq!(core["involvedObject"]["name"], "p1");
    assert_eq!(core["reportingComponent"], "kubelet");
    let out = fx.ok(k, &["get", "events"]).await;
    assert!(
        out.contains("pod/p1") && out.contains("pulled the image"),
        "{out}"
    );
    let view = json(
        &fx.ok(k, &["get", "events.events.k8s.io", "pulled", "-o", "json"])
            .await,
    );
    assert_eq!(view["note"], "pulled the image");

    // sendInitialEvents: ADDED events, then a bookmark marking their end.
    let out = fx
        .ok(k, &["get", "--raw", "/api/v1/namespaces?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"])
        .await;
    let events: Vec<Value> = out.lines().map(json).collect();
    assert_eq!(
        events.iter().filter(|e| e["type"] == "ADDED").count(),
        4,
        "{out}"
    );
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "BOOKMARK");
    assert_eq!(
        last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // HTTP/1.1 clients, and the serving certificate's DNS names (curl checks them).
    let ca = fx.file(
        "ca.crt",
        &fx.server
            .as_ref()
            .map(|s| s.ca_cert_pem.clone())
            .unwrap_or_default(),
    );
    if std::path::Path::new("/usr/bin/curl").exists() {
        for host in ["localhost", "127.0.0.1"] {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "--http1.1", "--cacert"])
                .arg(&ca)
                .arg(format!("https://{host}:{}/version", fx.port()))
                .output()
                .await
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout);
            assert!(
                body.contains("\"gitVersion\""),
                "{host}: {body} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&ca)
            .arg(format!("https://127.0.0.1:{}/api/v1/namespaces", fx.port()))
            .output()
            .await
            .expect("curl");
        let status = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(status["code"], 401);
    }
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_watches_see_every_change_once_in_order() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    fx.ok(k, &["create", "cm", "a", "--from-literal=x=1"]).await;
    let rv = fx
        .ok(
            k,
            &[
                "get",
                "cm",
                "a",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
        .await;
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=10"
    );
    let first = fx.spawn(k, &["get", "--raw", &path]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    fx.ok(k, &["create", "cm", "b", "--from-literal=x=1"]).await;
    fx.ok(k, &["label", "cm", "a", "touched=yes"]).await;
    // A second watch from the same (now past) resourceVersion, and a selector watch.
    // (Watches end by their timeouts, which leave room for a slow machine.)
    let second = fx.spawn(k, &["get", "--raw", &path]);
    let rv2 = fx
        .ok(
            k,
            &[
                "get",
                "cm",
                "a",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
        .await;
    let selected = format!("/api/v1/namespaces/default/configmaps?watch=1&labelSelector=touched%3Dyes&resourceVersion={rv2}&timeoutSeconds=8");
    let third = fx.spawn(k, &["get", "--raw", &selected]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    fx.ok(k, &["delete", "cm", "b"]).await;
    fx.ok(k, &["label", "cm", "a", "touched-"]).await;
    let summary = |out: String| -> Vec<String> {
        out.lines()
            .map(|l| {
                let v = json(l);
                format!(
                    "{} {}",
                    v["type"].as_str().unwrap_or(""),
                    v["object"]["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let want = vec!["ADDED b", "MODIFIED a", "DELETED b", "MODIFIED a"];
    assert_eq!(summary(first.await.unwrap_or_default()), want);
    assert_eq!(summary(second.await.unwrap_or_default()), want);
    // The selector watch sees the object leave the selection as a DELETED event.
    assert_eq!(summary(third.await.unwrap_or_default()), vec!["DELETED a"]);
    fx.stop().await;
}

/// Lists and watches served by the watch cache: a list right after a write sees it (a
/// consistent read waits for the cache), a namespaced watch fed by the cache sees only its
/// namespace, and resourceVersion rules are checked as kube-apiserver checks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_lists_are_consistent_and_watches_stay_in_their_namespace() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    fx.ok(k, &["create", "namespace", "x"]).await;
    fx.ok(k, &["create", "namespace", "y"]).await;
    let list = json(
        &fx.ok(k, &["get", "--raw", "/api/v1/namespaces/x/configmaps"])
            .await,
    );
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let watch = fx.spawn(
        k,
        &[
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/x/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=8"
            ),
        ],
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in 0..4 {
        fx.ok(k, &["create", "cm", &format!("other{i}"), "-n", "y"])
            .await;
        let created = json(
            &fx.ok(
                k,
                &["create", "cm", &format!("c{i}"), "-n", "x", "-o", "json"],
            )
            .await,
        );
        let created_rv: i64 = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        // Read back at once: the list (no resourceVersion) must already hold it.
        let list = json(
            &fx.ok(k, &["get", "--raw", "/api/v1/namespaces/x/configmaps"])
                .await,
        );
        let list_rv: i64 = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        assert!(list_rv >= created_rv, "{list_rv} < {created_rv}");
        let names: Vec<&str> = list["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["metadata"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(names.contains(&format!("c{i}").as_str()), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("other")), "{names:?}");
    }
    // "Any" (resourceVersion=0) and label-selected lists come from the same cache.
    let any = json(
        &fx.ok(
            k,
            &[
                "get",
                "--raw",
                "/api/v1/configmaps?resourceVersion=0&fieldSelector=metadata.namespace%3Dy",
            ],
        )
        .await,
    );
    // (and y's kube-root-ca.crt, when its controller has run: none run in this server)
    assert_eq!(
        any["items"]
            .as_array()
            .map(|a| a
                .iter()
                .filter(|o| o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("other")))
                .count())
            .unwrap_or(0),
        4,
        "{any}"
    );
    let err = fx
        .fails(
            k,
            &[
                "get",
                "--raw",
                "/api/v1/configmaps?resourceVersion=1&resourceVersionMatch=Newest",
            ],
        )
        .await;
    assert!(err.contains("resourceVersionMatch"), "{err}");
    let out = watch.await.unwrap_or_default();
    let events: Vec<String> = out
        .lines()
        .map(|l| {
            let v = json(l);
            format!(
                "{} {}",
                v["type"].as_str().unwrap_or(""),
                v["object"]["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        events,
        ["ADDED c0", "ADDED c1", "ADDED c2", "ADDED c3"],
        "{out}"
    );
    fx.stop().await;
}

/// The schema a `$ref` (or a one-element `allOf`) names, followed to the end.
fn resolve<'a>(mut schema: &'a Value, schemas: &'a serde_json::Map<String, Value>) -> &'a Value {
    for _ in 0..16 {
        let target = schema.get("$ref").and_then(Value::as_str).or_else(|| {
            schema
                .get("allOf")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 1)
                .and_then(|a| a[0].get("$ref"))
                .and_then(Value::as_str)
        });
        match target
            .and_then(|r| r.rsplit('/').next())
            .and_then(|n| schemas.get(n))
        {
            Some(s) => schema = s,
            None => break,
        }
    }
    schema
}

/// A Time or MicroTime: Go writes a zero one (a non-pointer field) as `null`.
fn is_time(schema: &Value) -> bool {
    let name = |s: &Value| {
        s.get("$ref")
            .or_else(|| s.pointer("/allOf/0/$ref"))
            .and_then(Value::as_str)
            .map(|r| r.ends_with(".Time") || r.ends_with(".MicroTime"))
    };
    name(schema).unwrap_or(false)
}

/// Every field `schema` requires that `v` lacks (a required field that is `null` is
/// missing, but for a zero time), recursively through properties, maps and arrays.
fn missing_required(
    v: &Value,
    schema: &Value,
    schemas: &serde_json::Map<String, Value>,
    at: &str,
    out: &mut Vec<String>,
) {
    let s = resolve(schema, schemas);
    for part in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        missing_required(v, part, schemas, at, out);
    }
    match v {
        Value::Object(o) => {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap_or_default();
                let prop = props.and_then(|p| p.get(r));
                match o.get(r) {
                    None => out.push(format!("{at}.{r}")),
                    Some(Value::Null) if !prop.is_some_and(is_time) => {
                        out.push(format!("{at}.{r} (null)"))
                    }
                    _ => {}
                }
            }
            for (k, sub) in props.into_iter().flatten() {
                if let Some(x) = o.get(k) {
                    missing_required(x, sub, schemas, &format!("{at}.{k}"), out);
                }
            }
            if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, x) in o {
                    missing_required(x, ap, schemas, &format!("{at}[{k}]"), out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items") {
                for (i, x) in a.iter().enumerate() {
                    missing_required(x, items, schemas, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Every answer of every kind the server serves (create, get, list, watch; create only
/// for the reviews) carries every field the kind's OpenAPI v3 schema requires, as
/// kube-apiserver's always do (a typed client rejects an answer without them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_the_fields_its_schema_requires() {
    use skiff_apiserver::resources::RESOURCES;
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, "schema-token,schemer,1003,\"system:masters\"\n")
            .expect("write token file");
        cfg.token_auth_file = Some(file);
    })
    .await;
    let t = "schema-token";
    // The schemas of every group-version the server describes.
    let (code, index) = fx.curl(t, "GET", "/openapi/v3", "", "").await;
    assert_eq!(code, 200, "{index}");
    let mut schemas = serde_json::Map::new();
    for gv in json(&index)["paths"].as_object().into_iter().flatten() {
        let url = gv.1["serverRelativeURL"].as_str().unwrap_or_default();
        let (code, doc) = fx.curl(t, "GET", url, "", "").await;
        assert_eq!(code, 200, "{url}: {doc}");
        if let Some(s) = json(&doc)
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            schemas.extend(s.clone());
        }
    }
    let kind_schema = |r: &skiff_apiserver::resources::Resource| {
        schemas
            .values()
            .find(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|g| {
                        g["group"] == r.group && g["version"] == r.version && g["kind"] == r.kind
                    })
            })
            .cloned()
    };
    let collection = |r: &skiff_apiserver::resources::Resource| {
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        if r.namespaced {
            format!("{base}/namespaces/d/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        }
    };
    let mut failures = Vec::new();
    let mut check = |what: String, v: &Value, schema: &Value| {
        let mut out = Vec::new();
        missing_required(v, schema, &schemas, "", &mut out);
        if !out.is_empty() {
            failures.push(format!("{what}: missing {out:?} in {v}"));
        }
    };

    // One object of every stored kind, and an events.k8s.io Event.
    let mut docs: Vec<Value> = vec![serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}})];
    for doc in EVERY_KIND.split("\n---\n") {
        docs.push(serde_saphyr::from_str(doc).expect("manifest YAML"));
    }
    let request = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(certificate_request("someone"))
    };
    docs.push(serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr-x"},
        "spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"]}}));
    docs.push(serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "new-ev", "namespace": "d"},
        "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "test/x",
        "reportingInstance": "x-1", "action": "Testing", "reason": "Tested", "type": "Normal",
        "regarding": {"kind": "ConfigMap", "name": "cfg", "namespace": "d"}}));
    let mut kinds = Vec::new();
    for doc in &docs {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let r = RESOURCES
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .unwrap_or_else(|| panic!("{api_version} {kind} is not served"));
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let schema = kind_schema(r).unwrap_or_else(|| panic!("no schema for {kind}"));
        let (code, body) = fx
            .curl(
                t,
                "POST",
                &collection(r),
                "application/json",
                &doc.to_string(),
            )
            .await;
        assert_eq!(code, 201, "create {kind}: {body}");
        check(format!("create {kind}"), &json(&body), &schema);
        let (code, body) = fx
            .curl(t, "GET", &format!("{}/{name}", collection(r)), "", "")
            .await;
        assert_eq!(code, 200, "get {kind}: {body}");
        check(format!("get {kind}"), &json(&body), &schema);
        if !kinds.contains(&r) {
            kinds.push(r);
        }
    }
    // Every served kind has been created (a new kind needs an object above).
    for r in RESOURCES.iter().filter(|r| r.verbs().contains(&"get")) {
        assert!(
            kinds.contains(&r),
            "no object of {} {}",
            r.api_version(),
            r.kind
        );
    }
    for r in &kinds {
        let schema = kind_schema(r).unwrap_or_default();
        let (code, body) = fx.curl(t, "GET", &collection(r), "", "").await;
        assert_eq!(code, 200, "list {}: {body}", r.kind);
        let list = json(&body);
        assert!(list["items"].is_array(), "list {}: {list}", r.kind);
        assert!(list["metadata"].is_object(), "list {}: {list}", r.kind);
        for item in list["items"].as_array().into_iter().flatten() {
            check(format!("list {}", r.kind), item, &schema);
        }
        let (code, body) = fx
            .curl(
                t,
                "GET",
                &format!(
                    "{}?watch=1&resourceVersion=0&timeoutSeconds=1",
                    collection(r)
                ),
                "",
                "",
            )
            .await;
        assert_eq!(code, 200, "watch {}: {body}", r.kind);
        let events: Vec<Value> = body.lines().filter(|l| !l.is_empty()).map(json).collect();
        assert!(!events.is_empty(), "watch {}: no events", r.kind);
        for e in &events {
            check(format!("watch {}", r.kind), &e["object"], &schema);
        }
    }
    // A core Event has the strings and struct Go always writes; the events.k8s.io
    // view of it leaves the empty reporting fields out, as its `omitempty`.
    let (_, ev) = fx
        .curl(t, "GET", "/api/v1/namespaces/d/events/ev-0", "", "")
        .await;
    let ev = json(&ev);
    assert_eq!(
        (&ev["reportingComponent"], &ev["reportingInstance"]),
        (&Value::from(""), &Value::from("")),
        "{ev}"
    );
    let (_, ev) = fx
        .curl(
            t,
            "GET",
            "/apis/events.k8s.io/v1/namespaces/d/events/ev-0",
            "",
            "",
        )
        .await;
    let ev = json(&ev);
    assert!(ev.get("reportingController").is_none(), "{ev}");
    let (_, ev) = fx
        .curl(t, "GET", "/api/v1/namespaces/d/events/new-ev", "", "")
        .await;
    let ev = json(&ev);
    assert_eq!(ev["reportingComponent"], "test/x", "{ev}");
    assert_eq!(ev["source"], serde_json::json!({}), "{ev}");
    // The reviews, created only.
    for review in [
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1beta1", "kind": "SelfSubjectReview"}),
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": t}}),
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "d"}}}),
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": "d"}}),
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "jane", "resourceAttributes": {"verb": "get", "resource": "pods"}}}),
    ] {
        let kind = review["kind"].as_str().unwrap_or_default();
        let api_version = review["apiVersion"].as_str().unwrap_or_default();
        let r = RESOURCES
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .unwrap_or_else(|| panic!("{api_version} {kind} is not served"));
        let (code, body) = fx
            .curl(
                t,
                "POST",
                &collection(r),
                "application/json",
                &review.to_string(),
            )
            .await;
        assert_eq!(code, 201, "create {kind}: {body}");
        // (A kind the server describes no schema of has nothing to check against.)
        if let Some(schema) = kind_schema(r) {
            check(
                format!("create {api_version} {kind}"),
                &json(&body),
                &schema,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    fx.stop().await;
}

/// Names as kube-apiserver checks them: subdomains of up to 253 characters (no limit on
/// a segment), namespaces as DNS-1123 labels, services as DNS-1035 labels, with its
/// messages; generateName prefixes cut to 58 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_checked_and_generated_as_kube_apiserver_does() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    // A 64-character Pod name, a 100-character segment, a 253-character name.
    let pod64 = "p".repeat(64);
    let file = fx.file(
        "pod64.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod64}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"),
    );
    fx.ok(k, &["create", "-f", file.to_str().unwrap_or_default()])
        .await;
    // kubectl run labels it with its name and names its container so: both too long,
    // and said so.
    let run64 = "r".repeat(64);
    let err = fx
        .fails(k, &["run", &run64, "--image=busybox", "--restart=Never"])
        .await;
    assert!(
        err.contains(&format!("metadata.labels: Invalid value: \"{run64}\": must be no more than 63 characters"))
            && err.contains(&format!("spec.containers[0].name: Invalid value: \"{run64}\": must be no more than 63 characters"))
            && !err.contains("metadata.name"),
        "{err}"
    );
    let segment = format!("{}.x", "s".repeat(100));
    fx.ok(k, &["create", "configmap", &segment]).await;
    let longest = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    assert_eq!(longest.len(), 253);
    fx.ok(k, &["create", "configmap", &longest]).await;
    let too_long = format!("{longest}c");
    let err = fx.fails(k, &["create", "configmap", &too_long]).await;
    assert!(
        err.contains(&format!(
            "ConfigMap \"{too_long}\" is invalid: metadata.name: Invalid value: \"{too_long}\": must be no more than 253 characters"
        )),
        "{err}"
    );
    let err = fx.fails(k, &["create", "configmap", "Upper"]).await;
    assert!(
        err.contains("metadata.name: Invalid value: \"Upper\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        "{err}"
    );
    // Namespaces: DNS-1123 labels.
    let ns64 = "n".repeat(64);
    let err = fx.fails(k, &["create", "namespace", &ns64]).await;
    assert!(
        err.contains(&format!(
            "metadata.name: Invalid value: \"{ns64}\": must be no more than 63 characters"
        )),
        "{err}"
    );
    let err = fx.fails(k, &["create", "namespace", "a.b"]).await;
    assert!(
        err.contains("metadata.name: Invalid value: \"a.b\": must not contain dots"),
        "{err}"
    );
    fx.ok(k, &["create", "namespace", &"n".repeat(63)]).await;
    // Services: DNS-1035 labels.
    let err = fx
        .fails(k, &["create", "service", "clusterip", "1svc", "--tcp=80"])
        .await;
    assert!(
        err.contains("metadata.name: Invalid value: \"1svc\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"),
        "{err}"
    );
    let svc64 = "v".repeat(64);
    let err = fx
        .fails(k, &["create", "service", "clusterip", &svc64, "--tcp=80"])
        .await;
    assert!(err.contains("must be no more than 63 characters"), "{err}");
    // generateName: a prefix of 70 characters is cut to 58, then 5 random ones.
    let prefix = format!("{}-", "g".repeat(69));
    let file = fx.file(
        "gen.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: {prefix}\n"),
    );
    let name = fx
        .ok(
            k,
            &[
                "create",
                "-f",
                file.to_str().unwrap_or_default(),
                "-o",
                "jsonpath={.metadata.name}",
            ],
        )
        .await;
    assert_eq!(name.len(), 63, "{name}");
    assert!(name.starts_with(&"g".repeat(58)), "{name}");
    for n in [pod64.as_str()] {
        fx.ok(k, &["delete", "pod", n, "--wait=false"]).await;
    }
    fx.ok(k, &["delete", "configmap", &segment, &longest, &name])
        .await;
    fx.ok(k, &["delete", "namespace", &"n".repeat(63), "--wait=false"])
        .await;
    fx.stop().await;
}

/// Answers as Go writes them: a Status with metav1.Status's fields in their order, a
/// watch event's type before its object, and every JSON answer ending in a newline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_json_answers_are_written_as_go_writes_them() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, "go-token,gopher,1004,\"system:masters\"\n")
            .expect("write token file");
        cfg.token_auth_file = Some(file);
    })
    .await;
    let t = "go-token";
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"go"},"data":{"a":"1"}}"#;
    let mut answers = Vec::new();
    answers.push((
        "create",
        fx.curl(t, "POST", cms, "application/json", cm).await,
    ));
    answers.push(("get", fx.curl(t, "GET", &format!("{cms}/go"), "", "").await));
    answers.push(("list", fx.curl(t, "GET", cms, "", "").await));
    answers.push((
        "patch",
        fx.curl(
            t,
            "PATCH",
            &format!("{cms}/go"),
            "application/merge-patch+json",
            r#"{"data":{"b":"2"}}"#,
        )
        .await,
    ));
    answers.push(("discovery", fx.curl(t, "GET", "/api/v1", "", "").await));
    answers.push(("groups", fx.curl(t, "GET", "/apis", "", "").await));
    answers.push(("version", fx.curl(t, "GET", "/version", "", "").await));
    let (code, missing) = fx
        .curl(t, "GET", &format!("{cms}/nothing-here"), "", "")
        .await;
    assert_eq!(code, 404, "{missing}");
    assert_eq!(
        missing,
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"nothing-here\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nothing-here\",\"kind\":\"configmaps\"},\"code\":404}\n"
    );
    let (code, invalid) = fx
        .curl(
            t,
            "POST",
            cms,
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad"}}"#,
        )
        .await;
    assert_eq!(code, 422, "{invalid}");
    assert!(
        invalid.starts_with("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ConfigMap \\\"Bad\\\" is invalid: ")
            && invalid.contains("\"reason\":\"Invalid\",\"details\":{\"name\":\"Bad\",\"kind\":\"ConfigMap\",\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"Invalid value: \\\"Bad\\\": a lowercase RFC 1123 subdomain")
            && invalid.ends_with("\"field\":\"metadata.name\"}]},\"code\":422}\n"),
        "{invalid}"
    );
    answers.push((
        "delete",
        fx.curl(t, "DELETE", &format!("{cms}/go"), "", "").await,
    ));
    for (what, (code, body)) in &answers {
        assert!(*code < 300, "{what}: {code} {body}");
        assert!(
            body.ends_with("}\n") && !body.ends_with("\n\n"),
            "{what}: {body:?}"
        );
    }
    // A watch: one event a line, its type first.
    let (code, events) = fx
        .curl(
            t,
            "GET",
            "/api/v1/namespaces/kube-system/configmaps?watch=1&resourceVersion=0&timeoutSeconds=1",
            "",
            "",
        )
        .await;
    assert_eq!(code, 200, "{events}");
    assert!(!events.is_empty() && events.ends_with('\n'), "{events:?}");
    for line in events.lines() {
        assert!(
            line.starts_with("{\"type\":\"ADDED\",\"object\":{"),
            "{line}"
        );
    }
    fx.stop().await;
}

/// A ConfigMap's data and binaryData, and a Secret's data and stringData, hold at most
/// 1 MiB together; over it the create is refused as kube-apiserver refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmaps_and_secrets_hold_at_most_one_mebibyte() {
    use base64::Engine;
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, "size-token,sizer,1005,\"system:masters\"\n")
            .expect("write token file");
        cfg.token_auth_file = Some(file);
    })
    .await;
    let t = "size-token";
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![b'x'; n]);
    const MIB: usize = 1024 * 1024;
    let post = |name: &str, path: &'static str, body: Value| {
        let file = fx.file(&format!("{name}.json"), &body.to_string());
        let at = format!("@{}", file.display());
        let fx = &fx;
        async move { fx.curl(t, "POST", path, "application/json", &at).await }
    };
    let cms = "/api/v1/namespaces/default/configmaps";
    let secrets = "/api/v1/namespaces/default/secrets";
    // Exactly 1 MiB, split between data and binaryData: fine.
    let (code, body) = post(
        "cm-full",
        cms,
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "full"},
            "data": {"a": "x".repeat(MIB / 2)}, "binaryData": {"b": b64(MIB / 2)}}),
    )
    .await;
    assert_eq!(code, 201, "{}", &body[..body.len().min(300)]);
    // One byte more: 422, the whole object too long.
    let (code, body) = post(
        "cm-over",
        cms,
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "over"},
            "data": {"a": "x".repeat(MIB / 2 + 1)}, "binaryData": {"b": b64(MIB / 2)}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let status = json(&body);
    assert_eq!(
        status["message"],
        "ConfigMap \"over\" is invalid: []: Too long: must have at most 1048576 bytes"
    );
    assert_eq!(
        status["details"]["causes"],
        serde_json::json!([{"reason": "FieldValueTooLong", "message": "Too long: must have at most 1048576 bytes", "field": "[]"}])
    );
    // A Secret: data and stringData together, on `data`.
    let (code, body) = post(
        "secret-over",
        secrets,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "over"},
            "data": {"a": b64(MIB / 2)}, "stringData": {"b": "y".repeat(MIB / 2 + 1)}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let status = json(&body);
    assert_eq!(
        status["message"],
        "Secret \"over\" is invalid: data: Too long: must have at most 1048576 bytes"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "data");
    let (code, body) = post(
        "secret-full",
        secrets,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "full"},
            "data": {"a": b64(MIB / 2)}, "stringData": {"b": "y".repeat(MIB / 2)}}),
    )
    .await;
    assert_eq!(code, 201, "{}", &body[..body.len().min(300)]);
    // Growing one past the limit by an update is refused too.
    let k = KUBECTL_NEW;
    let err = fx
        .fails(
            k,
            &[
                "patch",
                "configmap",
                "full",
                "--type=merge",
                "-p",
                r#"{"data":{"c":"z"}}"#,
            ],
        )
        .await;
    assert!(
        err.contains(
            "ConfigMap \"full\" is invalid: []: Too long: must have at most 1048576 bytes"
        ),
        "{err}"
    );
    fx.ok(k, &["delete", "configmap", "full"]).await;
    fx.ok(k, &["delete", "secret", "full"]).await;
    fx.stop().await;
}

/// A metadata-only watch (as the garbage collector's) gets PartialObjectMetadata events:
/// the objects' metadata, none of their data.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_watches_send_partial_object_metadata() {
    const TOKEN: &str = "meta-token";
    let fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, format!("{TOKEN},meta,1010,\"system:masters\"\n")).expect("tokens");
        cfg.token_auth_file = Some(file);
    })
    .await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, list) = fx.curl(TOKEN, "GET", cms, "", "").await;
    assert_eq!(code, 200, "{list}");
    let rv = json(&list)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let watch = format!("{cms}?watch=1&resourceVersion={rv}&timeoutSeconds=3");
    let accept =
        "Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
    let headers = [accept];
    let watching = fx.curl_with(TOKEN, "GET", &watch, "", "", &headers);
    let create = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"m","labels":{"a":"b"}},"data":{"secret-ish":"value"}}"#;
        fx.curl(TOKEN, "POST", cms, "application/json", body).await
    };
    let ((code, events), (created, out)) = tokio::join!(watching, create);
    assert_eq!(created, 201, "{out}");
    assert_eq!(code, 200, "{events}");
    let events: Vec<Value> = events.lines().filter(|l| !l.is_empty()).map(json).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev["type"], "ADDED", "{ev}");
    assert_eq!(ev["object"]["kind"], "PartialObjectMetadata", "{ev}");
    assert_eq!(ev["object"]["apiVersion"], "meta.k8s.io/v1", "{ev}");
    assert_eq!(ev["object"]["metadata"]["name"], "m", "{ev}");
    assert_eq!(ev["object"]["metadata"]["labels"]["a"], "b", "{ev}");
    assert!(ev["object"].get("data").is_none(), "{ev}");
}
