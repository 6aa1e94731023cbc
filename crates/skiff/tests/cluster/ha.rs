//! Several servers on one etcd with a joined agent: the agent's load balancer learns
//! both servers from the `kubernetes` endpoints and keeps the node working through the
//! other when the one it joined through is killed.

use crate::EXE;
use skiff_testsupport::cluster::{clean_node_root, lenient_eviction};
use skiff_testsupport::etcd::Etcd;
use skiff_testsupport::server::{self, Server};
use skiff_testsupport::Root;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn kubectl(dir: &std::path::Path, args: &[&str]) -> String {
    let o = server::kubectl(dir, args);
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The agent, stopped and its pods cleaned away on drop.
struct Agent {
    child: Child,
    root: Root,
    name: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) takes integers only.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        clean_node_root(&self.root, &self.name);
    }
}

#[test]
fn a_joined_agent_moves_to_another_server_when_its_server_dies() {
    let e = Etcd::start();
    let t = tempfile::tempdir().unwrap();
    let root = Root::with_busybox(EXE);
    // In the host's namespace beside other tests: ranges and a table of this test's own.
    let second = root.cidr.split('.').nth(1).unwrap().to_string();
    let third: u32 = root.cidr.split('.').nth(2).unwrap().parse().unwrap();
    let flags: Vec<String> = [
        "--datastore-endpoint",
        &e.endpoint,
        "--token",
        "s3cret",
        "--cluster-cidr",
        &format!(
            "10.{}.{}.0/23",
            200 + second.parse::<u32>().unwrap() % 50,
            (third * 2) % 250
        ),
        "--service-cidr",
        &format!("10.{}.{third}.0/24", 60 + std::process::id() % 30),
        "--flannel-backend",
        "none",
        "--disable",
        "servicelb,coredns",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let start = |name: &str| {
        let dir = t.path().join(name);
        Server::start(server::command(
            EXE,
            &dir.join("data"),
            &dir.join("kubeconfig"),
            &flags,
        ))
    };
    let mut a = start("a");
    let b = start("b");
    let db = t.path().join("b");
    let (port_a, port_b) = (
        server::banner_port(&a.banner),
        server::banner_port(&b.banner),
    );
    let token = server::banner_token(&a.banner);

    let name = format!(
        "ha-{}",
        root.table.trim_start_matches("skt").replace('x', "-")
    );
    let log_path = t.path().join("agent.log");
    let mut cmd = root.cmd(&[
        "agent",
        "--server",
        &format!("https://127.0.0.1:{port_a}"),
        "--token",
        &token,
        "--node-name",
        &name,
        "--node-ip",
        "127.0.0.7",
        "--kubelet-port",
        "0",
        "--pod-bridge",
        &format!("{}q", root.bridge),
        "--nftables-table",
        &format!("{}_node", root.table),
        "--lb-server-port",
        "0",
    ]);
    cmd.args(lenient_eviction(&[]))
        .arg("--data-dir")
        .arg(root.dir.join("agent"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let agent = Agent {
        child: cmd.spawn().unwrap(),
        root,
        name: name.clone(),
    };
    let ready = |dir: &std::path::Path| {
        kubectl(
            dir,
            &[
                "get",
                "node",
                &name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        ) == "True"
    };
    wait_for("the node to be Ready", 60, || ready(&db));
    // The agent learns the other server from the kubernetes endpoints.
    wait_for("the agent to learn both servers", 30, || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        log.lines()
            .any(|l| l.contains("API servers") && l.contains(&port_a) && l.contains(&port_b))
    });

    // kill -9 the server the agent joined through.
    a.kill();
    std::mem::forget(a);
    let killed = Instant::now();
    let renew = || {
        kubectl(
            &db,
            &[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                &name,
                "-o",
                "jsonpath={.spec.renewTime}",
            ],
        )
    };
    let before = renew();
    // The node keeps renewing its Lease, now through the other server.
    wait_for("a node lease renewal after the kill", 40, || {
        let now = renew();
        !now.is_empty() && now != before
    });
    // And runs a new pod it learns of through the other server (whichever server
    // leads the controllers now: the Deployment-free pod needs none of them).
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after-failover"},
        "spec": {"nodeName": name, "containers": [{"name": "c", "image": "busybox",
                 "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}
    });
    let mut apply = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(db.join("kubeconfig"))
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        apply
            .stdin
            .take()
            .unwrap()
            .write_all(pod.to_string().as_bytes())
            .unwrap();
    }
    assert!(apply.wait().unwrap().success());
    wait_for("the pod to run", 60, || {
        kubectl(
            &db,
            &[
                "get",
                "pod",
                "after-failover",
                "-o",
                "jsonpath={.status.phase}",
            ],
        ) == "Running"
    });
    assert!(ready(&db));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains(&format!("using this server server=127.0.0.1:{port_b}")),
        "{log}"
    );
    let _ = kubectl(
        &db,
        &[
            "delete",
            "pod",
            "after-failover",
            "--grace-period=1",
            "--wait=false",
        ],
    );
    eprintln!("failover took {:?}", killed.elapsed());
    drop(agent);
}
