//! What the proxy programs, read from Services and EndpointSlices: one [`ServicePort`]
//! per port of a Service with a cluster IP, with its endpoints from every slice that
//! names the Service (`kubernetes.io/service-name`, whoever manages the slice).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The label joining an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// kube's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// Everything the proxy reads, as the informers hold it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Kubernetes' spelling (`TCP`); missing means TCP.
    pub fn parse(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's spelling (`tcp`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// `namespace/name`, the key changes are tracked by.
pub fn service_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The key of the Service a slice belongs to, from its label.
pub fn slice_service_key(slice: &EndpointSlice) -> Option<String> {
    let ns = slice.metadata.namespace.as_deref()?;
    let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(service_key(ns, svc))
}

/// The key of a Service.
pub fn key_of(svc: &Service) -> Option<String> {
    Some(service_key(
        svc.metadata.namespace.as_deref()?,
        svc.metadata.name.as_deref()?,
    ))
}

/// One endpoint of one service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (`nodeName` equals ours).
    pub local: bool,
}

/// One port of one Service, with its endpoints sorted by (ip, port), each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub service: String,
    /// The port's name (`""` for an unnamed single port).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// The NodePort of a NodePort or LoadBalancer Service.
    pub node_port: Option<u16>,
    /// `externalTrafficPolicy: Local` (only for Services reachable from outside).
    pub external_local: bool,
    /// `spec.externalIPs` (IPv4).
    pub external_ips: Vec<Ipv4Addr>,
    /// A LoadBalancer Service's `status.loadBalancer.ingress[].ip` (IPv4).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// A LoadBalancer Service's `spec.loadBalancerSourceRanges`.
    pub source_ranges: Vec<ipnet::Ipv4Net>,
    /// `sessionAffinity: ClientIP` with its timeout in seconds.
    pub affinity: Option<u32>,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Whether traffic reaches the port from outside: a NodePort, external or
    /// load-balancer IPs.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// `ns/svc/proto/portname`, the base of the port's chain names (kube-proxy's
    /// `servicePortChainNameBase`).
    pub fn name_base(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.service,
            self.protocol.nft(),
            self.port_name
        )
    }
}

/// The IPv4 cluster IP of a Service the proxy handles: None for headless, ExternalName
/// and IPv6-only Services.
fn cluster_ip(svc: &Service) -> Option<Ipv4Addr> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.cluster_ip.as_deref()?.parse().ok()
}

fn affinity(svc: &Service) -> Option<u32> {
    let spec = svc.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_AFFINITY_TIMEOUT);
    Some(timeout)
}

fn rank(e: &Endpoint) -> u8 {
    u8::from(e.ready) * 2 + u8::from(e.serving)
}

/// The endpoints of port (`name`, `protocol`) across `slices`, deduplicated by
/// (ip, port) (the better condition wins), sorted.
fn endpoints_for(
    slices: &[&EndpointSlice],
    name: &str,
    protocol: Protocol,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut by_addr: BTreeMap<(Ipv4Addr, u16), Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            // kube-proxy uses the first address.
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let cond = ep.conditions.as_ref();
            // A missing `ready` is ready (the API's documented meaning).
            let ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let e = Endpoint {
                ip,
                port,
                ready,
                serving: cond.and_then(|c| c.serving).unwrap_or(ready),
                terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
                local: ep.node_name.as_deref() == Some(node_name),
            };
            match by_addr.get(&(ip, port)) {
                Some(old) if rank(old) >= rank(&e) => {}
                _ => {
                    by_addr.insert((ip, port), e);
                }
            }
        }
    }
    by_addr.into_values().collect()
}

/// The ports of one Service with endpoints from `slices` (the Service's own).
pub fn service_ports(
    svc: &Service,
    slices: &[&EndpointSlice],
    node_name: &str,
) -> Vec<ServicePort> {
    let (Some(ip), Some(spec)) = (cluster_ip(svc), svc.spec.as_ref()) else {
        return Vec::new();
    };
    let (Some(ns), Some(name)) = (
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
    ) else {
        return Vec::new();
    };
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let lb = spec.type_.as_deref() == Some("LoadBalancer");
    let v4 = |s: &String| s.parse::<Ipv4Addr>().ok();
    let external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(v4).collect();
    let load_balancer_ips: Vec<Ipv4Addr> = if lb {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_ref().and_then(v4))
            .collect()
    } else {
        Vec::new()
    };
    let source_ranges: Vec<ipnet::Ipv4Net> = if lb {
        spec.load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|r| r.trim().parse::<ipnet::Ipv4Net>().ok().map(|n| n.trunc()))
            .collect()
    } else {
        Vec::new()
    };
    let external_local = (external || !external_ips.is_empty())
        && spec.external_traffic_policy.as_deref() == Some("Local");
    let affinity = affinity(svc);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let (Some(protocol), Ok(port)) = (
            Protocol::parse(p.protocol.as_deref()),
            u16::try_from(p.port),
        ) else {
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        if !seen.insert((port_name.clone(), protocol)) {
            continue;
        }
        out.push(ServicePort {
            namespace: ns.to_string(),
            service: name.to_string(),
            endpoints: endpoints_for(slices, &port_name, protocol, node_name),
            port_name,
            protocol,
            cluster_ip: ip,
            port,
            internal_local,
            node_port: p
                .node_port
                .filter(|_| external)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0),
            external_local,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            source_ranges: source_ranges.clone(),
            affinity,
        });
    }
    out
}

/// Every Service of `snap` (only those in `only`, if given) by key, with its ports.
pub fn build(
    snap: &Snapshot,
    node_name: &str,
    only: Option<&BTreeSet<String>>,
) -> BTreeMap<String, Vec<ServicePort>> {
    let wanted = |k: &str| only.is_none_or(|o| o.contains(k));
    let mut slices: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in &snap.slices {
        if let Some(k) = slice_service_key(s) {
            if wanted(&k) {
                slices.entry(k).or_default().push(s);
            }
        }
    }
    let mut out = BTreeMap::new();
    for svc in &snap.services {
        let Some(k) = key_of(svc) else { continue };
        if !wanted(&k) {
            continue;
        }
        let own = slices.get(&k).map(Vec::as_slice).unwrap_or(&[]);
        out.insert(k, service_ports(svc, own, node_name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).unwrap())
    }
    fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn joins_slices_by_label_resolves_ports_by_name_and_dedups() {
        let snap = Snapshot {
            services: vec![
                svc(json!({"metadata": {"namespace": "default", "name": "web"},
                    "spec": {"clusterIP": "10.43.0.5", "sessionAffinity": "ClientIP",
                      "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                                {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
                svc(
                    json!({"metadata": {"namespace": "default", "name": "headless"},
                    "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
                ),
            ],
            slices: vec![
                slice(json!({"metadata": {"namespace": "default", "name": "web-a",
                      "labels": {"kubernetes.io/service-name": "web"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
                    "endpoints": [
                      {"addresses": ["10.42.0.7"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "me"},
                      {"addresses": ["10.42.0.6"], "nodeName": "other"}]})),
                // A hand-written slice (another manager) with a duplicate endpoint.
                slice(
                    json!({"metadata": {"namespace": "default", "name": "web-manual",
                      "labels": {"kubernetes.io/service-name": "web",
                                 "endpointslice.kubernetes.io/managed-by": "someone"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080}],
                    "endpoints": [{"addresses": ["10.42.0.7"], "conditions": {"ready": true}}]}),
                ),
                // Another namespace's slice of the same name is not ours.
                slice(json!({"metadata": {"namespace": "other", "name": "x",
                      "labels": {"kubernetes.io/service-name": "web"}},
                    "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
                    "endpoints": [{"addresses": ["10.9.9.9"]}]})),
            ],
        };
        let all = build(&snap, "me", None);
        assert_eq!(all["default/headless"], vec![]);
        let web = &all["default/web"];
        assert_eq!(web.len(), 2);
        assert_eq!(web[0].name_base(), "default/web/tcp/http");
        assert_eq!(web[0].affinity, Some(DEFAULT_AFFINITY_TIMEOUT));
        let eps: Vec<_> = web[0]
            .endpoints
            .iter()
            .map(|e| (e.ip.to_string(), e.port, e.ready, e.local))
            .collect();
        assert_eq!(
            eps,
            vec![
                ("10.42.0.6".into(), 8080, true, false),
                ("10.42.0.7".into(), 8080, true, false)
            ]
        );
        assert_eq!(web[1].protocol, Protocol::Udp);
        let eps: Vec<_> = web[1]
            .endpoints
            .iter()
            .map(|e| (e.port, e.ready, e.serving, e.local))
            .collect();
        assert_eq!(
            eps,
            vec![(5353, true, true, false), (5353, false, true, true)]
        );
        let only: BTreeSet<String> = ["default/headless".to_string()].into();
        assert_eq!(build(&snap, "me", Some(&only)).len(), 1);
    }
}
