//! The proxy's rules in the kernel (root): each test makes a "node" network namespace
//! with a bridge and one or two "pod" namespaces running small TCP/UDP servers, programs
//! the proxy's table inside the node namespace only, and connects to ClusterIPs from the
//! node and from the pods. No namespace has a link to the host's, and nothing is sent to
//! the service range before the node's table rejects the whole range.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use skiff_network::nft::{Backend, NftCli, NftNetlink};
use skiff_network::proxy::{Proxier, Snapshot};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

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

#[test]
fn node_ports_on_node_addresses_and_localhost_with_both_external_policies() {
    let mut lab = Lab::new(2);
    let outside = lab.outside();
    let np = |name: &str, ip: &str, node_port: u16, etp: &str| {
        service(
            name,
            ip,
            json!({"type": "NodePort", "externalTrafficPolicy": etp}),
            json!([{"name": "http", "port": 80, "nodePort": node_port}]),
        )
    };
    let http = || json!([{"name": "http", "port": 8080}]);
    let snap = Snapshot {
        services: vec![
            np("cluster", "10.241.0.70", 30080, "Cluster"),
            np("local", "10.241.0.71", 30081, "Local"),
            np("nolocal", "10.241.0.72", 30082, "Local"),
            np("none", "10.241.0.73", 30083, "Cluster"),
        ],
        slices: vec![
            slice("cluster", http(), &[(0, NODE), (1, "node-b")]),
            slice("local", http(), &[(0, NODE), (1, "node-b")]),
            slice("nolocal", http(), &[(1, "node-b")]),
        ],
    };
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    let (node, pod1) = (lab.node.clone(), lab.pods[1].clone());
    // ETP Cluster: every endpoint, from a pod, the node (its address and 127.0.0.1) and
    // outside; outside clients are masqueraded.
    for (ns, addr) in [
        (&pod1, "10.240.0.1:30080"),
        (&node, "10.240.0.1:30080"),
        (&node, "127.0.0.1:30080"),
        (&outside, "10.250.0.1:30080"),
    ] {
        let hits = lab.hits(ns, addr, 40);
        assert!(
            hits.get("pod0") >= Some(&1) && hits.get("pod1") >= Some(&1),
            "{addr}: {hits:?}"
        );
    }
    let answer = lab.tcp(&outside, "10.250.0.1:30080").unwrap();
    assert!(answer.ends_with(&format!(" {GATEWAY}")), "{answer}");
    // ETP Local: outside clients reach only this node's endpoint and keep their address;
    // pods and the node itself still reach every endpoint.
    for _ in 0..10 {
        assert_eq!(
            lab.tcp(&outside, "10.250.0.1:30081").unwrap(),
            "pod0 10.250.0.2"
        );
    }
    let hits = lab.hits(&node, "127.0.0.1:30081", 40);
    assert!(
        hits.get("pod0") >= Some(&1) && hits.get("pod1") >= Some(&1),
        "{hits:?}"
    );
    // ETP Local without a local endpoint drops outside traffic; no endpoint rejects.
    let r = lab.tcp(&outside, "10.250.0.1:30082");
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock),
        "{r:?}"
    );
    assert!(lab
        .tcp(&pod1, "10.240.0.1:30082")
        .unwrap()
        .starts_with("pod1"));
    assert!(refused(lab.tcp(&outside, "10.250.0.1:30083")));
    assert!(refused(lab.tcp(&node, "127.0.0.1:30083")));
}

#[test]
fn load_balancer_ips_external_ips_and_source_ranges() {
    let mut lab = Lab::new(1);
    let outside = lab.outside();
    // As k3s's ServiceLB: the ingress IP is the node's own address.
    let lb = |name: &str,
              ip: &str,
              port: u16,
              ranges: serde_json::Value|
     -> std::sync::Arc<k8s_openapi::api::core::v1::Service> {
        std::sync::Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": name},
                "spec": {"type": "LoadBalancer", "clusterIP": ip, "allocateLoadBalancerNodePorts": false,
                         "loadBalancerSourceRanges": ranges,
                         "ports": [{"name": "http", "port": port}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.250.0.1", "ipMode": "VIP"}]}}}))
            .unwrap(),
        )
    };
    let http = || json!([{"name": "http", "port": 8080}]);
    let snap = Snapshot {
        services: vec![
            lb("open", "10.241.0.80", 8088, json!([])),
            lb("allowed", "10.241.0.81", 8089, json!(["10.250.0.0/30"])),
            lb("denied", "10.241.0.82", 8090, json!(["192.0.2.0/24"])),
            lb("empty", "10.241.0.83", 8091, json!([])),
            service(
                "ext",
                "10.241.0.84",
                json!({"externalIPs": ["10.250.0.1"]}),
                json!([{"name": "http", "port": 8092}]),
            ),
        ],
        slices: vec![
            slice("open", http(), &[(0, NODE)]),
            slice("allowed", http(), &[(0, NODE)]),
            slice("denied", http(), &[(0, NODE)]),
            slice("ext", http(), &[(0, NODE)]),
        ],
    };
    let mut p = lab.proxier();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    lab.check_covered();
    for addr in ["10.250.0.1:8088", "10.250.0.1:8089", "10.250.0.1:8092"] {
        assert!(
            lab.tcp(&outside, addr).unwrap().starts_with("pod0"),
            "{addr}"
        );
    }
    let r = lab.tcp(&outside, "10.250.0.1:8090");
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock),
        "{r:?}"
    );
    assert!(refused(lab.tcp(&outside, "10.250.0.1:8091")));
    // The ClusterIP of the firewalled Service is not firewalled.
    let node = lab.node.clone();
    assert!(lab
        .tcp(&node, "10.241.0.82:8090")
        .unwrap()
        .starts_with("pod0"));
}

/// An HTTP GET from namespace `ns`: the whole response.
fn http_get(ns: &str, addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    in_ns(ns, || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_node_ports_report_local_endpoints() {
    use skiff_network::proxy::healthcheck::{wanted, HealthServer};
    let mut lab = Lab::new(0);
    let outside = lab.outside();
    let lb = |name: &str, ip: &str, hc: u16| {
        std::sync::Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": name},
                "spec": {"type": "LoadBalancer", "clusterIP": ip, "externalTrafficPolicy": "Local",
                         "healthCheckNodePort": hc, "ports": [{"name": "http", "port": 80, "nodePort": hc + 1}]}}))
            .unwrap(),
        )
    };
    let http = || json!([{"name": "http", "port": 8080}]);
    let mut snap = Snapshot {
        services: vec![
            lb("here", "10.241.0.90", 32100),
            lb("away", "10.241.0.91", 32110),
        ],
        slices: vec![
            slice("here", http(), &[(0, NODE), (1, "node-b"), (2, NODE)]),
            slice("away", http(), &[(1, "node-b")]),
        ],
    };
    let node = lab.node.clone();
    let mut hs = HealthServer::new(Box::new(move |port| {
        in_ns(&node, || std::net::TcpListener::bind(("0.0.0.0", port)))
    }));
    hs.update(wanted(&snap, NODE));
    assert_eq!(hs.ports(), vec![32100, 32110]);
    let here = http_get(&outside, "10.250.0.1:32100").unwrap();
    assert!(here.starts_with("HTTP/1.1 200 OK\r\n"), "{here}");
    assert!(here.ends_with(r#"{"localEndpoints":2,"service":{"name":"here","namespace":"default"},"serviceProxyHealthy":true}"#), "{here}");
    let away = http_get(&outside, "10.250.0.1:32110").unwrap();
    assert!(
        away.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{away}"
    );
    assert!(away.contains(r#""localEndpoints":0"#), "{away}");
    // The Service goes: its port closes; the other one follows its endpoints.
    snap.services.truncate(1);
    snap.slices[0] = slice("here", http(), &[(1, "node-b")]);
    hs.update(wanted(&snap, NODE));
    assert_eq!(hs.ports(), vec![32100]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = http_get(&outside, "10.250.0.1:32110");
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "{r:?}"
    );
    assert!(http_get(&outside, "10.250.0.1:32100")
        .unwrap()
        .starts_with("HTTP/1.1 503"));
    drop(hs);
    drop(lab);
}

/// `nft list table` of `table` in the lab's node namespace, its name taken out.
fn listing(lab: &Lab, table: &str) -> String {
    let text = run(&[
        "ip", "netns", "exec", &lab.node, "nft", "list", "table", "ip", table,
    ]);
    text.replace(&format!("table ip {table} "), "table ip T ")
}

/// The two tables list the same; else the first line that differs, with its context.
fn same_listing(lab: &Lab, what: &str) {
    let (a, b) = (listing(lab, "skiff-nl"), listing(lab, "skiff-cli"));
    if a == b {
        return;
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = la
        .iter()
        .zip(&lb)
        .position(|(x, y)| x != y)
        .unwrap_or(la.len().min(lb.len()));
    let from = at.saturating_sub(3);
    panic!(
        "{what}: the tables differ at line {at}\nnetlink:\n{}\nnft:\n{}",
        la[from..(at + 3).min(la.len())].join("\n"),
        lb[from..(at + 3).min(lb.len())].join("\n")
    );
}

#[test]
fn netlink_batches_write_what_nft_writes() {
    // Two proxiers on two tables of one namespace, fed the same changes: one through
    // nf_tables netlink batches (partial syncs), one through `nft -f`. The kernel's
    // tables, as nft lists them, must read the same.
    let lab = Lab::new(2);
    let mut a = lab.settings();
    a.table = "skiff-nl".into();
    let mut b = lab.settings();
    b.table = "skiff-cli".into();
    let mut nl = Proxier::new(NftNetlink::in_netns(&lab.node), a.clone());
    let mut cli = Proxier::new(NftCli::in_netns(&lab.node), b.clone());
    let empty = Snapshot {
        services: vec![],
        slices: vec![],
    };
    nl.sync(&empty, &BTreeSet::new()).unwrap();
    cli.sync(&empty, &BTreeSet::new()).unwrap();
    let http = || json!([{"name": "http", "port": 8080}]);
    let port80 = || json!([{"name": "http", "port": 80}]);
    let affinity = json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}}});
    let mut snap = Snapshot {
        services: vec![
            service(
                "plain",
                "10.241.0.10",
                json!({}),
                json!([{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
            ),
            service("sticky", "10.241.0.11", affinity.clone(), port80()),
            service(
                "itp",
                "10.241.0.12",
                json!({"internalTrafficPolicy": "Local"}),
                port80(),
            ),
            service(
                "np",
                "10.241.0.13",
                json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
                json!([{"name": "http", "port": 80, "nodePort": 30080}]),
            ),
            service(
                "npc",
                "10.241.0.14",
                json!({"type": "NodePort"}),
                json!([{"name": "http", "port": 80, "nodePort": 30081}]),
            ),
            service(
                "ext",
                "10.241.0.15",
                json!({"externalIPs": ["10.250.0.1"]}),
                port80(),
            ),
            service(
                "none",
                "10.241.0.16",
                json!({"type": "NodePort"}),
                json!([{"name": "http", "port": 80, "nodePort": 30082}]),
            ),
            service(
                "sctp",
                "10.241.0.17",
                json!({}),
                json!([{"name": "s", "port": 80, "protocol": "SCTP"}]),
            ),
        ],
        slices: vec![
            slice(
                "plain",
                json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
                &[(0, NODE), (1, NODE)],
            ),
            slice("sticky", http(), &[(0, NODE), (1, NODE)]),
            slice("itp", http(), &[(0, NODE), (1, "node-b")]),
            slice("np", http(), &[(0, NODE), (1, "node-b")]),
            slice("npc", http(), &[(0, "node-b")]),
            slice("ext", http(), &[(1, NODE)]),
            slice(
                "sctp",
                json!([{"name": "s", "port": 9999, "protocol": "SCTP"}]),
                &[(1, NODE)],
            ),
        ],
    };
    let all = keys(&[
        "default/plain",
        "default/sticky",
        "default/itp",
        "default/np",
        "default/npc",
        "default/ext",
        "default/none",
        "default/sctp",
    ]);
    let mut step = |snap: &Snapshot, changed: &BTreeSet<String>, what: &str| {
        assert!(!nl.sync(snap, changed).unwrap().full, "{what}");
        assert!(!cli.sync(snap, changed).unwrap().full, "{what}");
        same_listing(&lab, what);
    };
    step(&snap, &all, "every shape added");
    // Endpoints move, one Service loses them all, affinity changes its timeout.
    snap.slices[0] = slice(
        "plain",
        json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        &[(1, NODE)],
    );
    snap.slices[1] = slice("sticky", http(), &[]);
    snap.services[1] = service(
        "sticky",
        "10.241.0.11",
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        port80(),
    );
    step(
        &snap,
        &keys(&["default/plain", "default/sticky"]),
        "endpoints changed",
    );
    snap.slices[1] = slice("sticky", http(), &[(0, NODE)]);
    step(&snap, &keys(&["default/sticky"]), "endpoints back");
    snap.services
        .retain(|s| s.metadata.name.as_deref() != Some("np"));
    snap.services
        .retain(|s| s.metadata.name.as_deref() != Some("ext"));
    step(
        &snap,
        &keys(&["default/np", "default/ext"]),
        "Services deleted",
    );
    // A LoadBalancer's source ranges need an anonymous interval set, which the encoder
    // leaves to nft: that one transaction goes to nft whole.
    snap.services.push(std::sync::Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.241.0.18", "allocateLoadBalancerNodePorts": false,
                     "loadBalancerSourceRanges": ["10.250.0.0/30", "192.0.2.7/32"],
                     "ports": [{"name": "http", "port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.250.0.1", "ipMode": "VIP"}]}}}))
        .unwrap(),
    ));
    snap.slices.push(slice("lb", http(), &[(0, NODE)]));
    step(&snap, &keys(&["default/lb"]), "source ranges");
    // The full sync (the skeleton and the table) and every other partial sync went
    // through netlink.
    assert_eq!(nl.backend().counts(), (5, 1));
    // A restart: a full sync over the filled table, with one Service fewer.
    snap.services
        .retain(|s| s.metadata.name.as_deref() != Some("plain"));
    let mut nl = Proxier::new(NftNetlink::in_netns(&lab.node), a.clone());
    let mut cli = Proxier::new(NftCli::in_netns(&lab.node), b.clone());
    assert!(nl.sync(&snap, &BTreeSet::new()).unwrap().full);
    assert!(cli.sync(&snap, &BTreeSet::new()).unwrap().full);
    same_listing(&lab, "restart");
    assert!(!lab_chains(&lab, "skiff-nl")
        .iter()
        .any(|c| c.contains("/plain/")));
    // A command the kernel refuses fails the whole batch, naming it; nothing applies.
    let mut tx = skiff_network::nft::Transaction::new("skiff-nl");
    tx.add(skiff_network::nft::Object::Chain {
        name: "fresh".into(),
        base: None,
    });
    tx.add(skiff_network::nft::Object::Rule {
        chain: "no-such-chain".into(),
        rule: "drop".into(),
    });
    let err = nl.backend().apply(&tx).unwrap_err().to_string();
    assert!(
        err.contains("add rule ip skiff-nl no-such-chain drop"),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(!lab_chains(&lab, "skiff-nl").contains(&"fresh".to_string()));
    for t in ["skiff-nl", "skiff-cli"] {
        NftCli::in_netns(&lab.node).delete_table(t).unwrap();
    }
}

fn lab_chains(lab: &Lab, table: &str) -> Vec<String> {
    NftCli::in_netns(&lab.node).list_chains(table).unwrap()
}
