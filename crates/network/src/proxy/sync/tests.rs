use super::*;
use crate::nft::Backend;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Records what it is asked to apply (and fails while told to); the kernel it pretends
/// to be holds nothing.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicBool>);

impl Recorder {
    fn last(&self) -> String {
        self.0.lock().unwrap().last().cloned().unwrap_or_default()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl Backend for Recorder {
    fn apply(&self, tx: &Transaction) -> Result<(), NftError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(NftError::Parse("told to fail".into()));
        }
        self.0.lock().unwrap().push(tx.render());
        Ok(())
    }
    fn table_exists(&self, _: &str) -> Result<bool, NftError> {
        Ok(false)
    }
    fn list_chains(&self, _: &str) -> Result<Vec<String>, NftError> {
        Ok(Vec::new())
    }
    fn list_sets(&self, _: &str) -> Result<Vec<String>, NftError> {
        Ok(Vec::new())
    }
    fn delete_table(&self, _: &str) -> Result<bool, NftError> {
        Ok(false)
    }
}

fn settings() -> RuleSettings {
    RuleSettings {
        table: "skiff-node".into(),
        node_name: "node-a".into(),
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        service_cidr: "10.43.0.0/16".parse().unwrap(),
    }
}

fn svc(
    ns: &str,
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
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
            .unwrap(),
    )
}

fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    ports: serde_json::Value,
    eps: serde_json::Value,
) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports, "endpoints": eps}))
        .unwrap(),
    )
}

/// The §4.4 example of docs/plans/network.md.
fn example() -> Snapshot {
    Snapshot {
        services: vec![
            svc(
                "default",
                "web",
                "10.43.12.34",
                json!({}),
                json!([{"name": "http", "port": 80, "targetPort": "web"}]),
            ),
            svc(
                "default",
                "api",
                "10.43.40.2",
                json!({"type": "NodePort"}),
                json!([{"name": "https", "port": 443, "nodePort": 31443}]),
            ),
            svc(
                "default",
                "empty",
                "10.43.99.1",
                json!({}),
                json!([{"port": 80}]),
            ),
            svc(
                "kube-system",
                "kube-dns",
                "10.43.0.10",
                json!({"internalTrafficPolicy": "Local"}),
                json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]),
            ),
        ],
        slices: vec![
            slice(
                "default",
                "web-1",
                "web",
                json!([{"name": "http", "port": 8080}]),
                json!([{"addresses": ["10.42.0.5"], "nodeName": "node-a"},
                       {"addresses": ["10.42.1.7"], "nodeName": "node-b"}]),
            ),
            slice(
                "default",
                "api-1",
                "api",
                json!([{"name": "https", "port": 8443}]),
                json!([{"addresses": ["10.42.0.9"], "nodeName": "node-a"}]),
            ),
            slice(
                "kube-system",
                "kube-dns-node-a",
                "kube-dns",
                json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]),
                json!([{"addresses": ["10.42.0.1"], "nodeName": "node-a"}]),
            ),
            slice(
                "kube-system",
                "kube-dns-node-b",
                "kube-dns",
                json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]),
                json!([{"addresses": ["10.42.1.1"], "nodeName": "node-b"}]),
            ),
        ],
    }
}

fn web_slice(ips: &[&str]) -> Arc<EndpointSlice> {
    let eps: Vec<_> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "nodeName": "node-b"}))
        .collect();
    slice(
        "default",
        "web-1",
        "web",
        json!([{"name": "http", "port": 8080}]),
        json!(eps),
    )
}

fn keys(k: &[&str]) -> BTreeSet<String> {
    k.iter().map(|s| s.to_string()).collect()
}

#[test]
fn full_sync_renders_the_plan_example() {
    let rec = Recorder::default();
    let mut p = Proxier::new(rec.clone(), settings());
    let stats = p.sync(&example(), &BTreeSet::new()).unwrap();
    assert!(stats.full);
    assert_eq!(rec.last(), include_str!("../testdata/example.nft"));
}

#[test]
fn a_full_sync_over_an_older_table_deletes_its_no_endpoint_maps() {
    let s = settings();
    let old: Vec<String> = [
        "no-endpoint-services",
        "no-endpoint-nodeports",
        "service-ips",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let text = plan_full(&s, &BTreeMap::new(), &[], &old).render();
    assert!(text.ends_with(
        "delete map ip skiff-node no-endpoint-services\ndelete map ip skiff-node no-endpoint-nodeports\n"
    ), "{text}");
    assert!(!text.contains("delete map ip skiff-node service-ips"));
}

#[test]
fn one_changed_endpoint_touches_only_its_chains() {
    let rec = Recorder::default();
    let mut p = Proxier::new(rec.clone(), settings());
    let mut snap = example();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    // Nothing changed: nothing applied.
    let stats = p
        .sync(&snap, &keys(&["default/web", "default/api"]))
        .unwrap();
    assert_eq!((stats.full, stats.commands), (false, 0));
    assert_eq!(rec.count(), 1);

    snap.slices[0] = slice(
        "default",
        "web-1",
        "web",
        json!([{"name": "http", "port": 8080}]),
        json!([{"addresses": ["10.42.0.5"], "nodeName": "node-a"}, {"addresses": ["10.42.1.8"], "nodeName": "node-b"}]),
    );
    p.sync(&snap, &keys(&["default/web"])).unwrap();
    let svc = "service-SUSTUHLJ-default/web/tcp/http";
    let old = "endpoint-R4AVLYLO-default/web/tcp/http__10.42.1.7/8080";
    let new = crate::proxy::rules::hash_and_truncate("default/web/tcp/http__10.42.1.8/8080");
    let new = format!("endpoint-{new}");
    let t = "ip skiff-node";
    assert_eq!(
        rec.last(),
        format!(
            "add chain {t} {new}\n\
             add chain {t} {svc}\n\
             flush chain {t} {new}\n\
             flush chain {t} {svc}\n\
             add rule {t} {new} ip saddr 10.42.1.8 jump mark-for-masquerade\n\
             add rule {t} {new} meta l4proto tcp dnat to 10.42.1.8:8080\n\
             add rule {t} {svc} ip daddr 10.43.12.34 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n\
             add rule {t} {svc} numgen random mod 2 vmap {{ 0 : goto endpoint-WKF2J3BI-default/web/tcp/http__10.42.0.5/8080 , 1 : goto {new} }}\n\
             flush chain {t} {old}\n\
             delete chain {t} {old}\n"
        )
    );
}

#[test]
fn deleting_a_service_removes_its_chains_and_elements() {
    let rec = Recorder::default();
    let mut p = Proxier::new(rec.clone(), settings());
    let mut snap = example();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    snap.services
        .retain(|s| s.metadata.name.as_deref() != Some("web"));
    p.sync(&snap, &keys(&["default/web"])).unwrap();
    let t = "ip skiff-node";
    let (a, b) = (
        "endpoint-R4AVLYLO-default/web/tcp/http__10.42.1.7/8080",
        "endpoint-WKF2J3BI-default/web/tcp/http__10.42.0.5/8080",
    );
    let svc = "service-SUSTUHLJ-default/web/tcp/http";
    assert_eq!(
        rec.last(),
        format!(
            "delete element {t} cluster-ips {{ 10.43.12.34 }}\n\
             delete element {t} service-ips {{ 10.43.12.34 . tcp . 80 }}\n\
             flush chain {t} {a}\n\
             flush chain {t} {b}\n\
             flush chain {t} {svc}\n\
             delete chain {t} {a}\n\
             delete chain {t} {b}\n\
             delete chain {t} {svc}\n"
        )
    );
    // Gone from what is applied: a full sync after it no longer has it either.
    p.request_full_sync();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    assert!(!rec.last().contains("default/web/"));
}

#[test]
fn losing_every_endpoint_swaps_the_map_element_for_a_reject() {
    let rec = Recorder::default();
    let mut p = Proxier::new(rec.clone(), settings());
    let mut snap = Snapshot {
        services: vec![svc(
            "default",
            "web",
            "10.43.12.34",
            json!({}),
            json!([{"name": "http", "port": 80}]),
        )],
        slices: vec![web_slice(&["10.42.1.7"])],
    };
    p.sync(&snap, &BTreeSet::new()).unwrap();
    snap.slices.clear();
    p.sync(&snap, &keys(&["default/web"])).unwrap();
    let tx = rec.last();
    assert!(
        tx.contains("delete element ip skiff-node service-ips { 10.43.12.34 . tcp . 80 }\n"),
        "{tx}"
    );
    assert!(
        tx.contains("add element ip skiff-node reject-services { 10.43.12.34 . tcp . 80 }\n"),
        "{tx}"
    );
    assert!(
        !tx.contains("cluster-ips"),
        "the ClusterIP stays active: {tx}"
    );
    assert!(
        tx.contains("delete chain ip skiff-node service-SUSTUHLJ-default/web/tcp/http\n"),
        "{tx}"
    );
    // And back.
    snap.slices.push(web_slice(&["10.42.1.7"]));
    p.sync(&snap, &keys(&["default/web"])).unwrap();
    let tx = rec.last();
    assert!(
        tx.contains("delete element ip skiff-node reject-services { 10.43.12.34 . tcp . 80 }\n"),
        "{tx}"
    );
    assert!(tx.contains("add element ip skiff-node service-ips { 10.43.12.34 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http }\n"), "{tx}");
}

#[test]
fn affinity_and_local_policy_shapes() {
    let rec = Recorder::default();
    let mut p = Proxier::new(rec.clone(), settings());
    let mut snap = Snapshot {
        services: vec![
            svc(
                "default",
                "web",
                "10.43.12.34",
                json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
                json!([{"name": "http", "port": 80}]),
            ),
            svc(
                "default",
                "loc",
                "10.43.12.35",
                json!({"internalTrafficPolicy": "Local"}),
                json!([{"name": "http", "port": 80}]),
            ),
        ],
        slices: vec![
            web_slice(&["10.42.1.7"]),
            // Only on another node: Local policy drops.
            slice(
                "default",
                "loc-1",
                "loc",
                json!([{"name": "http", "port": 8080}]),
                json!([{"addresses": ["10.42.1.9"], "nodeName": "node-b"}]),
            ),
        ],
    };
    p.sync(&snap, &BTreeSet::new()).unwrap();
    let tx = rec.last();
    let ep = "endpoint-R4AVLYLO-default/web/tcp/http__10.42.1.7/8080";
    let aff = "affinity-R4AVLYLO-default/web/tcp/http__10.42.1.7/8080";
    assert!(tx.contains(&format!("add set ip skiff-node {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }}\n")), "{tx}");
    assert!(tx.contains(&format!("add rule ip skiff-node service-SUSTUHLJ-default/web/tcp/http ip saddr @{aff} goto {ep}\n")), "{tx}");
    assert!(
        tx.contains(&format!(
            "add rule ip skiff-node {ep} update @{aff} {{ ip saddr }}\n"
        )),
        "{tx}"
    );
    assert!(
        tx.contains("add element ip skiff-node drop-services { 10.43.12.35 . tcp . 80 }\n"),
        "{tx}"
    );
    assert!(!tx.contains("default/loc/"), "{tx}");
    // Affinity turned off: the set goes after the chains that used it.
    snap.services[0] = svc(
        "default",
        "web",
        "10.43.12.34",
        json!({}),
        json!([{"name": "http", "port": 80}]),
    );
    p.sync(&snap, &keys(&["default/web"])).unwrap();
    let tx = rec.last();
    assert!(
        tx.ends_with(&format!("delete set ip skiff-node {aff}\n")),
        "{tx}"
    );
    assert!(!tx.contains("update @"), "{tx}");
}

#[test]
fn stale_udp_flows() {
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    let t = |eps: &[&str]| UdpTarget {
        vip: ip("10.43.0.10"),
        port: 53,
        endpoints: eps.iter().map(|e| ip(e)).collect(),
    };
    assert_eq!(
        stale_udp(&[t(&["10.42.0.1", "10.42.0.2"])], &[t(&["10.42.0.2"])]),
        vec![(t(&["10.42.0.1", "10.42.0.2"]), Some(ip("10.42.0.1")))]
    );
    assert_eq!(
        stale_udp(&[t(&[])], &[t(&["10.42.0.2"])]),
        vec![(t(&["10.42.0.2"]), None)]
    );
    assert_eq!(
        stale_udp(&[], &[t(&["10.42.0.2"])]),
        vec![(t(&["10.42.0.2"]), None)]
    );
    assert_eq!(
        stale_udp(&[t(&["10.42.0.2"])], &[t(&["10.42.0.2"])]),
        vec![]
    );
}

#[test]
fn a_failed_partial_sync_is_followed_by_a_full_one() {
    let rec = Recorder::default();
    let mut p = Proxier::new(rec.clone(), settings());
    let mut snap = example();
    p.sync(&snap, &BTreeSet::new()).unwrap();
    snap.slices[0] = web_slice(&["10.42.1.9"]);
    rec.1.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(p.sync(&snap, &keys(&["default/web"])).is_err());
    assert!(p.needs_full_sync());
    rec.1.store(false, std::sync::atomic::Ordering::SeqCst);
    // The changed key is not given again: the full sync still carries the change.
    let stats = p.sync(&snap, &BTreeSet::new()).unwrap();
    assert!(stats.full);
    assert!(rec.last().contains("dnat to 10.42.1.9:8080"));
    assert!(!rec.last().contains("10.42.1.7"));
    // And what was applied is exact again: an unchanged partial sync does nothing.
    assert_eq!(p.sync(&snap, &keys(&["default/web"])).unwrap().commands, 0);
}

#[test]
fn two_services_on_one_external_address_do_not_break_the_sync() {
    let rec = Recorder::default();
    let mut p = Proxier::new(rec.clone(), settings());
    let ext = |name: &str, ip: &str| {
        svc(
            "default",
            name,
            ip,
            json!({"externalIPs": ["192.0.2.1"]}),
            json!([{"name": "http", "port": 80}]),
        )
    };
    let mut snap = Snapshot {
        services: vec![ext("a", "10.43.0.21"), ext("b", "10.43.0.22")],
        slices: vec![
            slice(
                "default",
                "a-1",
                "a",
                json!([{"name": "http", "port": 8080}]),
                json!([{"addresses": ["10.42.0.5"]}]),
            ),
            slice(
                "default",
                "b-1",
                "b",
                json!([{"name": "http", "port": 8080}]),
                json!([{"addresses": ["10.42.0.6"]}]),
            ),
        ],
    };
    p.sync(&snap, &BTreeSet::new()).unwrap();
    let claim = |tx: &str, svc: &str| {
        tx.lines().any(|l| {
            l.starts_with(
                "add element ip skiff-node service-ips { 192.0.2.1 . tcp . 80 : goto external-",
            ) && l.contains(&format!("default/{svc}/"))
        })
    };
    let tx = rec.last();
    assert!(claim(&tx, "a") && !claim(&tx, "b"), "{tx}");
    // b changes: a keeps the address.
    snap.slices[1] = slice(
        "default",
        "b-1",
        "b",
        json!([{"name": "http", "port": 8080}]),
        json!([{"addresses": ["10.42.0.7"]}]),
    );
    p.sync(&snap, &keys(&["default/b"])).unwrap();
    assert!(!rec.last().contains("192.0.2.1"), "{}", rec.last());
    // a goes: the address is free, and b takes it on its next change.
    snap.services.remove(0);
    p.sync(&snap, &keys(&["default/a"])).unwrap();
    assert!(rec
        .last()
        .contains("delete element ip skiff-node service-ips { 192.0.2.1 . tcp . 80 }"));
    p.sync(&snap, &keys(&["default/b"])).unwrap();
    assert!(claim(&rec.last(), "b"), "{}", rec.last());
}
