//! The network-namespace fixture of the integration tests: a "node" namespace with a
//! bridge and "pod" namespaces running small TCP/UDP servers. No namespace has a link to
//! the host's; dropping the fixture stops the servers and deletes the namespaces.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use nix::sched::{setns, CloneFlags};
use serde_json::json;
use skiff_network::conntrack::Conntrack;
use skiff_network::nft::{Backend, NftCli, NftNetlink};
use skiff_network::proxy::{Proxier, RuleSettings};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const SERVICE_CIDR: &str = "10.241.0.0/16";
pub const CLUSTER_CIDR: &str = "10.240.0.0/16";
pub const GATEWAY: &str = "10.240.0.1";
pub const NODE: &str = "node-a";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
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

pub fn pod_ip(i: usize) -> String {
    format!("10.240.0.{}", 10 + i)
}

/// A node namespace with a bridge, `pods` pod namespaces on it, and servers in each pod
/// answering "<pod> <peer ip>" on TCP 8080 and 9090 and UDP 5353. Dropping it stops the
/// servers and deletes every namespace (their links, routes and tables go with them).
pub struct Lab {
    pub node: String,
    pub pods: Vec<String>,
    servers: Vec<Server>,
    covered: bool,
    pub service_cidr: String,
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
    pub fn new(pods: usize) -> Lab {
        Lab::with_service_cidr(pods, SERVICE_CIDR)
    }

    pub fn with_service_cidr(pods: usize, service_cidr: &str) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let node = format!("skn{}x{n}", std::process::id());
        let mut lab = Lab {
            node: node.clone(),
            pods: Vec::new(),
            servers: Vec::new(),
            covered: false,
            service_cidr: service_cidr.to_string(),
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
        ipn(&["route", "add", service_cidr, "dev", "br0"]);
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

    /// A client outside the cluster CIDR: namespace `<node>o` at 10.250.0.2 on the
    /// node's bridge (the node is 10.250.0.1 there), with the node's route_localnet on
    /// so that its NodePorts answer on 127.0.0.1.
    pub fn outside(&mut self) -> String {
        let (node, ns) = (self.node.clone(), format!("{}o", self.node));
        run(&["ip", "netns", "add", &ns]);
        self.pods.push(ns.clone());
        run(&[
            "ip",
            "-n",
            &node,
            "addr",
            "add",
            "10.250.0.1/24",
            "dev",
            "br0",
        ]);
        run(&[
            "ip", "-n", &node, "link", "add", "vo", "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        run(&[
            "ip", "-n", &node, "link", "set", "vo", "master", "br0", "up",
        ]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            "10.250.0.2/24",
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            "10.250.0.1",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &node,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet",
        ]);
        ns
    }

    pub fn settings(&self) -> RuleSettings {
        RuleSettings {
            table: "skiff-node".into(),
            node_name: NODE.into(),
            cluster_cidr: Some(CLUSTER_CIDR.parse().unwrap()),
            service_cidr: self.service_cidr.parse().unwrap(),
        }
    }

    /// The agent's proxier: netlink batches for partial syncs, `nft` for the rest.
    pub fn proxier(&self) -> Proxier<NftNetlink> {
        Proxier::new(NftNetlink::in_netns(&self.node), self.settings())
            .with_conntrack(Conntrack::in_netns(&self.node))
    }

    /// Checks, in the node's kernel, that the whole service range is rejected; the
    /// clients refuse to send to it before.
    pub fn check_covered(&mut self) {
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
            text.contains(&format!("ip daddr {} goto reject-chain", self.service_cidr)),
            "{text}"
        );
        self.covered = true;
    }

    /// Whether the node's table rejects the whole service range yet (then the clients
    /// may send to it).
    pub fn try_covered(&mut self) -> bool {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node,
                "nft",
                "list",
                "chain",
                "ip",
                "skiff-node",
            ])
            .arg("cluster-ips-check")
            .output()
            .unwrap();
        let want = format!("ip daddr {} goto reject-chain", self.service_cidr);
        self.covered = out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&want);
        self.covered
    }

    pub fn chains(&self) -> Vec<String> {
        NftCli::in_netns(&self.node)
            .list_chains("skiff-node")
            .unwrap()
    }

    /// A TCP connection from `ns` to `addr`: the server's answer.
    pub fn tcp(&self, ns: &str, addr: &str) -> std::io::Result<String> {
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
    pub fn udp(&self, ns: &str, addr: &str) -> std::io::Result<String> {
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
    pub fn udp_from(&self, ns: &str, src_port: u16, addr: &str) -> String {
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
    pub fn hits(&self, ns: &str, addr: &str, n: usize) -> BTreeMap<String, usize> {
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
pub struct Server {
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

pub fn service(
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
pub fn slice(svc: &str, ports: serde_json::Value, eps: &[(usize, &str)]) -> Arc<EndpointSlice> {
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

pub fn keys(k: &[&str]) -> BTreeSet<String> {
    k.iter().map(|s| s.to_string()).collect()
}

pub fn web(eps: &[(usize, &str)]) -> (Arc<Service>, Arc<EndpointSlice>) {
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

pub fn refused(r: std::io::Result<String>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}
