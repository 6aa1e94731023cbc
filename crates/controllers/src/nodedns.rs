//! The cluster DNS Service, answered on every node: skiff has no CoreDNS pods; each
//! node agent answers DNS itself on a node-local address (its pod bridge's gateway,
//! `<podCIDR>.1`, unless the node publishes another in the `skiff.io/dns-address`
//! annotation). This controller keeps
//! - the `kube-system/kube-dns` Service (CoreDNS's labels and ports, clusterIP
//!   `--cluster-dns`, no selector, `internalTrafficPolicy: Local`, so each node sends
//!   cluster DNS traffic to its own answerer and DNS keeps working on a node cut off
//!   from the others), recreated if deleted;
//! - one EndpointSlice per node (`kube-dns-<node>`, managed by `node-dns.skiff.io`),
//!   ready while the node is Ready, and the Endpoints object listing them all;
//!   a deleted node's slice goes.
//!
//! Off with `--disable coredns`.

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams};
use kube::Client;
use serde_json::json;
use std::net::Ipv4Addr;

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
/// The node annotation that names the address its DNS answerer listens on.
pub const DNS_ADDRESS_ANNOTATION: &str = "skiff.io/dns-address";
const MANAGER: &str = "node-dns.skiff.io";

/// The address node `n`'s answerer listens on, if it has one yet.
pub fn node_dns_address(n: &Node) -> Option<Ipv4Addr> {
    if let Some(a) = n
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DNS_ADDRESS_ANNOTATION))
    {
        return a.parse().ok();
    }
    let cidr: skiff_meta::netconf::Ipv4Net = n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    Some(skiff_meta::netconf::nth(cidr.trunc(), 1))
}

fn ports() -> serde_json::Value {
    json!([
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
    ])
}

/// The kube-dns Service skiff keeps.
pub fn service(cluster_dns: Ipv4Addr) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/cluster-service": "true",
            "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": cluster_dns.to_string(), "ports": ports(),
                 "internalTrafficPolicy": "Local"},
    })
}

/// One pass.
pub async fn sync(
    client: &Client,
    inf: &skiff_informer::Informers,
    cluster_dns: Ipv4Addr,
) -> Result<(), kube::Error> {
    let services: Vec<Service> = skiff_informer::cached(&inf.services);
    let exists = services.iter().any(|s| {
        s.metadata.namespace.as_deref() == Some(NAMESPACE)
            && s.metadata.name.as_deref() == Some(SERVICE)
    });
    let svc_api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    // The cache may lag a create of ours: ask the API before creating again.
    if !exists && svc_api.get_opt(SERVICE).await?.is_none() {
        let want: Service =
            serde_json::from_value(service(cluster_dns)).map_err(kube::Error::SerdeError)?;
        match svc_api.create(&crate::post_params(), &want).await {
            Ok(_) => tracing::info!(ip = %cluster_dns, "made the kube-dns Service"),
            // Already there (the cache lags), or the namespace is not made yet.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let nodes: Vec<Node> = skiff_informer::cached(&inf.nodes);
    let slices: Vec<EndpointSlice> = skiff_informer::cached(&inf.endpoint_slices);
    let sl_api: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let mut wanted = Vec::new();
    let mut addresses = Vec::new();
    let mut not_ready = Vec::new();
    for n in &nodes {
        let (Some(name), Some(ip)) = (n.metadata.name.as_deref(), node_dns_address(n)) else {
            continue;
        };
        let ready = crate::node_ready(n) && n.metadata.deletion_timestamp.is_none();
        let slice_name = format!("{SERVICE}-{name}");
        wanted.push(slice_name.clone());
        let addr = json!({"ip": ip.to_string(), "nodeName": name});
        if ready {
            addresses.push(addr);
        } else {
            not_ready.push(addr);
        }
        let want: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": slice_name, "namespace": NAMESPACE, "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": MANAGER}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip.to_string()], "nodeName": name,
                "conditions": {"ready": ready, "serving": ready, "terminating": false}}],
            "ports": ports(),
        }))
        .map_err(kube::Error::SerdeError)?;
        let have = slices.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(NAMESPACE)
                && s.metadata.name.as_deref() == Some(slice_name.as_str())
        });
        crate::endpoints::upsert(&sl_api, have, want, |s| {
            serde_json::to_value((&s.endpoints, &s.ports, &s.metadata.labels)).unwrap_or_default()
        })
        .await?;
    }
    for s in slices.iter().filter(|s| {
        s.metadata.namespace.as_deref() == Some(NAMESPACE)
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
                .map(String::as_str)
                == Some(MANAGER)
            && !wanted
                .iter()
                .any(|w| Some(w.as_str()) == s.metadata.name.as_deref())
    }) {
        let _ = sl_api
            .delete(
                s.metadata.name.as_deref().unwrap_or(""),
                &DeleteParams::default(),
            )
            .await;
    }
    let eps: Vec<Endpoints> = skiff_informer::cached(&inf.endpoints);
    let mut subset = json!({"ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]});
    if !addresses.is_empty() {
        subset["addresses"] = json!(addresses);
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = json!(not_ready);
    }
    let subsets = if addresses.is_empty() && not_ready.is_empty() {
        json!([])
    } else {
        json!([subset])
    };
    let want: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": SERVICE, "namespace": NAMESPACE,
                     "labels": {"k8s-app": "kube-dns"}},
        "subsets": subsets,
    }))
    .map_err(kube::Error::SerdeError)?;
    let have = eps.iter().find(|e| {
        e.metadata.namespace.as_deref() == Some(NAMESPACE)
            && e.metadata.name.as_deref() == Some(SERVICE)
    });
    let ep_api: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    crate::endpoints::upsert(&ep_api, have, want, |e| {
        serde_json::to_value(&e.subsets).unwrap_or_default()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_answers_on_its_pod_gateway_unless_it_says_otherwise() {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "a"},
            "spec": {"podCIDR": "10.42.3.0/24"}}))
        .unwrap();
        assert_eq!(node_dns_address(&n), Some(Ipv4Addr::new(10, 42, 3, 1)));
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "a",
            "annotations": {DNS_ADDRESS_ANNOTATION: "169.254.20.10"}},
            "spec": {"podCIDR": "10.42.3.0/24"}}))
        .unwrap();
        assert_eq!(node_dns_address(&n), Some(Ipv4Addr::new(169, 254, 20, 10)));
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
        assert_eq!(node_dns_address(&n), None);
        let s = service(Ipv4Addr::new(10, 43, 0, 10));
        assert_eq!(s["spec"]["clusterIP"], "10.43.0.10");
        assert_eq!(s["spec"]["internalTrafficPolicy"], "Local");
        assert!(s["spec"].get("selector").is_none());
    }
}
