//! Pods across nodes, flannel's job: every node's `spec.podCIDR` is routed to that
//! node, so pods reach each other by pod IP without NAT.
//!
//! Each node publishes what the others need on its Node object, with flannel's
//! annotations (`flannel.alpha.coreos.com/backend-type`, `backend-data`
//! `{"VNI":1,"VtepMAC":"…"}`, `public-ip`, `kube-subnet-manager`), and programs
//! what the others published:
//! - `vxlan` (the default): a kernel VXLAN device (`flannel.1`, UDP 8472, learning
//!   off, MTU of the uplink − 50) made when the first other node appears; per other
//!   node a permanent neighbour entry (its subnet's `.0` → its VTEP MAC), a
//!   forwarding entry (its MAC → its address) and an on-link route to its pod CIDR
//!   through the device — the entries flannel's vxlan backend writes;
//! - `host-gw`: a plain route to each node's pod CIDR via its address (nodes on one
//!   L2 segment);
//! - `none`: nothing (the user routes pods).
//!
//! Every route skiff makes carries protocol [`RTPROT_SKIFF`], so a reconcile (and
//! `--cleanup`) finds exactly its own. Reconciling is level-triggered: the wanted
//! set comes from the Nodes, the present set from the kernel, and the difference is
//! added or removed — a deleted node's route, neighbour and forwarding entries go.

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The routing protocol number on every route skiff makes (`ip route show proto 200`).
pub const RTPROT_SKIFF: u8 = 200;

const ANNOTATION_PREFIX: &str = "flannel.alpha.coreos.com/";
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// `--flannel-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Vxlan,
    HostGw,
    None,
}

impl std::str::FromStr for Backend {
    type Err = RouteError;
    fn from_str(s: &str) -> Result<Backend, RouteError> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "none" => Ok(Backend::None),
            other => Err(RouteError::Config(format!(
                "--flannel-backend {other}: not supported (skiff has vxlan, host-gw and none)"
            ))),
        }
    }
}

impl Backend {
    fn annotation(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::None => "none",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{0}")]
    Config(String),
    #[error("netlink: {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RouteError {
    let what = what.into();
    move |source| RouteError::Netlink { what, source }
}

/// This node's part in pod routing.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub backend: Backend,
    pub node_name: String,
    /// The address other nodes reach this one at (`--node-ip`).
    pub node_ip: Ipv4Addr,
    /// This node's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// `--flannel-iface`: the uplink; None: the interface holding `node_ip`.
    pub iface: Option<String>,
    /// `--vxlan-device` (flannel's `flannel.<VNI>`).
    pub vxlan_device: String,
    /// `--vxlan-vni`.
    pub vni: u32,
    /// `--vxlan-port` (the kernel's default, 8472).
    pub vxlan_port: u16,
}

impl RouteSettings {
    /// The settings with flannel's defaults for what is not given.
    pub fn new(backend: Backend, node_name: &str, node_ip: Ipv4Addr, pod_cidr: Ipv4Net) -> Self {
        RouteSettings {
            backend,
            node_name: node_name.to_string(),
            node_ip,
            pod_cidr,
            iface: None,
            vxlan_device: "flannel.1".into(),
            vni: 1,
            vxlan_port: 8472,
        }
    }
}

/// The VTEP MAC of a node: locally administered, unicast, and stable for the node's
/// name (so a recreated device keeps it and the other nodes' entries stay right).
pub fn vtep_mac(node_name: &str) -> [u8; 6] {
    let h = sha2::Sha256::digest(node_name.as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&h[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

/// The annotations this node publishes on its Node (none with backend `none`).
pub fn annotations(s: &RouteSettings) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    if s.backend == Backend::None {
        return a;
    }
    a.insert(BACKEND_TYPE.into(), s.backend.annotation().into());
    let data = match s.backend {
        Backend::Vxlan => {
            serde_json::json!({"VNI": s.vni, "VtepMAC": mac_string(&vtep_mac(&s.node_name))})
                .to_string()
        }
        _ => "null".into(),
    };
    a.insert(BACKEND_DATA.into(), data);
    a.insert(PUBLIC_IP.into(), s.node_ip.to_string());
    a.insert(SUBNET_MANAGER.into(), "true".into());
    a
}

/// Another node, as its Node object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub public_ip: Ipv4Addr,
    /// Its VTEP MAC (vxlan only).
    pub vtep_mac: Option<[u8; 6]>,
}

/// The other nodes that published a pod CIDR and this node's backend, by name.
pub fn peers(nodes: &[Node], s: &RouteSettings) -> Vec<Peer> {
    let mut out: Vec<Peer> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(s.node_name.as_str()))
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| {
            let a = n.metadata.annotations.as_ref()?;
            if a.get(BACKEND_TYPE).map(String::as_str) != Some(s.backend.annotation()) {
                return None;
            }
            let pod_cidr: Ipv4Net = n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
            let public_ip: Ipv4Addr = a.get(PUBLIC_IP)?.parse().ok()?;
            let vtep_mac = match s.backend {
                Backend::Vxlan => {
                    let data: serde_json::Value =
                        serde_json::from_str(a.get(BACKEND_DATA)?).ok()?;
                    if data["VNI"].as_u64() != Some(u64::from(s.vni)) {
                        return None;
                    }
                    Some(parse_mac(data["VtepMAC"].as_str()?)?)
                }
                _ => None,
            };
            Some(Peer {
                name: n.metadata.name.clone()?,
                pod_cidr: pod_cidr.trunc(),
                public_ip,
                vtep_mac,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, RouteError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

/// The uplink: `--flannel-iface`, else the interface holding the node's address;
/// its index and MTU.
async fn uplink(
    h: &Handle,
    node_ip: Ipv4Addr,
    iface: Option<&str>,
) -> Result<(u32, u32), RouteError> {
    use netlink_packet_route::address::AddressAttribute;
    use netlink_packet_route::link::LinkAttribute;
    let index = match iface {
        Some(name) => link_index(h, name).await?.ok_or_else(|| {
            RouteError::Config(format!("--flannel-iface {name}: no such interface"))
        })?,
        None => {
            let mut addrs = h.address().get().execute();
            let mut found = None;
            while let Some(a) = addrs.try_next().await.map_err(nl("listing addresses"))? {
                if a.attributes.iter().any(
                    |at| matches!(at, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == node_ip),
                ) {
                    found = Some(a.header.index);
                    break;
                }
            }
            found.ok_or_else(|| {
                RouteError::Config(format!(
                    "no interface holds the node address {node_ip} (set --flannel-iface)"
                ))
            })?
        }
    };
    let mut links = h.link().get().match_index(index).execute();
    let link = links
        .try_next()
        .await
        .map_err(nl("reading the uplink"))?
        .ok_or_else(|| RouteError::Config(format!("interface {index} vanished")))?;
    let mtu = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500);
    Ok((index, mtu))
}

/// The MTU pods get with `backend`: the uplink's, less the 50 bytes of VXLAN
/// encapsulation.
pub fn pod_mtu(backend: Backend, uplink_mtu: u32) -> u32 {
    match backend {
        Backend::Vxlan => uplink_mtu.saturating_sub(50),
        _ => uplink_mtu,
    }
}

/// The MTU the pod bridge and pod interfaces should have with `backend` on this
/// node, or None to leave the kernel's default: no encapsulation, or a node on the
/// loopback address (a lone node: pods talk only to the node and the outside).
/// Runs netlink on a thread of its own, so it can be called from anywhere.
pub fn pod_mtu_for(
    backend: Backend,
    node_ip: Ipv4Addr,
    iface: Option<String>,
) -> Result<Option<u32>, RouteError> {
    if backend != Backend::Vxlan || node_ip.is_loopback() {
        return Ok(None);
    }
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let h = handle()?;
            let (_, mtu) = uplink(&h, node_ip, iface.as_deref()).await?;
            Ok(Some(pod_mtu(backend, mtu)))
        })
    })
    .join()
    .map_err(|_| RouteError::Config("the MTU lookup thread panicked".into()))?
}

/// Makes the VXLAN device if it is missing; returns its index.
async fn ensure_vxlan(h: &Handle, s: &RouteSettings) -> Result<u32, RouteError> {
    if let Some(i) = link_index(h, &s.vxlan_device).await? {
        return Ok(i);
    }
    let (up_index, up_mtu) = uplink(h, s.node_ip, s.iface.as_deref()).await?;
    let msg = rtnetlink::LinkVxlan::new(&s.vxlan_device, s.vni)
        .dev(up_index)
        .port(s.vxlan_port)
        .local(s.node_ip)
        .learning(false)
        .mtu(pod_mtu(Backend::Vxlan, up_mtu))
        .address(vtep_mac(&s.node_name).to_vec())
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(nl(format!("creating {}", s.vxlan_device)))?;
    let index = link_index(h, &s.vxlan_device)
        .await?
        .ok_or_else(|| RouteError::Config(format!("{} vanished", s.vxlan_device)))?;
    h.address()
        .add(index, IpAddr::V4(s.pod_cidr.network()), 32)
        .execute()
        .await
        .map_err(nl(format!("addressing {}", s.vxlan_device)))?;
    h.link()
        .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("bringing {} up", s.vxlan_device)))?;
    tracing::info!(device = %s.vxlan_device, vni = s.vni, port = s.vxlan_port, "made the VXLAN device");
    Ok(index)
}

fn route_dst(r: &RouteMessage) -> Option<Ipv4Net> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Ipv4Net::new(*ip, r.header.destination_prefix_length).ok()
        }
        _ => None,
    })
}

/// skiff's routes in the main table.
async fn own_routes(h: &Handle) -> Result<Vec<RouteMessage>, RouteError> {
    let mut out = Vec::new();
    let mut s = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = s.try_next().await.map_err(nl("listing routes"))? {
        if r.header.protocol == RouteProtocol::Other(RTPROT_SKIFF) {
            out.push(r);
        }
    }
    Ok(out)
}

/// The neighbour entries (`family` Inet: ARP; Bridge: forwarding) on `index`.
async fn neighbours(
    h: &Handle,
    index: u32,
    family: AddressFamily,
) -> Result<Vec<NeighbourMessage>, RouteError> {
    let mut out = Vec::new();
    let mut s = h.neighbours().get().set_address_family(family).execute();
    while let Some(n) = s.try_next().await.map_err(nl("listing neighbours"))? {
        if n.header.ifindex == index {
            out.push(n);
        }
    }
    Ok(out)
}

fn neigh_dst(n: &NeighbourMessage) -> Option<Ipv4Addr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

fn neigh_mac(n: &NeighbourMessage) -> Option<Vec<u8>> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) => Some(m.clone()),
        _ => None,
    })
}

/// Brings the kernel in line with `peers`: adds what is missing, removes what is
/// skiff's and no longer wanted.
pub async fn reconcile(h: &Handle, s: &RouteSettings, peers: &[Peer]) -> Result<(), RouteError> {
    let mut want_routes: BTreeSet<Ipv4Net> = BTreeSet::new();
    match s.backend {
        Backend::None => {}
        Backend::HostGw => {
            for p in peers {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(p.pod_cidr.network(), p.pod_cidr.prefix_len())
                    .gateway(p.public_ip)
                    .protocol(RouteProtocol::Other(RTPROT_SKIFF))
                    .build();
                match h.route().add(route).replace().execute().await {
                    Ok(()) => {
                        want_routes.insert(p.pod_cidr);
                    }
                    // Not on our L2 segment: host-gw cannot reach it.
                    Err(e) => tracing::warn!(node = %p.name, via = %p.public_ip, error = %e,
                        "host-gw: no route to the node's pods (is it on this node's L2 segment?)"),
                }
            }
        }
        Backend::Vxlan => {
            let existing = link_index(h, &s.vxlan_device).await?;
            // Made lazily: a lone node never binds the VXLAN port.
            let index = match (existing, peers.is_empty()) {
                (None, true) => None,
                (Some(i), _) => Some(i),
                (None, false) => Some(ensure_vxlan(h, s).await?),
            };
            if let Some(index) = index {
                let mut want_neigh = BTreeSet::new();
                let mut want_fdb = BTreeSet::new();
                for p in peers {
                    let Some(mac) = p.vtep_mac else { continue };
                    let gw = p.pod_cidr.network();
                    h.neighbours()
                        .add(index, IpAddr::V4(gw))
                        .link_layer_address(&mac)
                        .replace()
                        .execute()
                        .await
                        .map_err(nl(format!("neighbour entry for {}", p.name)))?;
                    h.neighbours()
                        .add_bridge(index, &mac)
                        .destination(IpAddr::V4(p.public_ip))
                        .flags(NeighbourFlags::Own)
                        .replace()
                        .execute()
                        .await
                        .map_err(nl(format!("forwarding entry for {}", p.name)))?;
                    let route = RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(p.pod_cidr.network(), p.pod_cidr.prefix_len())
                        .gateway(gw)
                        .output_interface(index)
                        .onlink()
                        .protocol(RouteProtocol::Other(RTPROT_SKIFF))
                        .build();
                    h.route()
                        .add(route)
                        .replace()
                        .execute()
                        .await
                        .map_err(nl(format!("route to {}'s pods", p.name)))?;
                    want_neigh.insert(gw);
                    want_fdb.insert(mac.to_vec());
                    want_routes.insert(p.pod_cidr);
                }
                for n in neighbours(h, index, AddressFamily::Inet).await? {
                    if neigh_dst(&n).is_some_and(|d| !want_neigh.contains(&d)) {
                        let _ = h.neighbours().del(n).execute().await;
                    }
                }
                for n in neighbours(h, index, AddressFamily::Bridge).await? {
                    let mac = neigh_mac(&n).unwrap_or_default();
                    // The all-zeros entry is the kernel's default destination.
                    if mac.iter().any(|b| *b != 0) && !want_fdb.contains(&mac) {
                        let _ = h.neighbours().del(n).execute().await;
                    }
                }
            }
        }
    }
    for r in own_routes(h).await? {
        if route_dst(&r).is_some_and(|d| !want_routes.contains(&d)) {
            let what = format!("removing the route to {:?}", route_dst(&r));
            h.route().del(r).execute().await.map_err(nl(what))?;
        }
    }
    Ok(())
}

/// Removes everything pod routing made: skiff's routes and the VXLAN device (its
/// neighbour and forwarding entries go with it).
pub async fn cleanup(h: &Handle, vxlan_device: &str) -> Result<(), RouteError> {
    for r in own_routes(h).await? {
        h.route()
            .del(r)
            .execute()
            .await
            .map_err(nl("removing a route"))?;
    }
    if let Some(i) = link_index(h, vxlan_device).await? {
        h.link()
            .del(i)
            .execute()
            .await
            .map_err(nl(format!("deleting {vxlan_device}")))?;
    }
    Ok(())
}

/// A netlink handle with its connection driven on the current runtime.
pub fn handle() -> Result<Handle, RouteError> {
    let (conn, h, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(h)
}

/// How often the routes are reconciled when no Node changed.
const RESYNC: Duration = Duration::from_secs(10);

/// Publishes this node's annotations and keeps the routes to the other nodes in line
/// with the Nodes until `stop`. Routes stay in place when it stops.
pub async fn run(
    client: kube::Client,
    s: RouteSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RouteError> {
    use kube::api::{Api, Patch, PatchParams};
    if s.backend == Backend::None {
        return Ok(());
    }
    let nodes_api: Api<Node> = Api::all(client);
    let patch = serde_json::json!({"metadata": {"annotations": annotations(&s)}});
    // The annotations tell the others how to reach this node; retry until they land.
    loop {
        match nodes_api
            .patch(&s.node_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "publishing the node's flannel annotations");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = skiff_informer::stopped(stop.clone()) => return Ok(()),
                }
            }
        }
    }
    let informer = skiff_informer::Informer::spawn(
        nodes_api,
        kube::runtime::watcher::Config::default(),
        stop.clone(),
    );
    let kick = std::sync::Arc::new(tokio::sync::Notify::new());
    {
        let k = kick.clone();
        informer.on_change(move |_| k.notify_one());
    }
    let h = handle()?;
    let stopped = skiff_informer::stopped(stop);
    tokio::pin!(stopped);
    tokio::select! {
        _ = informer.synced() => {}
        _ = &mut stopped => return Ok(()),
    }
    let mut last: Option<Vec<Peer>> = None;
    loop {
        let nodes: Vec<Node> = informer.state().iter().map(|n| (**n).clone()).collect();
        let want = peers(&nodes, &s);
        match reconcile(&h, &s, &want).await {
            Ok(()) => {
                if last.as_ref() != Some(&want) {
                    tracing::info!(
                        backend = s.backend.annotation(),
                        nodes = ?want.iter().map(|p| format!("{} {} via {}", p.name, p.pod_cidr, p.public_ip)).collect::<Vec<_>>(),
                        "pod routes to the other nodes"
                    );
                    last = Some(want);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reconciling pod routes"),
        }
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            _ = kick.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// Whether `key` is one of flannel's annotations.
pub fn is_flannel_annotation(key: &str) -> bool {
    key.starts_with(ANNOTATION_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, ann: &BTreeMap<String, String>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": ann},
            "spec": {"podCIDR": cidr}
        }))
        .unwrap()
    }

    fn settings(name: &str, ip: [u8; 4], cidr: &str, backend: Backend) -> RouteSettings {
        RouteSettings::new(backend, name, Ipv4Addr::from(ip), cidr.parse().unwrap())
    }

    #[test]
    fn annotations_are_flannels_and_peers_read_them_back() {
        let a = settings("a", [10, 0, 0, 1], "10.42.0.0/24", Backend::Vxlan);
        let b = settings("b", [10, 0, 0, 2], "10.42.1.0/24", Backend::Vxlan);
        let ann_b = annotations(&b);
        assert_eq!(ann_b[BACKEND_TYPE], "vxlan");
        assert_eq!(ann_b[PUBLIC_IP], "10.0.0.2");
        assert_eq!(ann_b[SUBNET_MANAGER], "true");
        let data: serde_json::Value = serde_json::from_str(&ann_b[BACKEND_DATA]).unwrap();
        assert_eq!(data["VNI"], 1);
        assert_eq!(data["VtepMAC"], mac_string(&vtep_mac("b")));
        let nodes = [
            node("a", "10.42.0.0/24", &annotations(&a)),
            node("b", "10.42.1.0/24", &ann_b),
            // Not yet published, or another backend: not a peer.
            node("c", "10.42.2.0/24", &BTreeMap::new()),
            node(
                "d",
                "10.42.3.0/24",
                &annotations(&settings(
                    "d",
                    [10, 0, 0, 4],
                    "10.42.3.0/24",
                    Backend::HostGw,
                )),
            ),
        ];
        let p = peers(&nodes, &a);
        assert_eq!(
            p,
            vec![Peer {
                name: "b".into(),
                pod_cidr: "10.42.1.0/24".parse().unwrap(),
                public_ip: Ipv4Addr::new(10, 0, 0, 2),
                vtep_mac: Some(vtep_mac("b")),
            }]
        );
        // host-gw peers carry no MAC and "null" data.
        let d = settings("x", [10, 0, 0, 9], "10.42.9.0/24", Backend::HostGw);
        assert_eq!(annotations(&d)[BACKEND_DATA], "null");
        let p = peers(&nodes, &d);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].name.as_str(), p[0].vtep_mac), ("d", None));
        // none publishes nothing.
        assert!(
            annotations(&settings("n", [1, 1, 1, 1], "10.42.0.0/24", Backend::None)).is_empty()
        );
    }

    #[test]
    fn vtep_macs_are_stable_local_unicast() {
        let m = vtep_mac("node-a");
        assert_eq!(m, vtep_mac("node-a"));
        assert_ne!(m, vtep_mac("node-b"));
        assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
        assert_eq!(parse_mac(&mac_string(&m)), Some(m));
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
    }

    #[test]
    fn backends_parse_by_k3s_name() {
        assert_eq!("vxlan".parse::<Backend>().unwrap(), Backend::Vxlan);
        assert_eq!("host-gw".parse::<Backend>().unwrap(), Backend::HostGw);
        assert_eq!("none".parse::<Backend>().unwrap(), Backend::None);
        let e = "wireguard-native"
            .parse::<Backend>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("vxlan, host-gw and none"), "{e}");
        assert_eq!(pod_mtu(Backend::Vxlan, 1500), 1450);
        assert_eq!(pod_mtu(Backend::HostGw, 1500), 1500);
    }
}
