//! Several servers on etcd. Two servers on one etcd with a joined agent: the agent's
//! load balancer learns both servers from the `kubernetes` endpoints and keeps the
//! node working through the other when the one it joined through is killed. And the
//! issue's whole rig, in network namespaces on a LAN of the test's own: three etcd
//! members, three servers, two agents; the leading server killed, then an etcd member,
//! then the server restarted.

use crate::EXE;
use skiff_testsupport::cluster::{clean_node_root, lenient_eviction};
use skiff_testsupport::etcd::Etcd;
use skiff_testsupport::server::{self, Server};
use skiff_testsupport::Root;
use std::collections::BTreeSet;
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

/// One server of the three-server rig: in its own namespace on the lab's LAN.
struct HaServer {
    ns: std::sync::Arc<skiff_testsupport::netns::NetNs>,
    ip: String,
    dir: std::path::PathBuf,
    server: Option<Server>,
}

impl HaServer {
    fn start(&mut self, endpoints: &str) {
        let mut cmd = Command::new(EXE);
        cmd.args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            "6443",
            "--bind-address",
            "0.0.0.0",
            "--advertise-address",
            &self.ip,
            "--datastore-endpoint",
            endpoints,
            "--token",
            "s3cret",
            "--flannel-backend",
            "none",
            "--disable",
            "servicelb,coredns",
        ])
        .arg("--data-dir")
        .arg(self.dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(self.dir.join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        self.ns.enter(&mut cmd);
        self.server = Some(Server::start(cmd));
    }

    /// kubectl against this server (from its namespace).
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let kc = self.dir.join("kubeconfig");
        let mut all = vec![
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--request-timeout",
            "10s",
        ];
        all.extend_from_slice(args);
        self.ns.run("kubectl", &all)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} on {}: {}",
            self.ip,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.kubectl(args).stdout)
            .trim()
            .to_string()
    }

    /// The leader-election identities this server's log says it led with.
    fn identities(&self) -> Vec<String> {
        self.server
            .as_ref()
            .map(|s| s.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("started leading"))
            .filter_map(|l| l.split("identity=").nth(1))
            .map(|s| s.trim().to_string())
            .collect()
    }
}

/// A joined agent of the rig.
struct HaAgent {
    child: Option<Child>,
    root: Root,
    name: String,
}

/// The rig, torn down in order: pods, agents, servers, etcd, namespaces.
struct Rig {
    agents: Vec<HaAgent>,
    servers: Vec<HaServer>,
    members: Vec<skiff_testsupport::etcd::Member>,
    _nodes: Vec<std::sync::Arc<skiff_testsupport::netns::NetNs>>,
    _lan: skiff_testsupport::netns::NetNs,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(s) = self.servers.iter().find(|s| s.server.is_some()) {
            let _ = s.kubectl(&skiff_testsupport::lab::DELETE_EVERY_POD);
        }
        for a in &mut self.agents {
            if let Some(mut c) = a.child.take() {
                // SAFETY: kill(2) takes integers only.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                let _ = c.wait();
            }
            clean_node_root(&a.root, &a.name);
        }
        for s in &mut self.servers {
            s.server = None;
        }
        self.members.clear();
    }
}

/// The addresses the `kubernetes` Endpoints list, sorted.
fn api_endpoints(s: &HaServer) -> Vec<String> {
    let mut v: Vec<String> = s
        .out(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn lease_holder(s: &HaServer, lease: &str) -> String {
    s.out(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        lease,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

#[test]
fn three_servers_on_three_etcd_members_survive_losing_the_leader_and_a_member() {
    use skiff_testsupport::lab::{lan, lan_node};
    let prefix = format!("skh{}", std::process::id() % 100_000);
    let lan = lan(&prefix);
    let nodes: Vec<_> = (0..5).map(|i| lan_node(&lan, &prefix, i)).collect();
    let t = tempfile::tempdir().unwrap();
    // etcd member i and server i share namespace i; agents are in 3 and 4.
    let names = ["m0", "m1", "m2"];
    let all: Vec<(&str, &str)> = (0..3).map(|i| (names[i], nodes[i].1.as_str())).collect();
    let members: Vec<_> = (0..3)
        .map(|i| {
            skiff_testsupport::etcd::Member::start_in(&nodes[i].0, names[i], &nodes[i].1, &all)
        })
        .collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    let endpoints = endpoints.join(",");
    let mut rig = Rig {
        agents: Vec::new(),
        servers: (0..3)
            .map(|i| HaServer {
                ns: nodes[i].0.clone(),
                ip: nodes[i].1.clone(),
                dir: t.path().join(format!("s{i}")),
                server: None,
            })
            .collect(),
        members,
        _nodes: nodes.iter().map(|n| n.0.clone()).collect(),
        _lan: lan,
    };
    for s in &mut rig.servers {
        s.start(&endpoints);
    }
    let token = server::banner_token(rig.servers[0].server.as_ref().unwrap().banner.as_str());
    for s in &rig.servers[1..] {
        assert_eq!(
            server::banner_token(&s.server.as_ref().unwrap().banner),
            token,
            "one cluster, one token"
        );
    }
    wait_for(
        "the kubernetes endpoints to list the three servers",
        60,
        || api_endpoints(&rig.servers[1]).len() == 3,
    );

    // Two agents in namespaces of their own, joined through server 0.
    for (i, (ns, ip)) in nodes.iter().enumerate().skip(3) {
        let root = Root::with_busybox(EXE);
        let name = format!("{prefix}-n{i}");
        let url = format!("https://{}:6443", rig.servers[0].ip);
        let mut cmd = skiff_testsupport::lab::agent_command(&root, &url, &token, &name, ip);
        ns.enter(&mut cmd);
        let child = cmd.spawn().unwrap();
        rig.agents.push(HaAgent {
            child: Some(child),
            root,
            name,
        });
    }
    let s1 = &rig.servers[1];
    for a in &rig.agents {
        wait_for("the agents' nodes to be Ready", 90, || {
            s1.out(&[
                "get",
                "node",
                &a.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]) == "True"
        });
    }
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c",
                    "image": "busybox", "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"]}]}}}
    });
    let file = t.path().join("web.json");
    std::fs::write(&file, deployment.to_string()).unwrap();
    s1.ok(&["apply", "-f", file.to_str().unwrap()]);
    let ready = |s: &HaServer, n: &str| {
        s.out(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == n
    };
    wait_for("4 ready replicas", 120, || ready(s1, "4"));
    let uids = |s: &HaServer| {
        s.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ])
    };
    let pods_before = uids(s1);

    // Who leads: the holder's identity is in one server's log.
    let holder = lease_holder(s1, "kube-controller-manager");
    let leader = rig
        .servers
        .iter()
        .position(|s| s.identities().contains(&holder))
        .unwrap_or_else(|| panic!("no server led as {holder}"));
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (a, b) = (survivors[0], survivors[1]);

    // Writes go on through every server while the leader is killed; those
    // acknowledged must all be there afterwards.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = rig
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (ns, kc) = (s.ns.clone(), s.dir.join("kubeconfig"));
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let name = format!("w{i}-{n}");
                    n += 1;
                    let o = ns.run(
                        "kubectl",
                        &[
                            "--kubeconfig",
                            kc.to_str().unwrap(),
                            "--request-timeout",
                            "5s",
                            "create",
                            "configmap",
                            &name,
                            "--from-literal=k=v",
                        ],
                    );
                    if o.status.success() {
                        acked.lock().unwrap().push(name);
                    } else {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    rig.servers[leader].server.as_mut().unwrap().kill();
    rig.servers[leader].server = None;
    let killed = Instant::now();
    let (sa, sb) = (&rig.servers[a], &rig.servers[b]);
    let ids: Vec<String> = [sa, sb].iter().flat_map(|s| s.identities()).collect();
    wait_for("another server to hold both leases", 30, || {
        let ids: Vec<String> = [sa, sb].iter().flat_map(|s| s.identities()).collect();
        ["kube-controller-manager", "kube-scheduler"]
            .iter()
            .all(|l| ids.contains(&lease_holder(sa, l)))
    });
    assert!(killed.elapsed() < Duration::from_secs(30));
    let _ = ids;
    // The workloads keep converging: a scale-up after the kill completes.
    sa.ok(&["scale", "deployment", "web", "--replicas=6"]);
    wait_for("6 ready replicas after the leader's death", 120, || {
        ready(sb, "6")
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "only {} writes acknowledged", acked.len());
    let stored: BTreeSet<String> = sb
        .ok(&[
            "get",
            "configmaps",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // The agents kept their pods and talk to the cluster through the others.
    let pods_now = uids(sb);
    for uid in pods_before.split_whitespace() {
        assert!(pods_now.contains(uid), "pod {uid} was replaced");
    }
    let renewals = |s: &HaServer| -> Vec<String> {
        rig.agents
            .iter()
            .map(|ag| {
                s.out(&[
                    "get",
                    "lease",
                    "-n",
                    "kube-node-lease",
                    &ag.name,
                    "-o",
                    "jsonpath={.spec.renewTime}",
                ])
            })
            .collect()
    };
    let before = renewals(sa);
    wait_for(
        "both agents to renew their leases after the kill",
        40,
        || {
            renewals(sa)
                .iter()
                .zip(&before)
                .all(|(now, then)| now != then)
        },
    );
    wait_for(
        "the kubernetes endpoints to drop the dead server",
        40,
        || {
            let eps = api_endpoints(sa);
            eps.len() == 2 && !eps.contains(&rig.servers[leader].ip)
        },
    );

    // One etcd member dies: the cluster keeps working on the other two.
    let victim = 2;
    rig.members[victim].kill();
    let mut n = 0;
    wait_for("a write after losing an etcd member", 30, || {
        n += 1;
        sa.kubectl(&["create", "configmap", &format!("after-member-{n}")])
            .status
            .success()
    });
    sb.ok(&["scale", "deployment", "web", "--replicas=5"]);
    wait_for("5 ready replicas on two etcd members", 90, || {
        ready(sa, "5") && ready(sb, "5")
    });

    // The killed server restarts and rejoins.
    rig.servers[leader].start(&endpoints);
    assert_eq!(
        server::banner_token(&rig.servers[leader].server.as_ref().unwrap().banner),
        token
    );
    let back = &rig.servers[leader];
    wait_for("the restarted server to answer", 30, || {
        back.out(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ]) == "5"
    });
    wait_for("the kubernetes endpoints to list it again", 40, || {
        api_endpoints(back).contains(&back.ip)
    });
}
