//! Pod routes between two nodes, for real: each "node" is a network namespace of the
//! test's own, the two joined by a veth pair (their LAN), each with one "pod"
//! namespace behind a veth. The routes are made by `routes::reconcile` running inside
//! the node's namespace; a TCP connection from one pod to the other shows that the
//! pods reach each other by pod IP, without NAT. Nothing is linked to the host's
//! namespace; everything goes when the test ends.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skiff_network::routes::{self, Backend, Peer, RouteSettings};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn out(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns(2) on this thread only, with a namespace file we hold open.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns into {path}");
        f()
    })
    .join()
    .unwrap()
}

fn reconcile_in(ns: &str, s: RouteSettings, peers: Vec<Peer>) {
    in_ns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = routes::handle().unwrap();
            routes::reconcile(&h, &s, &peers).await.unwrap();
        })
    })
}

fn cleanup_in(ns: &str, device: &'static str) {
    in_ns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = routes::handle().unwrap();
            routes::cleanup(&h, device).await.unwrap();
        })
    })
}

/// Two nodes and a pod on each; the namespaces go on drop.
struct TwoNodes {
    names: Vec<String>,
    node: [String; 2],
    pod: [String; 2],
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl TwoNodes {
    fn new() -> TwoNodes {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = format!("skr{}x{k}", std::process::id() % 100_000);
        let node = [format!("{p}n0"), format!("{p}n1")];
        let pod = [format!("{p}p0"), format!("{p}p1")];
        let t = TwoNodes {
            names: node.iter().chain(pod.iter()).cloned().collect(),
            node,
            pod,
        };
        for n in &t.names {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        // The LAN: 10.213.254.1 and .2.
        ip(&[
            "-n", &t.node[0], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &t.node[1],
        ]);
        for i in 0..2 {
            let n = &t.node[i];
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("10.213.254.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            ip(&["-n", n, "link", "set", "eth0", "up"]);
            let o = Command::new("ip")
                .args(["netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            // The pod: 10.42.i.5 behind 10.42.i.1 on the node.
            ip(&[
                "-n", n, "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns",
                &t.pod[i],
            ]);
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("10.42.{i}.1/24"),
                "dev",
                "vpod",
            ]);
            ip(&["-n", n, "link", "set", "vpod", "up"]);
            let pd = &t.pod[i];
            ip(&[
                "-n",
                pd,
                "addr",
                "add",
                &format!("10.42.{i}.5/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", pd, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                pd,
                "route",
                "add",
                "default",
                "via",
                &format!("10.42.{i}.1"),
            ]);
        }
        t
    }

    fn settings(&self, i: usize, backend: Backend) -> RouteSettings {
        RouteSettings::new(
            backend,
            &self.node[i],
            Ipv4Addr::new(10, 213, 254, i as u8 + 1),
            format!("10.42.{i}.0/24").parse().unwrap(),
        )
    }

    fn peer(&self, i: usize, backend: Backend) -> Peer {
        Peer {
            name: self.node[i].clone(),
            pod_cidr: format!("10.42.{i}.0/24").parse().unwrap(),
            public_ip: Ipv4Addr::new(10, 213, 254, i as u8 + 1),
            vtep_mac: (backend == Backend::Vxlan).then(|| routes::vtep_mac(&self.node[i])),
        }
    }

    fn route_all(&self, backend: Backend) {
        reconcile_in(
            &self.node[0],
            self.settings(0, backend),
            vec![self.peer(1, backend)],
        );
        reconcile_in(
            &self.node[1],
            self.settings(1, backend),
            vec![self.peer(0, backend)],
        );
    }

    /// Connects from pod 0 to pod 1; returns the source address pod 1 saw.
    fn pod_to_pod(&self) -> Result<String, std::io::Error> {
        let listener = in_ns(&self.pod[1], || TcpListener::bind("10.42.1.5:0"));
        let listener = listener?;
        let port = listener.local_addr()?.port();
        let server = std::thread::spawn(move || -> std::io::Result<String> {
            let (mut s, peer) = listener.accept()?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf)?;
            s.write_all(b"pong")?;
            Ok(peer.ip().to_string())
        });
        let got = in_ns(&self.pod[0], move || -> std::io::Result<String> {
            let addr = format!("10.42.1.5:{port}").parse().unwrap();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"ping!")?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).to_string())
        });
        match got {
            Ok(reply) => {
                assert_eq!(reply, "pong");
                server.join().unwrap()
            }
            Err(e) => {
                // Unblock the listener's accept, then report the client's error.
                drop(server);
                Err(e)
            }
        }
    }
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn vxlan_carries_pod_traffic_between_nodes_without_nat() {
    let t = TwoNodes::new();
    // No routes yet: pod 1 is unreachable from pod 0.
    assert!(t.pod_to_pod().is_err());
    // A lone node makes no device.
    reconcile_in(&t.node[0], t.settings(0, Backend::Vxlan), vec![]);
    assert!(!out("ip", &["-n", &t.node[0], "link"]).contains("flannel.1"));
    t.route_all(Backend::Vxlan);
    let link = out("ip", &["-n", &t.node[0], "-d", "link", "show", "flannel.1"]);
    assert!(
        link.contains("vxlan id 1") && link.contains("mtu 1450") && link.contains("nolearning"),
        "{link}"
    );
    assert!(link.contains(&{
        let m = routes::vtep_mac(&t.node[0]);
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }));
    let r = out("ip", &["-n", &t.node[0], "route", "show", "proto", "200"]);
    assert!(
        r.contains("10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink"),
        "{r}"
    );
    // The pod's own address arrives: no NAT between pods.
    assert_eq!(t.pod_to_pod().unwrap(), "10.42.0.5");
    // Reconciling again changes nothing and still works.
    t.route_all(Backend::Vxlan);
    assert_eq!(t.pod_to_pod().unwrap(), "10.42.0.5");
    // The other node goes: its route, neighbour and forwarding entries go.
    reconcile_in(&t.node[0], t.settings(0, Backend::Vxlan), vec![]);
    assert_eq!(
        out("ip", &["-n", &t.node[0], "route", "show", "proto", "200"]).trim(),
        ""
    );
    assert_eq!(
        out(
            "ip",
            &["-n", &t.node[0], "neigh", "show", "dev", "flannel.1"]
        )
        .trim(),
        ""
    );
    let fdb = out(
        "bridge",
        &["-n", &t.node[0], "fdb", "show", "dev", "flannel.1"],
    );
    assert!(!fdb.contains("dst 10.213.254.2"), "{fdb}");
    assert!(t.pod_to_pod().is_err());
    // Cleanup removes the device too.
    cleanup_in(&t.node[1], "flannel.1");
    assert!(!out("ip", &["-n", &t.node[1], "link"]).contains("flannel.1"));
    assert_eq!(
        out("ip", &["-n", &t.node[1], "route", "show", "proto", "200"]).trim(),
        ""
    );
}

#[test]
fn host_gw_routes_pods_via_the_other_nodes_address() {
    let t = TwoNodes::new();
    t.route_all(Backend::HostGw);
    let r = out("ip", &["-n", &t.node[1], "route", "show", "proto", "200"]);
    assert!(r.contains("10.42.0.0/24 via 10.213.254.1 dev eth0"), "{r}");
    assert!(!out("ip", &["-n", &t.node[1], "link"]).contains("flannel.1"));
    assert_eq!(t.pod_to_pod().unwrap(), "10.42.0.5");
    // A node off this L2 segment gets no route, and the others stay.
    let far = Peer {
        name: "far".into(),
        pod_cidr: "10.42.7.0/24".parse().unwrap(),
        public_ip: Ipv4Addr::new(192, 0, 2, 7),
        vtep_mac: None,
    };
    reconcile_in(
        &t.node[0],
        t.settings(0, Backend::HostGw),
        vec![t.peer(1, Backend::HostGw), far],
    );
    let r = out("ip", &["-n", &t.node[0], "route", "show", "proto", "200"]);
    assert!(!r.contains("10.42.7.0"), "{r}");
    assert_eq!(t.pod_to_pod().unwrap(), "10.42.0.5");
}
