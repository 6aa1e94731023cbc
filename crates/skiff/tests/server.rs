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
    let o = server::kubectl(dir, args);
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
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
            &["--datastore-endpoint".into(), e.endpoint.clone()],
        ))
    };
    {
        let _s = run("a");
        kubectl(
            t.path(),
            &["create", "configmap", "in-etcd", "--from-literal=k=v"],
        );
    }
    // A second server with a fresh data dir sees the object: it lives in etcd.
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

/// `kill -9` of the server in the middle of a stream of creates from several clients:
/// after a restart every create that was acknowledged is there, whole.
#[test]
fn kill_9_during_writes_keeps_every_acknowledged_object() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let (mut s, _) = start(&dir);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (dir, stop) = (dir.clone(), stop.clone());
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
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
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
