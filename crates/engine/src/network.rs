//! The default bridge network: a Linux bridge with a private subnet, persistent IP
//! allocation, a veth per container, a default route, masquerade to the outside,
//! and published ports through a small userland proxy (`skiff __proxy`), which also
//! makes `localhost:PORT` work and detects ports already in use.
//!
//! Links, addresses and routes are made over netlink (rtnetlink); the masquerade
//! rule is one nftables table, named per engine root, applied with `nft`.

use crate::persist::{self, read_json, write_json, Lock};
use crate::{EngineError, Result};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where the bridge network's parameters come from on first use; persisted after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BridgeConfig {
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The nftables table (family ip) holding this engine's rules.
    pub table: String,
    /// Traffic from the subnet to this range is not masqueraded (a cluster's pod
    /// range: pods reach pods on other nodes by their own address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_masquerade_to: Option<String>,
    /// The MTU of the bridge and of both ends of every veth (below the uplink's when
    /// pod traffic is encapsulated, as over VXLAN); None: the kernel's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            bridge: "skiff0".into(),
            subnet: Ipv4Addr::new(172, 18, 0, 0),
            prefix: 16,
            gateway: Ipv4Addr::new(172, 18, 0, 1),
            table: "skiff".into(),
            no_masquerade_to: None,
            mtu: None,
        }
    }
}

/// Parse `a.b.c.d/n` into (network address, prefix).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || EngineError::Invalid(format!("invalid subnet: {s}"));
    let (ip, p) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&p) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - p);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), p))
}

impl BridgeConfig {
    /// A config from optional overrides (flags or environment).
    pub fn with(bridge: Option<&str>, cidr: Option<&str>, table: Option<&str>) -> Result<Self> {
        let mut c = BridgeConfig::default();
        if let Some(b) = bridge {
            if b.is_empty()
                || b.len() > 15
                || !b
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(EngineError::Invalid(format!("invalid bridge name: {b}")));
            }
            c.bridge = b.to_string();
        }
        if let Some(s) = cidr {
            let (net, p) = parse_cidr(s)?;
            c.subnet = net;
            c.prefix = p;
            c.gateway = Ipv4Addr::from(u32::from(net) + 1);
        }
        if let Some(t) = table {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            {
                return Err(EngineError::Invalid(format!(
                    "invalid filter table name: {t}"
                )));
            }
            c.table = t.to_string();
        }
        Ok(c)
    }

    fn dir(root: &Path) -> PathBuf {
        root.join("networks")
    }

    /// The root's bridge config: the persisted one, or `wanted` persisted now.
    pub fn load_or_init(root: &Path, wanted: &BridgeConfig) -> Result<BridgeConfig> {
        let dir = Self::dir(root);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("creating networks dir", e))?;
        let p = dir.join("bridge.json");
        if let Ok(c) = read_json::<BridgeConfig>(&p) {
            return Ok(c);
        }
        let _l = Lock::exclusive(&dir.join("lock"))?;
        if let Ok(c) = read_json::<BridgeConfig>(&p) {
            return Ok(c);
        }
        write_json(&p, wanted)?;
        Ok(wanted.clone())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ipam {
    /// ip → container id
    leases: BTreeMap<String, String>,
}

/// Allocate an address for container `id` (the same one it already holds, if any).
pub fn allocate_ip(root: &Path, cfg: &BridgeConfig, id: &str) -> Result<Ipv4Addr> {
    let dir = BridgeConfig::dir(root);
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("creating networks dir", e))?;
    let _l = Lock::exclusive(&dir.join("lock"))?;
    let p = dir.join(format!("ipam-{}.json", cfg.bridge));
    let mut ipam: Ipam = read_json(&p).unwrap_or_default();
    if let Some((ip, _)) = ipam.leases.iter().find(|(_, v)| v.as_str() == id) {
        return ip
            .parse()
            .map_err(|_| EngineError::Corrupt(format!("bad lease {ip}")));
    }
    let base = u32::from(cfg.subnet);
    let size = 1u32 << (32 - cfg.prefix);
    for off in 2..size - 1 {
        let ip = Ipv4Addr::from(base + off);
        if ip == cfg.gateway {
            continue;
        }
        if let std::collections::btree_map::Entry::Vacant(v) = ipam.leases.entry(ip.to_string()) {
            v.insert(id.to_string());
            write_json(&p, &ipam)?;
            return Ok(ip);
        }
    }
    Err(EngineError::Conflict(format!(
        "no free address left in {}/{}",
        cfg.subnet, cfg.prefix
    )))
}

/// Release the address container `id` holds on the network of `cfg`.
pub fn release_ip_on(root: &Path, cfg: &BridgeConfig, id: &str) {
    let dir = BridgeConfig::dir(root);
    let Ok(_l) = Lock::exclusive(&dir.join("lock")) else {
        return;
    };
    let p = dir.join(format!("ipam-{}.json", cfg.bridge));
    let mut ipam: Ipam = read_json(&p).unwrap_or_default();
    ipam.leases.retain(|_, v| v != id);
    if let Err(e) = write_json(&p, &ipam) {
        tracing::warn!(container = %id, error = %e, "releasing an address");
    }
}

/// Delete a host-side veth (its peer in the container goes with it).
pub fn delete_link(name: &str) -> Result<()> {
    let rt = rt()?;
    rt.block_on(async {
        let (conn, h, _) =
            rtnetlink::new_connection().map_err(|e| EngineError::io("netlink socket", e))?;
        tokio::spawn(conn);
        if let Some(idx) = link_index(&h, name).await? {
            h.link()
                .del(idx)
                .execute()
                .await
                .map_err(|e| nl_err(&format!("deleting {name}"), e))?;
        }
        Ok(())
    })
}

/// The host-side veth name of a container's interface.
pub fn host_veth(id: &str, ifname: &str) -> String {
    format!("veth{}{}", &id[..8], ifname.trim_start_matches("eth"))
}

/// Release every address held by container `id`, on every network.
pub fn release_ip(root: &Path, id: &str) {
    let dir = BridgeConfig::dir(root);
    if !dir.exists() {
        return;
    }
    let Ok(_l) = Lock::exclusive(&dir.join("lock")) else {
        return;
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("ipam-") {
            continue;
        }
        let p = e.path();
        let mut ipam: Ipam = read_json(&p).unwrap_or_default();
        let before = ipam.leases.len();
        ipam.leases.retain(|_, v| v != id);
        if ipam.leases.len() != before {
            if let Err(e) = write_json(&p, &ipam) {
                tracing::warn!(container = %id, error = %e, "releasing an address");
            }
        }
    }
}

fn rt() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| EngineError::io("starting netlink runtime", e))
}

fn nl_err(what: &str, e: rtnetlink::Error) -> EngineError {
    EngineError::io(what, std::io::Error::other(e.to_string()))
}

async fn link_index(h: &rtnetlink::Handle, name: &str) -> Result<Option<u32>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl_err(&format!("looking up link {name}"), e)),
    }
}

/// Create the bridge, its address, forwarding and the masquerade rule, if missing.
pub fn ensure_bridge(cfg: &BridgeConfig) -> Result<()> {
    let rt = rt()?;
    let created = rt.block_on(async {
        let (conn, h, _) =
            rtnetlink::new_connection().map_err(|e| EngineError::io("netlink socket", e))?;
        tokio::spawn(conn);
        if link_index(&h, &cfg.bridge).await?.is_some() {
            return Ok::<bool, EngineError>(false);
        }
        let mut bridge = rtnetlink::LinkBridge::new(&cfg.bridge).up();
        if let Some(mtu) = cfg.mtu {
            bridge = bridge.mtu(mtu);
        }
        let r = h.link().add(bridge.build()).execute().await;
        if let Err(e) = r {
            // Lost a race with another skiff creating it: fine.
            if link_index(&h, &cfg.bridge).await?.is_none() {
                return Err(nl_err(&format!("creating bridge {}", cfg.bridge), e));
            }
            return Ok(false);
        }
        let idx = link_index(&h, &cfg.bridge)
            .await?
            .ok_or_else(|| EngineError::Invalid(format!("bridge {} vanished", cfg.bridge)))?;
        h.address()
            .add(idx, std::net::IpAddr::V4(cfg.gateway), cfg.prefix)
            .execute()
            .await
            .map_err(|e| nl_err("adding bridge address", e))?;
        Ok(true)
    })?;
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    if created || !nft_table_exists(&cfg.table) {
        install_rules(cfg)?;
    }
    Ok(())
}

fn nft_table_exists(table: &str) -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Replaces the bridge's rules with what `cfg` says now (one atomic nft
/// transaction), for a bridge whose settings may have changed since its table was
/// made (the node agent's pod bridge at start).
pub fn refresh_rules(cfg: &BridgeConfig) -> Result<()> {
    install_rules_with(cfg, true)
}

fn install_rules(cfg: &BridgeConfig) -> Result<()> {
    install_rules_with(cfg, false)
}

fn install_rules_with(cfg: &BridgeConfig, replace: bool) -> Result<()> {
    // `add` then `delete` makes the replacement work whether or not the table exists.
    let reset = if replace {
        format!("add table ip {t}\ndelete table ip {t}\n", t = cfg.table)
    } else {
        String::new()
    };
    let keep = cfg
        .no_masquerade_to
        .as_deref()
        .map(|r| format!("ip daddr != {r} "))
        .unwrap_or_default();
    let rules = format!(
        "{reset}table ip {t} {{\n\
           chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
             ip saddr {net}/{p} {keep}oifname != \"{br}\" masquerade\n\
           }}\n\
           chain forward {{ type filter hook forward priority filter; policy accept;\n\
             iifname \"{br}\" accept\n\
             oifname \"{br}\" ct state established,related accept\n\
           }}\n\
         }}\n",
        t = cfg.table,
        net = cfg.subnet,
        p = cfg.prefix,
        br = cfg.bridge
    );
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            EngineError::io(
                "running nft (install the nftables package: the README's run command does)",
                e,
            )
        })?;
    if let Some(mut i) = child.stdin.take() {
        use std::io::Write;
        let _ = i.write_all(rules.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| EngineError::io("running nft", e))?;
    if !out.status.success() {
        return Err(EngineError::Invalid(format!(
            "installing nftables rules in table {}: {}",
            cfg.table,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Remove the bridge and the filter table (engine teardown, tests).
pub fn teardown(cfg: &BridgeConfig) -> Result<()> {
    let rt = rt()?;
    rt.block_on(async {
        let (conn, h, _) =
            rtnetlink::new_connection().map_err(|e| EngineError::io("netlink socket", e))?;
        tokio::spawn(conn);
        if let Some(idx) = link_index(&h, &cfg.bridge).await? {
            h.link()
                .del(idx)
                .execute()
                .await
                .map_err(|e| nl_err("deleting bridge", e))?;
        }
        Ok::<(), EngineError>(())
    })?;
    if nft_table_exists(&cfg.table) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &cfg.table])
            .status();
    }
    Ok(())
}

/// Wire container process `pid` (already in its own network namespace) to the
/// bridge with address `ip`: a veth pair, the peer renamed `eth0` inside, address,
/// up, default route via the gateway. Must be called from a single-threaded process.
pub fn attach(
    cfg: &BridgeConfig,
    id: &str,
    pid: i32,
    ip: Ipv4Addr,
    ifname: &str,
    default_route: bool,
) -> Result<()> {
    tracing::debug!(container = %id, bridge = %cfg.bridge, %ip, ifname, "attaching to the network");
    let suffix = ifname.trim_start_matches("eth");
    let host_name = host_veth(id, ifname);
    let peer_tmp = format!("vp{}{}", &id[..8], suffix);
    let rt = rt()?;
    // A netlink socket inside the container's namespace: open it there, come back.
    let inner_sock = {
        let own = skiff_runtime::sys::open_path(Path::new("/proc/self/ns/net"), libc::O_RDONLY)
            .map_err(|e| EngineError::io("opening own netns", e))?;
        let theirs = skiff_runtime::sys::open_path(
            Path::new(&format!("/proc/{pid}/ns/net")),
            libc::O_RDONLY,
        )
        .map_err(|e| EngineError::io("opening container netns", e))?;
        skiff_runtime::sys::setns(theirs, libc::CLONE_NEWNET)
            .map_err(|e| EngineError::io("entering container netns", e))?;
        let r = rt.block_on(async { rtnetlink::new_connection() });
        let _ = skiff_runtime::sys::setns(own, libc::CLONE_NEWNET);
        skiff_runtime::sys::close(own);
        skiff_runtime::sys::close(theirs);
        r.map_err(|e| EngineError::io("netlink socket in container", e))?
    };
    rt.block_on(async {
        let (conn, h, _) =
            rtnetlink::new_connection().map_err(|e| EngineError::io("netlink socket", e))?;
        tokio::spawn(conn);
        let (iconn, ih, _) = inner_sock;
        tokio::spawn(iconn);
        let br = link_index(&h, &cfg.bridge)
            .await?
            .ok_or_else(|| EngineError::Invalid(format!("bridge {} is missing", cfg.bridge)))?;
        // A stale pair from a crashed run would make the add fail.
        if let Some(old) = link_index(&h, &host_name).await? {
            let _ = h.link().del(old).execute().await;
        }
        h.link()
            .add(rtnetlink::LinkVeth::new(&host_name, &peer_tmp).build())
            .execute()
            .await
            .map_err(|e| nl_err("creating veth pair", e))?;
        if let Some(mtu) = cfg.mtu {
            for end in [&host_name, &peer_tmp] {
                let i = link_index(&h, end)
                    .await?
                    .ok_or_else(|| EngineError::Invalid("veth vanished".into()))?;
                h.link()
                    .set(rtnetlink::LinkUnspec::new_with_index(i).mtu(mtu).build())
                    .execute()
                    .await
                    .map_err(|e| nl_err("setting the veth MTU", e))?;
            }
        }
        let peer = link_index(&h, &peer_tmp)
            .await?
            .ok_or_else(|| EngineError::Invalid("veth peer vanished".into()))?;
        h.link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(peer)
                    .setns_by_pid(pid as u32)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| nl_err("moving veth into the container", e))?;
        let host = link_index(&h, &host_name)
            .await?
            .ok_or_else(|| EngineError::Invalid("veth vanished".into()))?;
        h.link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(host)
                    .controller(br)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| nl_err("attaching veth to the bridge", e))?;
        // Hairpin: a frame may leave by the port it came in on, so a container (a pod)
        // reaching its own published address or Service, DNATed back to itself on the
        // bridge, gets its answer (CNI's bridge plugin's hairpinMode).
        h.link()
            .change(rtnetlink::LinkBridgePort::new(host).hairpin(true).build())
            .execute()
            .await
            .map_err(|e| nl_err("turning hairpin on for the veth", e))?;
        let inner = link_index(&ih, &peer_tmp)
            .await?
            .ok_or_else(|| EngineError::Invalid("veth peer missing in container".into()))?;
        ih.link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(inner)
                    .name(ifname.to_string())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| nl_err(&format!("renaming {ifname}"), e))?;
        ih.address()
            .add(inner, std::net::IpAddr::V4(ip), cfg.prefix)
            .execute()
            .await
            .map_err(|e| nl_err("adding container address", e))?;
        ih.link()
            .set(rtnetlink::LinkUnspec::new_with_index(inner).up().build())
            .execute()
            .await
            .map_err(|e| nl_err(&format!("bringing {ifname} up"), e))?;
        if default_route {
            let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(cfg.gateway)
                .build();
            ih.route()
                .add(route)
                .execute()
                .await
                .map_err(|e| nl_err("adding default route", e))?;
        }
        Ok::<(), EngineError>(())
    })
}

/// A published port: `-p [ip:]host:container[/proto]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: String,
}

/// One published port as the proxy is told it: `proto:hostip:hostport:ctrip:ctrport`.
pub fn proxy_arg(p: &PortBinding, ip: Ipv4Addr) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        p.proto,
        if p.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &p.host_ip
        },
        p.host_port,
        ip,
        p.container_port
    )
}

/// A network containers join: the default `bridge` or a user-defined one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub created: String,
    pub bridge: BridgeConfig,
    pub labels: BTreeMap<String, String>,
    pub internal: bool,
    /// User-defined networks resolve container names through the embedded DNS.
    pub user_defined: bool,
}

fn network_id(name: &str, cfg: &BridgeConfig) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        format!("{name}/{}/{}/{}", cfg.bridge, cfg.subnet, cfg.prefix).as_bytes(),
    ))
}

/// The default `bridge` network of a root.
pub fn default_network(root: &Path, wanted: &BridgeConfig) -> Result<Network> {
    let cfg = BridgeConfig::load_or_init(root, wanted)?;
    Ok(Network {
        name: "bridge".into(),
        id: network_id("bridge", &cfg),
        created: String::new(),
        bridge: cfg,
        labels: BTreeMap::new(),
        internal: false,
        user_defined: false,
    })
}

fn user_networks(root: &Path) -> Vec<Network> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(BridgeConfig::dir(root).join("user")) {
        for e in rd.flatten() {
            if let Ok(n) = read_json::<Network>(&e.path()) {
                out.push(n);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every bridge network of the root: `bridge` first, then user-defined ones.
pub fn list_networks(root: &Path, wanted: &BridgeConfig) -> Result<Vec<Network>> {
    let mut v = vec![default_network(root, wanted)?];
    v.extend(user_networks(root));
    Ok(v)
}

/// A network by name, full id or unique id prefix.
pub fn get_network(root: &Path, wanted: &BridgeConfig, reference: &str) -> Result<Network> {
    let all = list_networks(root, wanted)?;
    if let Some(n) = all.iter().find(|n| n.name == reference) {
        return Ok(n.clone());
    }
    let m: Vec<&Network> = all
        .iter()
        .filter(|n| reference.len() >= 3 && n.id.starts_with(reference))
        .collect();
    match m.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(EngineError::Invalid(format!(
            "network {reference} not found"
        ))),
    }
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let p = a.1.min(b.1);
    let mask = u32::MAX << (32 - p);
    (u32::from(a.0) & mask) == (u32::from(b.0) & mask)
}

/// `skiff network create`.
pub fn create_network(
    root: &Path,
    wanted: &BridgeConfig,
    name: &str,
    subnet: Option<&str>,
    gateway: Option<&str>,
    labels: BTreeMap<String, String>,
    internal: bool,
) -> Result<Network> {
    if ["bridge", "host", "none", "default"].contains(&name) {
        return Err(EngineError::Conflict(format!(
            "network name {name} is reserved for a predefined network"
        )));
    }
    if !crate::names::valid_name(name) {
        return Err(EngineError::Invalid(format!(
            "invalid network name: {name}"
        )));
    }
    let dir = BridgeConfig::dir(root).join("user");
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("creating networks dir", e))?;
    // Settle the default network first: it takes the same lock.
    default_network(root, wanted)?;
    let _l = Lock::exclusive(&BridgeConfig::dir(root).join("lock"))?;
    let all = list_networks(root, wanted)?;
    if all.iter().any(|n| n.name == name) {
        return Err(EngineError::Conflict(format!(
            "network with name {name} already exists"
        )));
    }
    let used: Vec<(Ipv4Addr, u8)> = all
        .iter()
        .map(|n| (n.bridge.subnet, n.bridge.prefix))
        .collect();
    let (net, prefix) = match subnet {
        Some(s) => {
            let c = parse_cidr(s)?;
            if let Some(o) = all
                .iter()
                .find(|n| overlaps(c, (n.bridge.subnet, n.bridge.prefix)))
            {
                return Err(EngineError::Invalid(format!(
                    "invalid pool request: Pool overlaps with other one on this address space (network {})",
                    o.name
                )));
            }
            c
        }
        None => (19..=31u8)
            .map(|b| (Ipv4Addr::new(172, b, 0, 0), 16u8))
            .find(|c| !used.iter().any(|u| overlaps(*c, *u)))
            .ok_or_else(|| {
                EngineError::Conflict("no free address pool left for a new network".into())
            })?,
    };
    let gw = match gateway {
        Some(g) => {
            let g: Ipv4Addr = g
                .parse()
                .map_err(|_| EngineError::Invalid(format!("invalid gateway: {g}")))?;
            if !overlaps((g, prefix), (net, prefix)) {
                return Err(EngineError::Invalid(format!(
                    "gateway {g} is not in subnet {net}/{prefix}"
                )));
            }
            g
        }
        None => Ipv4Addr::from(u32::from(net) + 1),
    };
    let mut cfg = BridgeConfig {
        bridge: String::new(),
        subnet: net,
        prefix,
        gateway: gw,
        table: String::new(),
        no_masquerade_to: None,
        mtu: None,
    };
    let id = network_id(name, &cfg);
    cfg.bridge = format!("br-{}", &id[..12]);
    cfg.table = format!("{}_{}", wanted.table, &id[..8]);
    let n = Network {
        name: name.into(),
        // One id for the network and its bridge's name (br-<first 12>), as docker's.
        id,
        created: persist::now(),
        bridge: cfg,
        labels,
        internal,
        user_defined: true,
    };
    write_json(&dir.join(format!("{name}.json")), &n)?;
    network_event(root, &n, "create");
    Ok(n)
}

fn network_event(root: &Path, n: &Network, action: &str) {
    crate::events::record(
        root,
        "network",
        action,
        &n.id,
        [
            ("name".to_string(), n.name.clone()),
            ("type".to_string(), "bridge".to_string()),
        ]
        .into(),
    );
}

impl crate::Engine {
    /// `network rm`: refused while a running container is on it.
    pub fn remove_network(&self, reference: &str) -> Result<Network> {
        let n = get_network(&self.root, &self.bridge, reference)?;
        if let Some(c) = self.list()?.iter().find(|c| {
            c.state.status.is_active()
                && (c.record.host.network_mode == n.name
                    || c.record.host.extra_networks.contains(&n.name))
        }) {
            return Err(EngineError::InUse(format!(
                "error while removing network: network {} id {} has active endpoints (container {})",
                n.name, n.id, c.record.name
            )));
        }
        remove_network(&self.root, &n)?;
        Ok(n)
    }
}

/// `skiff network rm`: the bridge, its rules and its record (callers check use).
pub fn remove_network(root: &Path, n: &Network) -> Result<()> {
    if !n.user_defined {
        return Err(EngineError::Conflict(format!(
            "{} is a pre-defined network and cannot be removed",
            n.name
        )));
    }
    teardown(&n.bridge)?;
    let _ = std::fs::remove_file(
        BridgeConfig::dir(root).join(format!("ipam-{}.json", n.bridge.bridge)),
    );
    std::fs::remove_file(
        BridgeConfig::dir(root)
            .join("user")
            .join(format!("{}.json", n.name)),
    )
    .map_err(|e| EngineError::io(format!("removing network {}", n.name), e))?;
    network_event(root, n, "destroy");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.88.3.7/24").unwrap(),
            (Ipv4Addr::new(10, 88, 3, 0), 24)
        );
        assert!(parse_cidr("10.0.0.0").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(overlaps(
            (Ipv4Addr::new(10, 1, 0, 0), 16),
            (Ipv4Addr::new(10, 1, 2, 0), 24)
        ));
        assert!(!overlaps(
            (Ipv4Addr::new(10, 1, 0, 0), 16),
            (Ipv4Addr::new(10, 2, 0, 0), 16)
        ));
        let c = BridgeConfig::with(Some("br-x"), Some("10.9.0.0/16"), Some("t1")).unwrap();
        assert_eq!(c.gateway, Ipv4Addr::new(10, 9, 0, 1));
        assert!(BridgeConfig::with(Some("way-too-long-bridge-name"), None, None).is_err());
    }

    #[test]
    fn ipam_is_persistent_and_unique() {
        let t = tempfile::tempdir().unwrap();
        let cfg = BridgeConfig::with(None, Some("10.77.0.0/29"), None).unwrap();
        let a = allocate_ip(t.path(), &cfg, "a").unwrap();
        let b = allocate_ip(t.path(), &cfg, "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(allocate_ip(t.path(), &cfg, "a").unwrap(), a);
        release_ip(t.path(), "a");
        assert_eq!(allocate_ip(t.path(), &cfg, "c").unwrap(), a);
        // 10.77.0.0/29: .2 .. .6 usable (gateway .1) = 5 addresses.
        for n in ["d", "e", "f"] {
            allocate_ip(t.path(), &cfg, n).unwrap();
        }
        assert!(allocate_ip(t.path(), &cfg, "g").is_err());
    }
}
