//! `skiff agent --hollow`: 100 simulated nodes join a server and run 1,000 pods of
//! two Deployments, reported Running and Ready with addresses of their nodes' ranges,
//! while nothing of the host is touched (no hostPath directory made, no host port
//! taken, no network device); too many nodes for the pod range fail before any Node is
//! registered.

use crate::EXE;
use skiff_testsupport::server::{self, Server};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kubectl(dir: &std::path::Path, args: &[&str]) -> String {
    server::kubectl_ok(dir, args)
}

fn apply(dir: &std::path::Path, obj: &serde_json::Value) {
    let mut c = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(obj.to_string().as_bytes())
            .unwrap();
    }
    assert!(c.wait().unwrap().success());
}

/// Waits until `f` says done; on timeout, fails with what it last saw.
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> (bool, String)) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (done, seen) = f();
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How many lines of each kind `text` has.
fn tally(text: &str) -> String {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for l in text.lines() {
        *m.entry(l).or_default() += 1;
    }
    format!("{m:?}")
}

/// The hollow agent process, stopped on drop.
struct Hollow(std::process::Child);

impl Drop for Hollow {
    fn drop(&mut self) {
        // SAFETY: kill(2) takes integers only.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn hollow_cmd(t: &std::path::Path, port: &str, token: &str, n: &str) -> Command {
    let mut c = Command::new(EXE);
    c.arg("--root")
        .arg(t.join("root"))
        .args([
            "agent",
            "--hollow",
            n,
            "--hollow-start-delay",
            "300ms",
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--token",
            token,
        ])
        .arg("--data-dir")
        .arg(t.join("agent"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// A Deployment whose pods ask for a hostPath directory, a memory emptyDir, probes
/// over the network and, with `host_port`, a port of the host (one such pod a node).
fn deployment(
    name: &str,
    replicas: u32,
    host_dir: &str,
    host_port: Option<u16>,
) -> serde_json::Value {
    let ports = match host_port {
        Some(p) => serde_json::json!([{"containerPort": 80, "hostPort": p}]),
        None => serde_json::json!([{"containerPort": 80}]),
    };
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "initContainers": [{"name": "init", "image": "busybox"}],
                    "containers": [{
                        "name": "web", "image": "nginx:1.27",
                        "ports": ports,
                        "readinessProbe": {"httpGet": {"port": 80, "path": "/"}, "periodSeconds": 1},
                        "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "host", "mountPath": "/host"},
                                         {"name": "mem", "mountPath": "/mem"}],
                    }],
                    "volumes": [
                        {"name": "host", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}},
                        {"name": "mem", "emptyDir": {"medium": "Memory"}},
                    ],
                }
            }
        }
    })
}

#[test]
fn a_hundred_hollow_nodes_run_a_thousand_pods_touching_nothing_of_the_host() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("server");
    let s = Server::start(server::command(
        EXE,
        &dir.join("data"),
        &dir.join("kubeconfig"),
        &["--disable".to_string(), "servicelb,coredns".to_string()],
    ));
    let port = server::banner_port(&s.banner);
    let token = server::banner_token(&s.banner);

    // Bad counts fail early, saying why, with no Node registered.
    let out = hollow_cmd(t.path(), &port, &token, "0").output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 or more"));
    let out = hollow_cmd(t.path(), &port, &token, "300").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("--cluster-cidr 10.42.0.0/16 holds 256 node ranges"),
        "{err}"
    );
    assert_eq!(kubectl(&dir, &["get", "nodes", "-o", "name"]), "");

    let log = t.path().join("hollow.log");
    let mut cmd = hollow_cmd(t.path(), &port, &token, "100");
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let mut agent = Hollow(cmd.spawn().unwrap());
    let ready_nodes = || {
        kubectl(
            &dir,
            &[
                "get",
                "nodes",
                "-l",
                "node.skiff.io/hollow=true",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ],
        )
        .lines()
        .filter(|l| *l == "True")
        .count()
    };
    wait_for("100 Ready hollow nodes", 180, || {
        let n = ready_nodes();
        (n == 100, format!("{n} Ready"))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("100 hollow nodes (hollow-node-0 … hollow-node-99) joined"),
        "{text}"
    );
    // Each joined with a certificate of its own and renews a Lease.
    let leases = kubectl(
        &dir,
        &["get", "lease", "-n", "kube-node-lease", "-o", "name"],
    );
    assert_eq!(leases.lines().count(), 100, "{leases}");
    let csrs = kubectl(
        &dir,
        &[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.signerName} {.status.conditions[0].type}{\"\\n\"}{end}",
        ],
    );
    let approved = csrs
        .lines()
        .filter(|l| {
            l.starts_with("node-csr-hollow-node-")
                && l.ends_with(" kubernetes.io/kube-apiserver-client-kubelet Approved")
        })
        .count();
    assert_eq!(approved, 100, "{csrs}");

    // What the pods ask of the host, which a hollow node must never give.
    let host_dir = t.path().join("must-not-exist");
    let host_port = {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // The bridge a real node of the default flags would make.
    let bridge = || {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
        .contains(" skiffpods0:")
    };
    let bridge_before = bridge();
    let host_dir_s = host_dir.to_str().unwrap();
    apply(&dir, &deployment("web", 600, host_dir_s, None));
    apply(&dir, &deployment("api", 300, host_dir_s, None));
    apply(&dir, &deployment("ports", 100, host_dir_s, Some(host_port)));
    let running = || {
        kubectl(
            &dir,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.status.phase} {.status.conditions[?(@.type==\"Ready\")].status} {.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
            ],
        )
    };
    wait_for("1,000 pods Running and Ready", 600, || {
        let all = running();
        let n = all
            .lines()
            .filter(|l| l.starts_with("Running True "))
            .count();
        let states: String = all
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" ") + "\n")
            .collect();
        (n == 1000, tally(&states))
    });
    // Addresses of the node's own range, none twice; no node past 110 pods.
    let cidrs: BTreeMap<String, String> = kubectl(
        &dir,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut ips = BTreeSet::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for l in running().lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let (node, ip) = (f[2], f[3]);
        let cidr = &cidrs[node];
        let prefix = cidr.trim_end_matches(".0/24");
        assert!(
            ip.starts_with(&format!("{prefix}.")),
            "{ip} not in {cidr} of {node}"
        );
        assert!(ips.insert(ip.to_string()), "{ip} given twice");
        *per_node.entry(node.to_string()).or_default() += 1;
    }
    assert_eq!(ips.len(), 1000);
    assert!(per_node.values().all(|n| *n <= 110), "{per_node:?}");
    assert!(
        per_node.len() >= 90,
        "pods spread over {} nodes",
        per_node.len()
    );
    // An init container completed; the container's state is Running.
    let one = kubectl(
        &dir,
        &["get", "pods", "-l", "app=api", "-o", "jsonpath={.items[0].status.initContainerStatuses[0].state.terminated.reason} {.items[0].status.containerStatuses[0].state.running.startedAt}"],
    );
    assert!(one.starts_with("Completed 20"), "{one}");

    // Nothing of the host was touched.
    assert!(
        !host_dir.exists(),
        "a hollow pod made its hostPath directory"
    );
    std::net::TcpListener::bind(("0.0.0.0", host_port))
        .unwrap_or_else(|e| panic!("host port {host_port} was taken: {e}"));
    assert_eq!(bridge(), bridge_before, "a pod bridge appeared");

    // Scaled to zero, the nodes finish every pod's deletion.
    kubectl(
        &dir,
        &["scale", "deployment", "web", "api", "ports", "--replicas=0"],
    );
    wait_for("every pod gone", 300, || {
        let left = kubectl(&dir, &["get", "pods", "-o", "name"]);
        (left.is_empty(), format!("{} pods", left.lines().count()))
    });
    // SIGTERM stops every node at once.
    // SAFETY: kill(2) takes integers only.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = agent.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(stopped.elapsed() < Duration::from_secs(20));
    drop(s);
}
