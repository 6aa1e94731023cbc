//! The proxy's rules in the kernel (root): each test makes a "node" network namespace
//! with a bridge and one or two "pod" namespaces running small TCP/UDP servers, programs
//! the proxy's table inside the node namespace only, and connects to ClusterIPs from the
//! node and from the pods. No namespace has a link to the host's, and nothing is sent to
//! the service range before the node's table rejects the whole range.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use nix::sched::{setns, CloneFlags};
use serde_json::json;
use skiff_network::conntrack::Conntrack;
use skiff_network::nft::{Backend, NftCli};
use skiff_network::proxy::{Proxier, RuleSettings, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SERVICE_CIDR: &str = "10.241.0.0/16";
const CLUSTER_CIDR: &str = "10.240.0.0/16";
const GATEWAY: &str = "10.240.0.1";
const NODE: &str = "node-a";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            setns(&fd, CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn pod_ip(i: usize) -> String {
    format!("10.240.0.{}", 10 + i)
}

/// A node namespace with a bridge, `pods` pod namespaces on it, and servers in each pod
/// answering "<pod> <peer ip>" on TCP 8080 and 9090 and UDP 5353. Dropping it stops the
/// servers and deletes every namespace (their links, routes and tables go with them).
struct Lab {
    node: String,
    pods: Vec<String>,
    servers: Vec<Server>,
    covered: bool,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        for ns in self.pods.iter().chain(std::iter::once(&self.node)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Lab {
    fn new(pods: usize) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let node = format!("skn{}x{n}", std::process::id());
        let mut lab = Lab {
            node: node.clone(),
            pods: Vec::new(),
            servers: Vec::new(),
            covered: false,
        };
        run(&["ip", "netns", "add", &node]);
        let ipn = |args: &[&str]| {
            let mut v = vec!["ip", "-n", &node];
            v.extend_from_slice(args);
            run(&v);
        };
        ipn(&["link", "set", "lo", "up"]);
        ipn(&["link", "add", "br0", "type", "bridge"]);
        ipn(&["addr", "add", &format!("{GATEWAY}/24"), "dev", "br0"]);
        ipn(&["link", "set", "br0", "up"]);
        // A node-originated packet needs a route before output DNAT.
        ipn(&["route", "add", SERVICE_CIDR, "dev", "br0"]);
        run(&[
            "ip",
            "netns",
            "exec",
            &node,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ]);
        for i in 0..pods {
            let pod = format!("{node}p{i}");
            run(&["ip", "netns", "add", &pod]);
            lab.pods.push(pod.clone());
            let veth = format!("v{i}");
            ipn(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod,
            ]);
            ipn(&["link", "set", &veth, "master", "br0", "up"]);
            // As CNI's bridge plugin with hairpinMode: with bridge-nf-call-iptables on
            // (the default), a pod's packet DNAT'd back to itself is bridged out of the
            // port it came in on.
            ipn(&[
                "link",
                "set",
                &veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ]);
            let ipp = |args: &[&str]| {
                let mut v = vec!["ip", "-n", &pod];
                v.extend_from_slice(args);
                run(&v);
            };
            ipp(&["link", "set", "lo", "up"]);
            ipp(&["addr", "add", &format!("{}/24", pod_ip(i)), "dev", "eth0"]);
            ipp(&["link", "set", "eth0", "up"]);
            ipp(&["route", "add", "default", "via", GATEWAY]);
            let server = Server::start(&pod, &format!("pod{i}"));
            lab.servers.push(server);
        }
        lab
    }

    fn settings(&self) -> RuleSettings {
        RuleSettings {
            table: "skiff-node".into(),
            node_name: NODE.into(),
            cluster_cidr: Some(CLUSTER_CIDR.parse().unwrap()),
            service_cidr: SERVICE_CIDR.parse().unwrap(),
        }
    }

    fn proxier(&self) -> Proxier<NftCli> {
        Proxier::new(NftCli::in_netns(&self.node), self.settings())
            .with_conntrack(Conntrack::in_netns(&self.node))
    }

    /// Checks, in the node's kernel, that the whole service range is rejected; the
    /// clients refuse to send to it before.
    fn check_covered(&mut self) {
        let text = run(&[
            "ip",
            "netns",
            "exec",
            &self.node,
            "nft",
            "list",
            "chain",
            "ip",
            "skiff-node",
            "cluster-ips-check",
        ]);
        assert!(
            text.contains(&format!("ip daddr {SERVICE_CIDR} goto reject-chain")),
            "{text}"
        );
        self.covered = true;
    }

    fn chains(&self) -> Vec<String> {
        NftCli::in_netns(&self.node)
            .list_chains("skiff-node")
            .unwrap()
    }

    /// A TCP connection from `ns` to `addr`: the server's answer.
    fn tcp(&self, ns: &str, addr: &str) -> std::io::Result<String> {
        assert!(self.covered, "the service range is not covered yet");
        let addr: SocketAddr = addr.parse().unwrap();
        in_ns(ns, || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(1000))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
    }

    /// One UDP datagram from `ns` to `addr` and its answer.
    fn udp(&self, ns: &str, addr: &str) -> std::io::Result<String> {
        assert!(self.covered, "the service range is not covered yet");
        let addr: SocketAddr = addr.parse().unwrap();
        in_ns(ns, || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.send_to(b"hi", addr)?;
            let mut buf = [0u8; 256];
            let (n, _) = s.recv_from(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
    }

    /// One UDP datagram from `ns` to `addr` from a fixed source port (the same flow
    /// each time) and its answer.
    fn udp_from(&self, ns: &str, src_port: u16, addr: &str) -> String {
        assert!(self.covered, "the service range is not covered yet");
        let addr: SocketAddr = addr.parse().unwrap();
        in_ns(ns, || {
            let s = UdpSocket::bind(("0.0.0.0", src_port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(b"hi", addr).unwrap();
            let mut buf = [0u8; 256];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
    }

    /// Which pod answered each of `n` connections from `ns`.
    fn hits(&self, ns: &str, addr: &str, n: usize) -> BTreeMap<String, usize> {
        let mut hits = BTreeMap::new();
        for _ in 0..n {
            let answer = self.tcp(ns, addr).unwrap();
            let pod = answer.split(' ').next().unwrap().to_string();
            *hits.entry(pod).or_insert(0) += 1;
        }
        hits
    }
}

/// TCP and UDP servers in one pod namespace, stopped and joined on drop.
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Server {
    fn start(ns: &str, name: &str) -> Server {
        let (tcp, udp) = in_ns(ns, || {
            let tcp: Vec<TcpListener> = [8080, 9090]
                .iter()
                .map(|p| TcpListener::bind(("0.0.0.0", *p)).unwrap())
                .collect();
            (tcp, UdpSocket::bind("0.0.0.0:5353").unwrap())
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for l in tcp {
            l.set_nonblocking(true).unwrap();
            let (stop, name) = (stop.clone(), name.to_string());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((mut s, peer)) => {
                            let _ = s.write_all(format!("{name} {}", peer.ip()).as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
        }
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let (stop2, name) = (stop.clone(), name.to_string());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stop2.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{name} {}", peer.ip()).as_bytes(), peer);
                }
            }
        }));
        Server { stop, threads }
    }
}

fn service(
    name: &str,
    ip: &str,
    extra: serde_json::Value,
    ports: serde_json::Value,
) -> Arc<Service> {
    let mut spec = json!({"clusterIP": ip, "ports": ports});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    Arc::new(
        serde_json::from_value(
            json!({"metadata": {"namespace": "default", "name": name}, "spec": spec}),
        )
        .unwrap(),
    )
}

/// A hand-written slice for Service `svc` with endpoints (pod index, node name).
fn slice(svc: &str, ports: serde_json::Value, eps: &[(usize, &str)]) -> Arc<EndpointSlice> {
    let eps: Vec<_> = eps
        .iter()
        .map(|(i, node)| json!({"addresses": [pod_ip(*i)], "nodeName": node}))
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": format!("{svc}-manual"),
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports, "endpoints": eps}))
        .unwrap(),
    )
}

fn keys(k: &[&str]) -> BTreeSet<String> {
    k.iter().map(|s| s.to_string()).collect()
}

fn web(eps: &[(usize, &str)]) -> (Arc<Service>, Arc<EndpointSlice>) {
    (
        service(
            "web",
            "10.241.0.10",
            json!({}),
            json!([{"name": "http", "port": 80, "targetPort": "web"}]),
        ),
        slice("web", json!([{"name": "http", "port": 8080}]), eps),
    )
}

fn refused(r: std::io::Result<String>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn cluster_ip_spreads_over_endpoints_from_the_node_and_from_pods() {
    let mut lab = Lab::new(2);
    let (svc, sl) = web(&[(0, NODE), (1, "node-b")]);
    let snap = Snapshot {
        services: vec![svc],
        slices: vec![sl],
    };
    let mut p = lab.proxier();
    assert!(p.sync(&snap, &BTreeSet::new()).unwrap().full);
    lab.check_covered();
    let node = lab.node.clone();
    // targetPort by name: the slice's port named "http" is 8080.
    let hits = lab.hits(&node, "10.241.0.10:80", 40);
    assert!(
        hits.get("pod0") >= Some(&1) && hits.get("pod1") >= Some(&1),
        "{hits:?}"
    );
    // From a pod: the other pod or itself (hairpin), never a failure.
    let pod1 = lab.pods[1].clone();
    let hits = lab.hits(&pod1, "10.241.0.10:80", 40);
    assert!(
        hits.get("pod0") >= Some(&1) && hits.get("pod1") >= Some(&1),
        "{hits:?}"
    );
}

#[test]
fn hairpin_udp_and_multi_port() {
    let mut lab = Lab::new(1);
    let snap = Snapshot {
        services: vec![service(
            "multi",
            "10.241.0.20",
            json!({}),
            json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 81},
                   {"name": "dns", "port": 53, "protocol": "UDP"}]),
        )],
        slices: vec![slice(
            "multi",
            json!([{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090},
                   {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            &[(0, NODE)],
        )],
    };
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    let (node, pod0) = (lab.node.clone(), lab.pods[0].clone());
    assert_eq!(
        lab.tcp(&node, "10.241.0.20:80").unwrap(),
        format!("pod0 {GATEWAY}")
    );
    assert_eq!(
        lab.tcp(&node, "10.241.0.20:81").unwrap(),
        format!("pod0 {GATEWAY}")
    );
    assert_eq!(
        lab.udp(&node, "10.241.0.20:53").unwrap(),
        format!("pod0 {GATEWAY}")
    );
    // The pod reaching its own Service comes back to itself, masqueraded to the
    // gateway so the reply returns through the node.
    assert_eq!(
        lab.tcp(&pod0, "10.241.0.20:80").unwrap(),
        format!("pod0 {GATEWAY}")
    );
    assert_eq!(
        lab.udp(&pod0, "10.241.0.20:53").unwrap(),
        format!("pod0 {GATEWAY}")
    );
    // A port the Service does not have is rejected.
    assert!(refused(lab.tcp(&pod0, "10.241.0.20:82")));
}

#[test]
fn rejects_without_endpoints_outside_services_and_after_deletion() {
    let mut lab = Lab::new(1);
    let (svc, sl) = web(&[(0, NODE)]);
    let mut snap = Snapshot {
        services: vec![
            svc,
            service("empty", "10.241.0.30", json!({}), json!([{"port": 80}])),
        ],
        slices: vec![sl],
    };
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    let (node, pod0) = (lab.node.clone(), lab.pods[0].clone());
    for ns in [&node, &pod0] {
        for addr in ["10.241.0.30:80", "10.241.99.9:80", "10.241.0.10:81"] {
            let t = Instant::now();
            let r = lab.tcp(ns, addr);
            assert!(refused(r), "{ns} → {addr}");
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{addr}: {:?}",
                t.elapsed()
            );
        }
    }
    assert!(lab
        .tcp(&node, "10.241.0.10:80")
        .unwrap()
        .starts_with("pod0"));
    snap.services
        .retain(|s| s.metadata.name.as_deref() != Some("web"));
    let stats = p.sync(&snap, &keys(&["default/web"])).unwrap();
    assert!(!stats.full);
    assert!(refused(lab.tcp(&node, "10.241.0.10:80")));
    assert!(refused(lab.tcp(&pod0, "10.241.0.10:80")));
    assert!(!lab.chains().iter().any(|c| c.contains("default/web/")));
}

#[test]
fn client_ip_affinity_sticks() {
    let mut lab = Lab::new(2);
    let snap = Snapshot {
        services: vec![service(
            "sticky",
            "10.241.0.40",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}}}),
            json!([{"name": "http", "port": 80}]),
        )],
        slices: vec![slice(
            "sticky",
            json!([{"name": "http", "port": 8080}]),
            &[(0, NODE), (1, NODE)],
        )],
    };
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    let node = lab.node.clone();
    let hits = lab.hits(&node, "10.241.0.40:80", 30);
    assert_eq!(hits.len(), 1, "{hits:?}");
}

#[test]
fn endpoint_updates_apply_incrementally() {
    let mut lab = Lab::new(2);
    let (svc, sl) = web(&[(0, NODE)]);
    let other = service(
        "other",
        "10.241.0.11",
        json!({}),
        json!([{"name": "http", "port": 80}]),
    );
    let other_slice = slice(
        "other",
        json!([{"name": "http", "port": 9090}]),
        &[(1, NODE)],
    );
    let mut snap = Snapshot {
        services: vec![svc, other],
        slices: vec![sl, other_slice],
    };
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    let node = lab.node.clone();
    assert_eq!(
        lab.hits(&node, "10.241.0.10:80", 5)
            .keys()
            .collect::<Vec<_>>(),
        ["pod0"]
    );
    let before = lab.chains();
    snap.slices[0] = web(&[(1, NODE)]).1;
    let stats = p.sync(&snap, &keys(&["default/web"])).unwrap();
    assert!(!stats.full);
    assert_eq!(
        lab.hits(&node, "10.241.0.10:80", 5)
            .keys()
            .collect::<Vec<_>>(),
        ["pod1"]
    );
    let after = lab.chains();
    let gone: Vec<_> = before.iter().filter(|c| !after.contains(c)).collect();
    let new: Vec<_> = after.iter().filter(|c| !before.contains(c)).collect();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(
        gone[0].contains("default/web/tcp/http__10.240.0.10/8080"),
        "{gone:?}"
    );
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].contains("default/web/tcp/http__10.240.0.11/8080"),
        "{new:?}"
    );
    // The other Service was not touched and still answers.
    assert!(lab
        .tcp(&node, "10.241.0.11:80")
        .unwrap()
        .starts_with("pod1"));
    // A new proxier (an agent restart) replaces the content in place and drops what
    // its snapshot no longer has.
    snap.services
        .retain(|s| s.metadata.name.as_deref() != Some("other"));
    let mut restarted = lab.proxier();
    assert!(!restarted.ensure_skeleton().unwrap());
    assert!(restarted.sync(&snap, &BTreeSet::new()).unwrap().full);
    assert!(!lab.chains().iter().any(|c| c.contains("default/other/")));
    assert!(refused(lab.tcp(&node, "10.241.0.11:80")));
    assert!(lab
        .tcp(&node, "10.241.0.10:80")
        .unwrap()
        .starts_with("pod1"));
}

#[test]
fn internal_traffic_policy_local() {
    let mut lab = Lab::new(2);
    let snap = Snapshot {
        services: vec![
            service(
                "loc",
                "10.241.0.50",
                json!({"internalTrafficPolicy": "Local"}),
                json!([{"name": "http", "port": 80}]),
            ),
            service(
                "far",
                "10.241.0.51",
                json!({"internalTrafficPolicy": "Local"}),
                json!([{"name": "http", "port": 80}]),
            ),
        ],
        slices: vec![
            slice(
                "loc",
                json!([{"name": "http", "port": 8080}]),
                &[(0, NODE), (1, "node-b")],
            ),
            slice(
                "far",
                json!([{"name": "http", "port": 8080}]),
                &[(1, "node-b")],
            ),
        ],
    };
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    let node = lab.node.clone();
    assert_eq!(
        lab.hits(&node, "10.241.0.50:80", 10)
            .keys()
            .collect::<Vec<_>>(),
        ["pod0"]
    );
    // No endpoint on this node: dropped, not rejected.
    let r = lab.tcp(&node, "10.241.0.51:80");
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock),
        "{r:?}"
    );
}

#[test]
fn skeleton_covers_the_range_and_the_table_can_be_deleted() {
    let mut lab = Lab::new(0);
    let p = lab.proxier();
    assert!(p.ensure_skeleton().unwrap());
    assert!(!p.ensure_skeleton().unwrap());
    lab.check_covered();
    let node = lab.node.clone();
    assert!(refused(lab.tcp(&node, "10.241.3.4:443")));
    let nft = NftCli::in_netns(&lab.node);
    assert!(nft.delete_table("skiff-node").unwrap());
    assert!(!nft.table_exists("skiff-node").unwrap());
    assert!(!nft.delete_table("skiff-node").unwrap());
}

#[test]
fn udp_flows_to_removed_endpoints_are_deleted() {
    let mut lab = Lab::new(2);
    let dns = || {
        service(
            "dns",
            "10.241.0.60",
            json!({}),
            json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
        )
    };
    let eps = |i: usize| {
        slice(
            "dns",
            json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]),
            &[(i, NODE)],
        )
    };
    let mut snap = Snapshot {
        services: vec![dns()],
        slices: vec![eps(0)],
    };
    let node = lab.node.clone();
    let (vip, src) = ("10.241.0.60:53", 40053);
    // Without cleanup a UDP flow keeps going to the endpoint it was first sent to.
    let mut bare = Proxier::new(NftCli::in_netns(&lab.node), lab.settings());
    bare.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    assert!(lab.udp_from(&node, src, vip).starts_with("pod0"));
    snap.slices = vec![eps(1)];
    bare.sync(&snap, &keys(&["default/dns"])).unwrap();
    assert!(
        lab.udp_from(&node, src, vip).starts_with("pod0"),
        "the flow outlives its endpoint"
    );
    // A proxier with conntrack cleanup: its first sync sees the port gain endpoints and
    // deletes the port's flows; then an endpoint removal deletes the flows to it.
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    assert!(lab.udp_from(&node, src, vip).starts_with("pod1"));
    snap.slices = vec![eps(0)];
    p.sync(&snap, &keys(&["default/dns"])).unwrap();
    assert!(lab.udp_from(&node, src, vip).starts_with("pod0"));
}
