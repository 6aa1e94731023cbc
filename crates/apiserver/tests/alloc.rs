//! Service cluster IPs and node ports, allocated as kube-apiserver 1.33 does it: an
//! IPAddress per cluster IP, a node-port bitmap in the store, kube-apiserver's 422s for
//! a taken or out-of-range request, never the same value twice, releases on delete and
//! on `type` changes, and the repair at start after a crash or from an older data dir.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;
use serde_json::{json, Value};
use skiff_apiserver::ServerConfig;

const T: &str = "alloc-token";
const SVCS: &str = "/api/v1/namespaces/default/services";
const IPS: &str = "/apis/networking.k8s.io/v1/ipaddresses";

fn with_token(cfg: &mut ServerConfig, work: &Path) {
    let file = work.join("tokens.csv");
    std::fs::write(&file, format!("{T},alloc,1005,\"system:masters\"\n")).expect("token file");
    cfg.token_auth_file = Some(file);
}

async fn fixture() -> Fixture {
    Fixture::start_with(with_token).await
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Creates the Service `name` with `spec`; (status, answer).
async fn create(fx: &Fixture, name: &str, spec: Value) -> (u16, Value) {
    let body =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
    let (code, out) = fx
        .curl(T, "POST", SVCS, "application/json", &body.to_string())
        .await;
    (code, parse(&out))
}

async fn created(fx: &Fixture, name: &str, spec: Value) -> Value {
    let (code, svc) = create(fx, name, spec).await;
    assert_eq!(code, 201, "{svc}");
    svc
}

/// The message of a refused create, checked to be a 422.
async fn refused(fx: &Fixture, name: &str, spec: Value) -> String {
    let (code, status) = create(fx, name, spec).await;
    assert_eq!(code, 422, "{status}");
    status["message"].as_str().unwrap_or_default().to_string()
}

async fn patch(fx: &Fixture, name: &str, patch: Value) -> (u16, Value) {
    let (code, out) = fx
        .curl(
            T,
            "PATCH",
            &format!("{SVCS}/{name}"),
            "application/merge-patch+json",
            &patch.to_string(),
        )
        .await;
    (code, parse(&out))
}

async fn patched(fx: &Fixture, name: &str, p: Value) -> Value {
    let (code, svc) = patch(fx, name, p).await;
    assert_eq!(code, 200, "{svc}");
    svc
}

async fn delete(fx: &Fixture, name: &str) {
    let (code, out) = fx
        .curl(T, "DELETE", &format!("{SVCS}/{name}"), "", "")
        .await;
    assert_eq!(code, 200, "{out}");
}

async fn get(fx: &Fixture, path: &str) -> (u16, Value) {
    let (code, out) = fx.curl(T, "GET", path, "", "").await;
    (code, parse(&out))
}

fn cluster_ip(svc: &Value) -> String {
    svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn node_ports(svc: &Value) -> Vec<u64> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .collect()
}

/// The IPAddress of `ip`, if any.
async fn ipaddress(fx: &Fixture, ip: &str) -> Option<Value> {
    let (code, obj) = get(fx, &format!("{IPS}/{ip}")).await;
    (code == 200).then_some(obj)
}

fn port(n: u64) -> Value {
    json!([{"port": 80, "nodePort": n}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_and_out_of_range_requests_are_422_with_kube_apiserver_messages() {
    let mut fx = fixture().await;
    // The kubernetes Service has the first IP, and its IPAddress.
    let (_, k) = get(&fx, &format!("{SVCS}/kubernetes")).await;
    assert_eq!(cluster_ip(&k), "10.43.0.1");
    let ipa = ipaddress(&fx, "10.43.0.1")
        .await
        .expect("kubernetes IPAddress");
    assert_eq!(
        ipa["spec"]["parentRef"],
        json!({"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"})
    );
    assert_eq!(
        ipa["metadata"]["labels"]["ipaddress.kubernetes.io/managed-by"],
        "ipallocator.k8s.io"
    );
    let (_, cidr) = get(&fx, "/apis/networking.k8s.io/v1/servicecidrs/kubernetes").await;
    assert_eq!(cidr["spec"]["cidrs"], json!(["10.43.0.0/16"]));
    assert_eq!(cidr["status"]["conditions"][0]["type"], "Ready");

    created(
        &fx,
        "a",
        json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}),
    )
    .await;
    assert!(ipaddress(&fx, "10.43.0.5").await.is_some());
    assert_eq!(
        refused(
            &fx,
            "b",
            json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]})
        )
        .await,
        r#"Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.43.0.5"}: failed to allocate IP 10.43.0.5: provided IP is already allocated"#
    );
    // An IP in no ServiceCIDR is a mismatched network (kube-apiserver 1.33's allocator
    // over ServiceCIDRs); the network and broadcast addresses of one are not in its
    // valid range.
    assert_eq!(
        refused(
            &fx,
            "b",
            json!({"clusterIP": "10.44.0.1", "ports": [{"port": 80}]})
        )
        .await,
        r#"Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.44.0.1"}: failed to allocate IP 10.44.0.1: the provided network does not match the current range"#
    );
    assert_eq!(
        refused(
            &fx,
            "b",
            json!({"clusterIP": "10.43.255.255", "ports": [{"port": 80}]})
        )
        .await,
        r#"Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.43.255.255"}: failed to allocate IP 10.43.255.255: the provided IP (10.43.255.255) is not in the valid range. The range of valid IPs is 10.43.0.0/16"#
    );
    // Another ServiceCIDR adds its range.
    let (code, out) = fx
        .curl(
            T,
            "POST",
            "/apis/networking.k8s.io/v1/servicecidrs",
            "application/json",
            r#"{"apiVersion":"networking.k8s.io/v1","kind":"ServiceCIDR","metadata":{"name":"extra"},"spec":{"cidrs":["10.44.0.0/24"]}}"#,
        )
        .await;
    assert_eq!(code, 201, "{out}");
    created(
        &fx,
        "b",
        json!({"clusterIP": "10.44.0.1", "ports": [{"port": 80}]}),
    )
    .await;
    assert!(ipaddress(&fx, "10.44.0.1").await.is_some());

    let np = created(&fx, "np", json!({"type": "NodePort", "ports": port(30080)})).await;
    assert_eq!(node_ports(&np), vec![30080]);
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(
        refused(
            &fx,
            "np2",
            json!({"type": "NodePort", "ports": port(30080)})
        )
        .await,
        r#"Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"#
    );
    assert_eq!(
        refused(
            &fx,
            "np2",
            json!({"type": "NodePort", "ports": port(40000)})
        )
        .await,
        r#"Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"#
    );
    // Fields of other types are refused, as kube-apiserver refuses them.
    assert_eq!(
        refused(&fx, "np2", json!({"type": "NodePort", "healthCheckNodePort": 31000, "ports": [{"port": 80}]})).await,
        "Service \"np2\" is invalid: spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
    );
    assert_eq!(
        refused(
            &fx,
            "np2",
            json!({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]})
        )
        .await,
        r#"Service "np2" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#
    );
    assert_eq!(
        refused(
            &fx,
            "np2",
            json!({"type": "NodePort", "ports": port(70000)})
        )
        .await,
        r#"Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"#
    );
    // A refused create keeps nothing: its IP and its other port are free again.
    let msg = refused(
        &fx,
        "np2",
        json!({"type": "NodePort", "clusterIP": "10.43.0.6",
               "ports": [{"name": "a", "port": 80, "nodePort": 30081}, {"name": "b", "port": 81, "nodePort": 30080}]}),
    )
    .await;
    assert!(
        msg.contains(
            "spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{msg}"
    );
    assert!(ipaddress(&fx, "10.43.0.6").await.is_none());
    created(
        &fx,
        "np3",
        json!({"type": "NodePort", "clusterIP": "10.43.0.6", "ports": port(30081)}),
    )
    .await;

    // A dry run checks without keeping anything.
    let (code, out) = fx
        .curl(
            T,
            "POST",
            &format!("{SVCS}?dryRun=All"),
            "application/json",
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dry"},
                    "spec": {"type": "NodePort", "clusterIP": "10.43.0.7", "ports": port(30082)}})
            .to_string(),
        )
        .await;
    assert_eq!(code, 201, "{out}");
    assert!(ipaddress(&fx, "10.43.0.7").await.is_none());
    created(
        &fx,
        "wet",
        json!({"type": "NodePort", "clusterIP": "10.43.0.7", "ports": port(30082)}),
    )
    .await;

    // Deleting releases: the same IP and port can be asked for again.
    delete(&fx, "a").await;
    delete(&fx, "np").await;
    assert!(ipaddress(&fx, "10.43.0.5").await.is_none());
    created(
        &fx,
        "a2",
        json!({"clusterIP": "10.43.0.5", "type": "NodePort", "ports": port(30080)}),
    )
    .await;
    let ipa = ipaddress(&fx, "10.43.0.5").await.expect("IPAddress");
    assert_eq!(ipa["spec"]["parentRef"]["name"], "a2");

    // Dynamic IPs come from the upper part of the range (the lower 256 addresses are
    // kept for requested ones first).
    let dynamic = created(&fx, "dyn", json!({"ports": [{"port": 80}]})).await;
    let ip: std::net::Ipv4Addr = cluster_ip(&dynamic).parse().unwrap();
    assert!(
        u32::from(ip) > u32::from(std::net::Ipv4Addr::new(10, 43, 1, 0)),
        "{ip}"
    );
    assert!(ipaddress(&fx, &ip.to_string()).await.is_some());
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_creates_get_distinct_ips_and_ports() {
    let mut fx = fixture().await;
    let creates = (0..50).map(|i| {
        let fx = &fx;
        async move {
            create(
                fx,
                &format!("s{i}"),
                json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(creates).await;
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for (code, svc) in &answers {
        assert_eq!(*code, 201, "{svc}");
        assert!(ips.insert(cluster_ip(svc)), "IP twice: {svc}");
        for p in node_ports(svc) {
            assert!((30000..=32767).contains(&p));
            assert!(ports.insert(p), "port {p} twice");
        }
    }
    assert_eq!(ips.len(), 50);
    assert_eq!(ports.len(), 100);
    // One IPAddress per Service (and the kubernetes one), each naming its Service.
    let (_, list) = get(&fx, IPS).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 51);
    for svc in answers.iter().map(|(_, s)| s) {
        let ipa = items
            .iter()
            .find(|i| i["metadata"]["name"] == svc["spec"]["clusterIP"])
            .expect("IPAddress of the Service");
        assert_eq!(ipa["spec"]["parentRef"]["name"], svc["metadata"]["name"]);
    }
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_changes_allocate_and_release_as_kube_apiserver_does() {
    let mut fx = fixture().await;
    let s = created(&fx, "web", json!({"ports": [{"name": "http", "port": 80}]})).await;
    let ip = cluster_ip(&s);
    assert!(node_ports(&s).is_empty());

    // ClusterIP -> NodePort: node ports.
    let s = patched(&fx, "web", json!({"spec": {"type": "NodePort"}})).await;
    assert_eq!(cluster_ip(&s), ip);
    let nps = node_ports(&s);
    assert_eq!(nps.len(), 1, "{s}");
    let np = nps[0];
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
    // Taken while it is held.
    assert!(
        refused(&fx, "other", json!({"type": "NodePort", "ports": port(np)}))
            .await
            .contains("provided port is already allocated")
    );

    // NodePort -> ClusterIP: the node ports are cleared and released.
    let s = patched(&fx, "web", json!({"spec": {"type": "ClusterIP"}})).await;
    assert!(node_ports(&s).is_empty(), "{s}");
    assert!(s["spec"].get("externalTrafficPolicy").is_none(), "{s}");
    assert_eq!(cluster_ip(&s), ip);
    created(&fx, "other", json!({"type": "NodePort", "ports": port(np)})).await;

    // -> ExternalName: the cluster IP is cleared and released.
    let s = patched(
        &fx,
        "web",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    )
    .await;
    assert!(s["spec"].get("clusterIP").is_none(), "{s}");
    assert!(s["spec"].get("clusterIPs").is_none(), "{s}");
    assert!(ipaddress(&fx, &ip).await.is_none());
    created(
        &fx,
        "taker",
        json!({"clusterIP": ip, "ports": [{"port": 80}]}),
    )
    .await;

    // ExternalName -> ClusterIP: a new IP.
    let s = patched(
        &fx,
        "web",
        json!({"spec": {"type": "ClusterIP", "externalName": null}}),
    )
    .await;
    let ip2 = cluster_ip(&s);
    assert!(!ip2.is_empty() && ip2 != ip, "{s}");
    assert_eq!(s["spec"]["clusterIPs"], json!([ip2]));
    let ipa = ipaddress(&fx, &ip2).await.expect("IPAddress");
    assert_eq!(ipa["spec"]["parentRef"]["name"], "web");
    // ExternalName -> ClusterIP with an IP that is taken: 422, and nothing changes.
    patched(
        &fx,
        "taker",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    )
    .await;
    let (code, status) = patch(
        &fx,
        "taker",
        json!({"spec": {"type": "ClusterIP", "externalName": null, "clusterIP": ip2, "clusterIPs": [ip2]}}),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(status["message"]
        .as_str()
        .unwrap_or_default()
        .contains("provided IP is already allocated"));

    // Headless and ExternalName Services get no IP.
    let h = created(
        &fx,
        "headless",
        json!({"clusterIP": "None", "ports": [{"port": 80}]}),
    )
    .await;
    assert_eq!(cluster_ip(&h), "None");
    let e = created(
        &fx,
        "ext",
        json!({"type": "ExternalName", "externalName": "example.com"}),
    )
    .await;
    assert!(e["spec"].get("clusterIP").is_none(), "{e}");
    let (_, list) = get(&fx, IPS).await;
    let owners: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            i["spec"]["parentRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        !owners.contains(&"headless".to_string()) && !owners.contains(&"ext".to_string()),
        "{owners:?}"
    );

    // LoadBalancer with externalTrafficPolicy Local: a health-check node port, released
    // when it is no longer needed.
    let lb = created(
        &fx,
        "lb",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
    )
    .await;
    let hc = lb["spec"]["healthCheckNodePort"]
        .as_u64()
        .expect("healthCheckNodePort");
    assert!((30000..=32767).contains(&hc));
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(node_ports(&lb).len(), 1);
    assert!(!node_ports(&lb).contains(&hc));
    assert!(
        refused(&fx, "hc", json!({"type": "NodePort", "ports": port(hc)}))
            .await
            .contains("provided port is already allocated")
    );
    let lb = patched(
        &fx,
        "lb",
        json!({"spec": {"externalTrafficPolicy": "Cluster"}}),
    )
    .await;
    assert!(lb["spec"].get("healthCheckNodePort").is_none(), "{lb}");
    created(&fx, "hc", json!({"type": "NodePort", "ports": port(hc)})).await;
    // Back to Local: a new one; the node ports stay through it all.
    let lb2 = patched(
        &fx,
        "lb",
        json!({"spec": {"externalTrafficPolicy": "Local"}}),
    )
    .await;
    let hc2 = lb2["spec"]["healthCheckNodePort"]
        .as_u64()
        .expect("healthCheckNodePort");
    assert_ne!(hc2, hc);
    assert_eq!(node_ports(&lb2), node_ports(&lb));
    // LoadBalancer -> NodePort keeps the node ports, drops the rest.
    let np = patched(&fx, "lb", json!({"spec": {"type": "NodePort"}})).await;
    assert_eq!(node_ports(&np), node_ports(&lb));
    assert!(np["spec"].get("healthCheckNodePort").is_none(), "{np}");
    assert!(
        np["spec"].get("allocateLoadBalancerNodePorts").is_none(),
        "{np}"
    );
    created(&fx, "hc2", json!({"type": "NodePort", "ports": port(hc2)})).await;

    // allocateLoadBalancerNodePorts: false gets only the node ports asked for.
    let bare = created(
        &fx,
        "bare",
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
               "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30999}]}),
    )
    .await;
    assert_eq!(node_ports(&bare), vec![30999], "{bare}");

    // An update that leaves node ports out keeps them (matched by port name).
    let (code, out) = fx.curl(T, "GET", &format!("{SVCS}/other"), "", "").await;
    assert_eq!(code, 200);
    let mut other = parse(&out);
    let before = node_ports(&other);
    other["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    other["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let (code, out) = fx
        .curl(
            T,
            "PUT",
            &format!("{SVCS}/other"),
            "application/json",
            &other.to_string(),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(node_ports(&parse(&out)), before);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_service_cidr_and_node_port_range_are_honoured() {
    let mut fx = Fixture::start_with(|cfg, work| {
        with_token(cfg, work);
        cfg.network = skiff_meta::netconf::ClusterNetwork::parse(
            "10.42.0.0/16",
            "10.96.0.0/24",
            None,
            "cluster.local",
            "31000-31004",
        )
        .expect("network");
    })
    .await;
    let (_, k) = get(&fx, &format!("{SVCS}/kubernetes")).await;
    assert_eq!(cluster_ip(&k), "10.96.0.1");
    // In-cluster clients reach the API at that IP: the serving certificate names it.
    let pem = std::fs::read(fx.data_dir.path().join("tls/serving.crt")).expect("serving cert");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    let cert = pem.parse_x509().expect("certificate");
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN")
        .expect("SAN")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(
        sans.iter().any(|n| n == "IPAddress(0a:60:00:01)"),
        "{sans:?}"
    );
    assert!(
        !sans.iter().any(|n| n == "IPAddress(0a:2b:00:01)"),
        "{sans:?}"
    );
    let (_, cidr) = get(&fx, "/apis/networking.k8s.io/v1/servicecidrs/kubernetes").await;
    assert_eq!(cidr["spec"]["cidrs"], json!(["10.96.0.0/24"]));
    assert_eq!(
        refused(
            &fx,
            "x",
            json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]})
        )
        .await,
        r#"Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.43.0.5"}: failed to allocate IP 10.43.0.5: the provided network does not match the current range"#
    );
    assert_eq!(
        refused(
            &fx,
            "x",
            json!({"clusterIP": "10.96.0.255", "ports": [{"port": 80}]})
        )
        .await,
        r#"Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.255"}: failed to allocate IP 10.96.0.255: the provided IP (10.96.0.255) is not in the valid range. The range of valid IPs is 10.96.0.0/24"#
    );
    assert_eq!(
        refused(&fx, "x", json!({"type": "NodePort", "ports": port(30080)})).await,
        r#"Service "x" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is not in the valid range. The range of valid ports is 31000-31004"#
    );
    // Five ports: five Services get one each, the sixth finds the range full.
    let mut seen = HashSet::new();
    for i in 0..5 {
        let s = created(
            &fx,
            &format!("n{i}"),
            json!({"type": "NodePort", "ports": [{"port": 80}]}),
        )
        .await;
        let ip: std::net::Ipv4Addr = cluster_ip(&s).parse().unwrap();
        assert_eq!(ip.octets()[..3], [10, 96, 0]);
        // A /24 keeps its lower 16 addresses for requested IPs first.
        assert!(ip.octets()[3] > 16, "{ip}");
        for p in node_ports(&s) {
            assert!((31000..=31004).contains(&p));
            assert!(seen.insert(p));
        }
    }
    let (code, status) = create(
        &fx,
        "n5",
        json!({"type": "NodePort", "ports": [{"port": 80}]}),
    )
    .await;
    assert_eq!(code, 500, "{status}");
    assert!(status["message"]
        .as_str()
        .unwrap_or_default()
        .contains("failed to allocate a nodePort: range is full"));
    // Its cluster IP was given back.
    let (_, list) = get(&fx, IPS).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(6));
    fx.stop().await;
}

/// Restarts the fixture's server on its data dir (and network).
async fn restart(fx: &mut Fixture) {
    let mut cfg = config(fx.data_dir.path());
    cfg.write_kubeconfig = Some(fx.kubeconfig.clone());
    with_token(&mut cfg, fx.work_dir.path());
    fx.server = Some(skiff_apiserver::start(cfg).await.expect("restart"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_at_start_recreates_missing_ipaddresses_and_releases_orphans() {
    let mut fx = fixture().await;
    let kept = created(
        &fx,
        "kept",
        json!({"type": "NodePort", "ports": port(30100)}),
    )
    .await;
    let kept_ip = cluster_ip(&kept);
    let lost = created(
        &fx,
        "lost",
        json!({"type": "NodePort", "ports": port(30200)}),
    )
    .await;
    let lost_ip = cluster_ip(&lost);
    fx.stop().await;
    // A crash between the claims and the store: the Service "lost" never made it (its
    // IPAddress and node port stay), and "kept" lost its IPAddress.
    {
        let store = fx.open_store().await;
        store
            .delete(b"/registry/core/services/default/lost", None)
            .await
            .expect("delete the Service");
        store
            .delete(
                format!("/registry/networking.k8s.io/ipaddresses/{kept_ip}").as_bytes(),
                None,
            )
            .await
            .expect("delete the IPAddress");
    }
    restart(&mut fx).await;
    let ipa = ipaddress(&fx, &kept_ip)
        .await
        .expect("IPAddress re-created");
    assert_eq!(ipa["spec"]["parentRef"]["name"], "kept");
    assert!(ipaddress(&fx, &lost_ip).await.is_none(), "orphan kept");
    // The orphan's IP and port are free again, the kept ones are not.
    created(
        &fx,
        "again",
        json!({"type": "NodePort", "clusterIP": lost_ip, "ports": port(30200)}),
    )
    .await;
    assert!(refused(
        &fx,
        "dup",
        json!({"type": "NodePort", "ports": port(30100)})
    )
    .await
    .contains("provided port is already allocated"));
    assert!(refused(
        &fx,
        "dup",
        json!({"clusterIP": kept_ip, "ports": [{"port": 80}]})
    )
    .await
    .contains("provided IP is already allocated"));
    fx.stop().await;

    // A data dir from before IPAddresses and the node-port bitmap: both are made from
    // the Services.
    {
        let store = fx.open_store().await;
        let all = store
            .range(
                b"/registry/networking.k8s.io/ipaddresses/",
                Default::default(),
            )
            .await
            .expect("range");
        for kv in all.kvs {
            store.delete(&kv.key, None).await.expect("delete");
        }
        store
            .delete(b"/registry/ranges/servicenodeports", None)
            .await
            .expect("delete the bitmap");
    }
    restart(&mut fx).await;
    for (ip, owner) in [
        ("10.43.0.1", "kubernetes"),
        (kept_ip.as_str(), "kept"),
        (lost_ip.as_str(), "again"),
    ] {
        let ipa = ipaddress(&fx, ip)
            .await
            .unwrap_or_else(|| panic!("IPAddress {ip}"));
        assert_eq!(ipa["spec"]["parentRef"]["name"], owner);
    }
    for p in [30100, 30200] {
        assert!(
            refused(&fx, "dup", json!({"type": "NodePort", "ports": port(p)}))
                .await
                .contains("provided port is already allocated")
        );
    }
    // kubectl prints them with kube's columns.
    if have_kubectl() {
        let out = fx.ok(KUBECTL_NEW, &["get", "servicecidr,ipaddress"]).await;
        assert!(
            out.contains("CIDRS") && out.contains("10.43.0.0/16"),
            "{out}"
        );
        assert!(
            out.contains("PARENTREF") && out.contains("services/default/kubernetes"),
            "{out}"
        );
    }
    fx.stop().await;
}

/// A hostile tenant cannot point a Service at the node itself: an endpoint address
/// that every node's proxy would DNAT to its own loopback, link-local or unspecified
/// address is refused in Endpoints and EndpointSlices (kube's ValidateNonSpecialIP);
/// only the API server's own `default/kubernetes` may name a loopback address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_may_not_point_at_the_nodes_own_addresses() {
    let fx = fixture().await;
    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    let eps = "/api/v1/namespaces/default/endpoints";
    for (ip, why) in [
        (
            "127.0.0.1",
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ),
        (
            "169.254.169.254",
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ),
        ("0.0.0.0", "may not be unspecified (0.0.0.0, ::)"),
        (
            "224.0.0.5",
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ),
    ] {
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "evil", "labels": {"kubernetes.io/service-name": "evil"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [ip]}],
            "ports": [{"port": 10250}]});
        let (code, out) = fx
            .curl(T, "POST", slices, "application/json", &slice.to_string())
            .await;
        assert_eq!(code, 422, "{out}");
        assert!(
            out.contains(&format!(
                "endpoints[0].addresses[0]: Invalid value: \\\"{ip}\\\": {why}"
            )),
            "{out}"
        );
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "evil"},
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 10250}]}]});
        let (code, out) = fx
            .curl(T, "POST", eps, "application/json", &ep.to_string())
            .await;
        assert_eq!(code, 422, "{out}");
        assert!(
            out.contains("subsets[0].addresses[0].ip: Invalid value"),
            "{out}"
        );
    }
    // An ordinary address is fine; the API server's own loopback endpoints stand.
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "fine", "labels": {"kubernetes.io/service-name": "fine"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.2.3"]}],
        "ports": [{"port": 80}]});
    let (code, out) = fx
        .curl(T, "POST", slices, "application/json", &slice.to_string())
        .await;
    assert_eq!(code, 201, "{out}");
    let (code, out) = fx
        .curl(T, "GET", &format!("{eps}/kubernetes"), "", "")
        .await;
    assert_eq!(code, 200, "{out}");
    assert!(out.contains("127.0.0.1"), "{out}");
}
