//! ServiceLB, k3s's built-in load balancer for clusters without a cloud: every
//! `type: LoadBalancer` Service without a `spec.loadBalancerClass` gets the addresses
//! of the nodes that carry it in `status.loadBalancer.ingress`, and each node agent
//! answers on those addresses (it programs them as the Service's virtual IPs, where
//! k3s runs a `svclb-…` DaemonSet whose pods DNAT with host ports; the nodes chosen
//! are the same).
//!
//! Which nodes carry a Service, as k3s decides it:
//! - Ready nodes; if any node has the label `svccontroller.k3s.cattle.io/enablelb`,
//!   only the nodes where it is `true`;
//! - a node whose port is already held by an older LoadBalancer Service (same port
//!   and protocol) is left out, as the svclb pod would stay Pending on it;
//! - with `externalTrafficPolicy: Local`, only nodes with a ready endpoint.
//!
//! The ingress lists the chosen nodes' ExternalIP addresses if any of them has one,
//! else their InternalIP addresses, sorted. Off with `skiff server --disable servicelb`:
//! nothing sets the status, and the Services stay `<pending>` as on a cluster without
//! a load-balancer controller.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// The node label that restricts ServiceLB to some nodes (k3s's).
pub const ENABLE_LB_LABEL: &str = "svccontroller.k3s.cattle.io/enablelb";

type Key = (String, String);

fn key(svc: &Service) -> Key {
    (
        svc.metadata.namespace.clone().unwrap_or_default(),
        svc.metadata.name.clone().unwrap_or_default(),
    )
}

/// Whether ServiceLB handles `svc`.
fn handled(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec.load_balancer_class.is_none()
        && svc.metadata.deletion_timestamp.is_none()
}

fn addresses(n: &Node, kind: &str) -> Vec<String> {
    n.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .filter(|a| a.type_ == kind)
                .map(|a| a.address.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The nodes with a ready endpoint of `svc` in `slices`.
fn nodes_with_endpoints(svc: &Service, slices: &[EndpointSlice]) -> BTreeSet<String> {
    let (ns, name) = key(svc);
    slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns.as_str())
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    == Some(&name)
        })
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// The ingress addresses of every handled Service.
pub fn plan(
    services: &[Service],
    nodes: &[Node],
    slices: &[EndpointSlice],
) -> BTreeMap<Key, Vec<String>> {
    let restricted = nodes.iter().any(|n| {
        n.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(ENABLE_LB_LABEL))
    });
    let eligible: Vec<&Node> = nodes
        .iter()
        .filter(|n| crate::node_ready(n))
        .filter(|n| {
            !restricted
                || n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(ENABLE_LB_LABEL))
                    .is_some_and(|v| v == "true")
        })
        .collect();
    // Oldest first: an older Service keeps a node's port.
    let mut lbs: Vec<&Service> = services.iter().filter(|s| handled(s)).collect();
    lbs.sort_by_key(|s| (s.metadata.creation_timestamp.clone(), key(s)));
    let mut taken: BTreeSet<(String, String, i32)> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for svc in lbs {
        let spec = svc.spec.as_ref();
        let ports: Vec<(String, i32)> = spec
            .and_then(|s| s.ports.as_ref())
            .map(|ps| {
                ps.iter()
                    .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
                    .collect()
            })
            .unwrap_or_default();
        let local = spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
        let with_endpoints = local.then(|| nodes_with_endpoints(svc, slices));
        let mut chosen: Vec<&Node> = Vec::new();
        for n in &eligible {
            let name = n.metadata.name.clone().unwrap_or_default();
            if ports
                .iter()
                .any(|(proto, port)| taken.contains(&(name.clone(), proto.clone(), *port)))
            {
                continue;
            }
            // The node is the Service's (its svclb pod would run there) even if it has
            // no local endpoint: the port stays taken, as a Pending-free pod holds it.
            for (proto, port) in &ports {
                taken.insert((name.clone(), proto.clone(), *port));
            }
            if with_endpoints.as_ref().is_none_or(|w| w.contains(&name)) {
                chosen.push(n);
            }
        }
        let external: Vec<String> = chosen
            .iter()
            .flat_map(|n| addresses(n, "ExternalIP"))
            .collect();
        let mut ips = if external.is_empty() {
            chosen
                .iter()
                .flat_map(|n| addresses(n, "InternalIP"))
                .collect()
        } else {
            external
        };
        ips.sort();
        ips.dedup();
        out.insert(key(svc), ips);
    }
    out
}

fn current(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

/// One pass: patch the status of every handled Service whose addresses changed.
pub async fn sync(client: &Client, inf: &skiff_informer::Informers) -> Result<(), kube::Error> {
    let services: Vec<Service> = skiff_informer::cached(&inf.services);
    let nodes: Vec<Node> = skiff_informer::cached(&inf.nodes);
    let slices: Vec<EndpointSlice> = skiff_informer::cached(&inf.endpoint_slices);
    let want = plan(&services, &nodes, &slices);
    for svc in services.iter().filter(|s| handled(s)) {
        let (ns, name) = key(svc);
        let Some(ips) = want.get(&(ns.clone(), name.clone())) else {
            continue;
        };
        let has = current(svc);
        if &has == ips {
            continue;
        }
        let ingress: Vec<_> = ips
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                if ips.is_empty() {
                    tracing::info!(service = %format!("{ns}/{name}"), "ServiceLB: no available nodes for the LoadBalancer");
                } else {
                    tracing::info!(service = %format!("{ns}/{name}"), from = ?has, to = ?ips, "ServiceLB: updated the LoadBalancer's addresses");
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, internal: &str, external: Option<&str>) -> Node {
        let mut addrs = vec![json!({"type": "InternalIP", "address": internal})];
        if let Some(e) = external {
            addrs.push(json!({"type": "ExternalIP", "address": e}));
        }
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"addresses": addrs, "conditions": [
                {"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        .unwrap()
    }

    fn lb(name: &str, created: &str, port: i32, extra: serde_json::Value) -> Service {
        let mut s = json!({"metadata": {"name": name, "namespace": "default",
                "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]}});
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                s["spec"][k] = v;
            }
        }
        serde_json::from_value(s).unwrap()
    }

    fn ips(plan: &BTreeMap<Key, Vec<String>>, name: &str) -> Vec<String> {
        plan[&("default".to_string(), name.to_string())].clone()
    }

    #[test]
    fn ready_nodes_carry_the_service_and_older_services_keep_their_port() {
        let nodes = [
            node("a", true, "10.0.0.2", None),
            node("b", true, "10.0.0.1", None),
            node("c", false, "10.0.0.3", None),
        ];
        let svcs = [
            lb("second", "2026-01-02T00:00:00Z", 80, json!({})),
            lb("first", "2026-01-01T00:00:00Z", 80, json!({})),
            lb("other", "2026-01-03T00:00:00Z", 443, json!({})),
            lb(
                "classy",
                "2026-01-01T00:00:00Z",
                8080,
                json!({"loadBalancerClass": "x/y"}),
            ),
        ];
        let p = plan(&svcs, &nodes, &[]);
        assert_eq!(ips(&p, "first"), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&p, "second"), Vec::<String>::new());
        assert_eq!(ips(&p, "other"), ["10.0.0.1", "10.0.0.2"]);
        assert!(!p.contains_key(&("default".into(), "classy".into())));
    }

    #[test]
    fn external_addresses_win_and_the_enablelb_label_restricts() {
        let mut a = node("a", true, "10.0.0.1", Some("203.0.113.1"));
        let b = node("b", true, "10.0.0.2", None);
        let svcs = [lb("web", "2026-01-01T00:00:00Z", 80, json!({}))];
        let p = plan(&svcs, &[a.clone(), b.clone()], &[]);
        assert_eq!(ips(&p, "web"), ["203.0.113.1"]);
        a.metadata.labels = Some([(ENABLE_LB_LABEL.to_string(), "false".to_string())].into());
        let mut b2 = b.clone();
        b2.metadata.labels = Some([(ENABLE_LB_LABEL.to_string(), "true".to_string())].into());
        let p = plan(&svcs, &[a, b2], &[]);
        assert_eq!(ips(&p, "web"), ["10.0.0.2"]);
    }

    #[test]
    fn local_traffic_policy_lists_only_nodes_with_ready_endpoints() {
        let nodes = [
            node("a", true, "10.0.0.1", None),
            node("b", true, "10.0.0.2", None),
        ];
        let svcs = [lb(
            "web",
            "2026-01-01T00:00:00Z",
            80,
            json!({"externalTrafficPolicy": "Local"}),
        )];
        let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-x", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.42.1.5"], "nodeName": "b", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.5"], "nodeName": "a", "conditions": {"ready": false}}
        ]}))
        .unwrap();
        let p = plan(&svcs, &nodes, &[slice]);
        assert_eq!(ips(&p, "web"), ["10.0.0.2"]);
    }
}
