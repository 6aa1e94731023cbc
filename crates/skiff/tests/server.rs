//! `skiff server` as a user starts it, driven by the real kubectl.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use skiff_testsupport::etcd::Etcd;
use skiff_testsupport::server::{self, Server};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

fn start(dir: &std::path::Path) -> (Server, String) {
    let s = Server::start(server::command(
        EXE,
        &dir.join("data"),
        &dir.join("kubeconfig"),
        &[],
    ));
    let banner = s.banner.clone();
    (s, banner)
}

fn kubectl(dir: &std::path::Path, args: &[&str]) -> String {
    server::kubectl_ok(dir, args)
}

#[test]
fn server_serves_kubectl_and_keeps_objects_across_restarts() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    {
        let (_s, banner) = start(dir);
        assert!(banner.contains("join token K10"), "{banner}");
        let v = kubectl(dir, &["version", "-o", "json"]);
        assert!(v.contains("\"gitVersion\": \"v1.33"), "{v}");
        let ns = kubectl(dir, &["get", "ns", "-o", "name"]);
        for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
        }
        kubectl(dir, &["create", "configmap", "keep", "--from-literal=a=1"]);
    }
    let (_s, _) = start(dir);
    let cm = kubectl(
        dir,
        &["get", "configmap", "keep", "-o", "jsonpath={.data.a}"],
    );
    assert_eq!(cm, "1");
}

#[test]
fn server_on_etcd_keeps_objects_in_etcd() {
    let t = tempfile::tempdir().unwrap();
    let e = Etcd::start();
    let run = |data: &str| {
        Server::start(server::command(
            EXE,
            &t.path().join(data),
            &t.path().join("kubeconfig"),
            &[
                "--datastore-endpoint".into(),
                e.endpoint.clone(),
                "--token".into(),
                "s3cret".into(),
            ],
        ))
    };
    {
        let _s = run("a");
        kubectl(
            t.path(),
            &["create", "configmap", "in-etcd", "--from-literal=k=v"],
        );
    }
    // A second server with a fresh data dir (and the cluster's token) sees the object:
    // it lives in etcd.
    let _s = run("b");
    let v = kubectl(
        t.path(),
        &["get", "configmap", "in-etcd", "-o", "jsonpath={.data.k}"],
    );
    assert_eq!(v, "v");
}

#[test]
fn a_bad_datastore_endpoint_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(EXE)
        .args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            "0",
            "--datastore-endpoint",
            "mysql://db",
        ])
        .arg("--data-dir")
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("only etcd endpoints"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// name → resourceVersion of the ConfigMaps in `default`, ordered by resourceVersion.
fn by_revision(dir: &std::path::Path) -> Vec<String> {
    let out = kubectl(
        dir,
        &[
            "get",
            "configmaps",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
        ],
    );
    let mut v: Vec<(u64, String)> = out
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(n, _)| n.starts_with("m-"))
        .map(|(n, rv)| (rv.parse().unwrap(), n.to_string()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

#[test]
fn datastore_migrate_moves_the_embedded_store_to_etcd_keeping_the_order() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let before = {
        let (_s, _) = start(dir);
        for n in ["m-a", "m-b", "m-c"] {
            kubectl(dir, &["create", "configmap", n, "--from-literal=k=v"]);
        }
        // m-a written last.
        kubectl(dir, &["label", "configmap", "m-a", "x=1"]);
        by_revision(dir)
    };
    assert_eq!(before, ["m-b", "m-c", "m-a"]);
    let e = Etcd::start();
    let migrate = |extra: &[&str]| {
        let mut flags = vec!["--datastore-endpoint".to_string(), e.endpoint.clone()];
        flags.extend(extra.iter().map(|s| s.to_string()));
        server::command(EXE, &dir.join("data"), &dir.join("kubeconfig"), &flags)
    };
    {
        let s = Server::start(migrate(&["--datastore-migrate"]));
        assert!(
            s.log()
                .contains("moved the embedded store's objects to etcd"),
            "{}",
            s.log()
        );
        assert_eq!(by_revision(dir), before);
        let label = kubectl(
            dir,
            &[
                "get",
                "configmap",
                "m-a",
                "-o",
                "jsonpath={.metadata.labels.x}",
            ],
        );
        assert_eq!(label, "1");
    }
    // Not twice into a datastore that holds objects.
    let o = migrate(&["--datastore-migrate"]).output().unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already holds objects"), "{err}");
    // From now on the server runs on etcd.
    let _s = Server::start(migrate(&[]));
    assert_eq!(by_revision(dir), before);
}

#[test]
fn a_server_waits_for_its_datastore_saying_why() {
    let t = tempfile::tempdir().unwrap();
    let e = Etcd::start();
    // A frozen etcd: connections hang, as with a datastore not up yet.
    e.pause();
    let resume = {
        let pid_e = &e;
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_secs(8));
                pid_e.resume();
            });
            let started = std::time::Instant::now();
            let s = Server::start(server::command(
                EXE,
                &t.path().join("data"),
                &t.path().join("kubeconfig"),
                &["--datastore-endpoint".into(), e.endpoint.clone()],
            ));
            (s, started.elapsed())
        })
    };
    let (s, waited) = resume;
    assert!(waited >= std::time::Duration::from_secs(8), "{waited:?}");
    let log = s.log();
    assert!(
        log.contains("cannot reach the datastore; retrying") && log.contains(&e.endpoint),
        "{log}"
    );
    kubectl(t.path(), &["get", "ns", "default"]);
}

/// `kill -9` of the server in the middle of a stream of creates from several clients:
/// after a restart every create that was acknowledged is there, whole.
#[test]
fn kill_9_during_writes_keeps_every_acknowledged_object() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let (mut s, _) = start(&dir);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (dir, stop, count) = (dir.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    let o = Command::new("kubectl")
                        .arg("--kubeconfig")
                        .arg(dir.join("kubeconfig"))
                        .arg("--cache-dir")
                        .arg(dir.join(format!("cache{w}")))
                        .args(["create", "configmap", &name])
                        .arg(format!("--from-literal=n={i}"))
                        .arg("--request-timeout=5s")
                        .output()
                        .unwrap();
                    if o.status.success() {
                        acked.push((name, i));
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                acked
            })
        })
        .collect();
    // The kill lands mid-stream once a good number of creates went through (on a
    // busy machine that takes longer: the count, not a clock, decides).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while count.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers got nothing through"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    s.kill();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked: Vec<(String, i32)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() > 8,
        "too few writes before the kill: {}",
        acked.len()
    );
    std::mem::forget(s);
    let (_s, _) = start(&dir);
    let out = kubectl(
        &dir,
        &[
            "get",
            "configmaps",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.data.n} {end}",
        ],
    );
    let stored: std::collections::HashMap<&str, &str> = out
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    for (name, i) in &acked {
        assert_eq!(
            stored.get(name.as_str()).copied(),
            Some(i.to_string().as_str()),
            "acknowledged {name} lost: {out}"
        );
    }
}

/// The value of `key=` in the first log line containing `what`.
fn logged(log: &str, what: &str, key: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(what))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    Some(
        line[at..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn holder(dir: &std::path::Path, lease: &str) -> String {
    let o = server::kubectl(
        dir,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            lease,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn pods(dir: &std::path::Path) -> usize {
    let o = server::kubectl(dir, &["get", "pods", "-l", "app=web", "-o", "name"]);
    String::from_utf8_lossy(&o.stdout).lines().count()
}

#[test]
fn servers_on_one_etcd_share_the_ca_and_one_leads() {
    let t = tempfile::tempdir().unwrap();
    let e = Etcd::start();
    let flags = |token: &str| -> Vec<String> {
        vec![
            "--datastore-endpoint".into(),
            e.endpoint.clone(),
            "--token".into(),
            token.into(),
        ]
    };
    let run = |name: &str| {
        let dir = t.path().join(name);
        Server::start(server::command(
            EXE,
            &dir.join("data"),
            &dir.join("kubeconfig"),
            &flags("s3cret"),
        ))
    };
    let mut a = run("a");
    let mut b = run("b");
    // One CA: the same join token (K10<CA hash>::server:<secret>) from both.
    let token = server::banner_token;
    assert_eq!(token(&a.banner), token(&b.banner));
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    // A third server with another token is refused, saying why.
    let o = server::command(
        EXE,
        &t.path().join("c/data"),
        &t.path().join("c/kubeconfig"),
        &flags("wrong"),
    )
    .stderr(std::process::Stdio::piped())
    .output()
    .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("under a different token"), "{err}");

    // One server holds both Leases; the other has never led.
    wait_for("the leases", || {
        !holder(&da, "kube-scheduler").is_empty()
            && !holder(&da, "kube-controller-manager").is_empty()
    });
    let leader = holder(&da, "kube-controller-manager");
    let ids = [
        logged(&a.log(), "started leading", "identity"),
        logged(&b.log(), "started leading", "identity"),
    ];
    let (lead, follow) = match (&ids[0], &ids[1]) {
        (Some(x), None) if *x == leader => ((&mut a, &da), (&mut b, &db)),
        (None, Some(y)) if *y == leader => ((&mut b, &db), (&mut a, &da)),
        other => panic!("leader {leader}, logged {other:?}"),
    };
    assert_eq!(holder(follow.1, "kube-scheduler"), leader);
    // The `kubernetes` endpoints list both servers (one subset per port here).
    let port = server::banner_port;
    let (lead_port, follow_port) = (port(&lead.0.banner), port(&follow.0.banner));
    let endpoints = |dir: &std::path::Path| {
        kubectl(
            dir,
            &[
                "get",
                "endpoints",
                "kubernetes",
                "-o",
                "jsonpath={.subsets[*].ports[*].port}",
            ],
        )
    };
    wait_for("both servers in the endpoints", || {
        let e = endpoints(follow.1);
        e.contains(&lead_port) && e.contains(&follow_port)
    });
    // The controllers work, through either server.
    kubectl(
        follow.1,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
        ],
    );
    wait_for("2 pods", || pods(follow.1) == 2);

    // kill -9 the leader: the other takes both Leases once they expire, and only then.
    lead.0.kill();
    let killed = std::time::Instant::now();
    assert!(logged(&follow.0.log(), "started leading", "identity").is_none());
    wait_for("the other server to lead", || {
        let h = holder(follow.1, "kube-controller-manager");
        !h.is_empty() && h != leader && holder(follow.1, "kube-scheduler") == h
    });
    assert!(
        killed.elapsed() >= std::time::Duration::from_secs(10),
        "{:?}",
        killed.elapsed()
    );
    assert!(
        killed.elapsed() <= std::time::Duration::from_secs(30),
        "{:?}",
        killed.elapsed()
    );
    let new = logged(&follow.0.log(), "started leading", "identity").unwrap();
    assert_eq!(holder(follow.1, "kube-controller-manager"), new);
    // The dead server leaves the endpoints once its record expires.
    wait_for("the dead server to leave the endpoints", || {
        let e = endpoints(follow.1);
        !e.contains(&lead_port) && e.contains(&follow_port)
    });
    // Work after the failover converges.
    kubectl(follow.1, &["scale", "deployment", "web", "--replicas=4"]);
    wait_for("4 pods", || pods(follow.1) == 4);
    let kubectl_leases = kubectl(follow.1, &["get", "lease", "-n", "kube-system"]);
    assert!(
        kubectl_leases.contains("kube-controller-manager"),
        "{kubectl_leases}"
    );
    assert!(kubectl_leases.contains(&new), "{kubectl_leases}");
    // The killed server restarts on its data dir and rejoins as a follower.
    let (killed_dir, follower_dir) = (lead.1.clone(), follow.1.clone());
    std::mem::forget(std::mem::replace(
        lead.0,
        Server::start(server::command(
            EXE,
            &killed_dir.join("data"),
            &killed_dir.join("kubeconfig"),
            &flags("s3cret"),
        )),
    ));
    assert_eq!(token(&lead.0.banner), token(&follow.0.banner));
    assert_eq!(pods(&killed_dir), 4);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(logged(&lead.0.log(), "started leading", "identity").is_none());
    assert_eq!(holder(&follower_dir, "kube-controller-manager"), new);
}

/// Lines of `log` that say a cache of `kind` was read whole while it held at least
/// `at_least` objects.
fn whole_scans(log: &str, kind: &str, at_least: usize) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("scanned the whole cache") && l.contains(&format!("kind={kind} ")))
        .filter(|l| {
            logged(l, "scanned", "objects").and_then(|n| n.parse::<usize>().ok()) >= Some(at_least)
        })
        .map(str::to_string)
        .collect()
}

/// Issue 15's bounded-work check: with 10,000 unrelated ConfigMaps in the cluster, a
/// change of one more ConfigMap and of one Deployment costs the controllers a handful
/// of reconciles and no read of a whole ConfigMap cache or list (counted from the
/// server's own debug lines: every reconcile, every whole-cache read with its size,
/// every request).
#[test]
fn controller_work_per_change_does_not_grow_with_unrelated_objects() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let mut cmd = server::command(EXE, &dir.join("data"), &dir.join("kubeconfig"), &[]);
    cmd.env(
        "SKIFF_LOG",
        "info,skiff_informer=debug,skiff_controllers=debug,skiff_apiserver::httplog=debug",
    );
    let s = Server::start(cmd);
    kubectl(&dir, &["create", "namespace", "bulk"]);
    kubectl(
        &dir,
        &[
            "create",
            "deployment",
            "web",
            "--image=registry.k8s.io/pause:3.10",
        ],
    );
    // The counters see what they should: a cluster-wide list of ConfigMaps is logged.
    kubectl(&dir, &["get", "configmaps", "-A"]);
    wait_for("the list in the request log", || {
        s.log().contains("verb=LIST URI=/api/v1/configmaps")
    });
    // 10,000 ConfigMaps, by 8 kubectl processes at once.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let items: Vec<serde_json::Value> = (0..1250)
                    .map(|i| {
                        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{w}-{i}"), "namespace": "bulk"},
                        "data": {"k": "v".repeat(100)}})
                    })
                    .collect();
                let file = dir.join(format!("bulk-{w}.json"));
                let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
                std::fs::write(&file, list.to_string()).unwrap();
                server::kubectl_ok(
                    &dir,
                    &["create", "-f", file.to_str().unwrap(), "-o", "name"],
                );
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let count = kubectl(&dir, &["get", "configmaps", "-n", "bulk", "--no-headers"]);
    assert!(
        count.lines().count() >= 10_000,
        "{} ConfigMaps",
        count.lines().count()
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mark = s.log().len();
    kubectl(
        &dir,
        &[
            "create",
            "configmap",
            "probe",
            "-n",
            "bulk",
            "--from-literal=a=1",
        ],
    );
    kubectl(
        &dir,
        &[
            "patch",
            "configmap",
            "probe",
            "-n",
            "bulk",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ],
    );
    kubectl(&dir, &["scale", "deployment", "web", "--replicas=2"]);
    wait_for("the second replica", || {
        kubectl(
            &dir,
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.status.replicas}",
            ],
        ) == "2"
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let log = s.log();
    let window = &log[mark..];
    // The whole-cache reads are counted: the Deployment's change runs the budget pass,
    // which reads the (empty) PodDisruptionBudget cache.
    assert!(
        !whole_scans(window, "PodDisruptionBudget", 0).is_empty(),
        "no whole-cache read logged at all"
    );
    let scans = whole_scans(window, "ConfigMap", 10_000);
    assert!(
        scans.is_empty(),
        "whole ConfigMap caches read:\n{}",
        scans.join("\n")
    );
    let lists: Vec<&str> = window
        .lines()
        .filter(|l| {
            l.contains("verb=LIST URI=/api/v1/configmaps")
                || l.contains("verb=LIST URI=/api/v1/namespaces/bulk/configmaps")
        })
        .collect();
    assert!(lists.is_empty(), "ConfigMaps listed:\n{}", lists.join("\n"));
    let reconciles: Vec<&str> = window
        .lines()
        .filter(|l| l.contains(" reconcile "))
        .collect();
    assert!(
        reconciles.iter().any(|l| l.contains("key=default/web")),
        "the Deployment's change was not reconciled:\n{}",
        reconciles.join("\n")
    );
    assert!(
        reconciles.len() <= 40,
        "{} reconciles for two changes:\n{}",
        reconciles.len(),
        reconciles.join("\n")
    );
    // The garbage collector's work is among them: the new pod, its ReplicaSet.
    let looks = reconciles
        .iter()
        .filter(|l| l.contains(r#"controller="garbage-collector""#))
        .count();
    assert!(
        looks >= 1,
        "the garbage collector did not look at the new pod"
    );
    eprintln!(
        "after the two changes: {} reconciles, {looks} of them the garbage collector's",
        reconciles.len()
    );
    // Nothing else read a cache of 10,000 objects either.
    let big: Vec<&str> = window
        .lines()
        .filter(|l| l.contains("scanned the whole cache"))
        .filter(|l| {
            logged(l, "scanned", "objects").and_then(|n| n.parse::<usize>().ok()) >= Some(10_000)
        })
        .collect();
    assert!(big.is_empty(), "{}", big.join("\n"));
}
