//! Service cluster IPs and node ports, allocated as kube-apiserver 1.33 does it.
//!
//! - **Cluster IPs** come from `--service-cidr` (the `kubernetes` ServiceCIDR). Each
//!   allocated IP is an `IPAddress` object (networking.k8s.io/v1) named by the IP, whose
//!   `spec.parentRef` is the Service. Creating that object is the claim: the store's
//!   create fails when the key exists, so one IP is never handed out twice, whatever
//!   runs concurrently. Dynamic picks start at a random address of the upper part of
//!   the range; the lower part (1/16 of it, at least 16 and at most 256 addresses) is
//!   left to requested IPs first (KEP-3070), as kube-apiserver does.
//! - **Node ports** come from `--service-node-port-range`: one bitmap at
//!   [`NODE_PORTS_KEY`] (kube-apiserver's `RangeAllocation` at the same place; not an
//!   API resource), changed only by compare-and-swap on its revision. Dynamic picks
//!   prefer the upper part of the range too (KEP-3668).
//! - A write of a Service is a transaction: [`Allocator::allocate`] claims what the new
//!   object holds beyond the old one before it is stored; [`Allocator::finish`] then
//!   releases what the loser of the two holds beyond the winner (the old object's extras
//!   once the new one is stored, the new one's if the write failed).
//! - [`repair`] is kube-apiserver's repair controllers: IPAddresses for Services that
//!   lack one, orphaned IPAddresses deleted, the node-port bitmap rebuilt from the
//!   Services.

pub(crate) mod repair;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use skiff_meta::netconf::{ClusterNetwork, Ipv4Net, PortRange};
use skiff_meta::object::name_of;
use skiff_store::Store;

use crate::error::{ApiError, ApiResult, Cause};
use crate::kinds::service::{needs_health_check, needs_node_ports, svc_type};
use crate::resource::Resource;
use crate::validation::{go_list, invalid_raw};

/// Where the node-port bitmap is kept (kube-apiserver's key).
pub const NODE_PORTS_KEY: &str = "/registry/ranges/servicenodeports";
/// The `managed-by` label value of the IPAddresses the allocator makes.
pub const MANAGED_BY: &str = "ipallocator.k8s.io";
pub const LABEL_MANAGED_BY: &str = "ipaddress.kubernetes.io/managed-by";
pub const LABEL_FAMILY: &str = "ipaddress.kubernetes.io/ip-family";
/// How often a compare-and-swap of the bitmap is tried before giving up.
const CAS_ATTEMPTS: usize = 1000;

/// The IPAddress resource, as served (its row of `kinds::TABLE`).
fn ipaddresses() -> ApiResult<&'static Resource> {
    crate::resources::lookup("networking.k8s.io", "v1", "ipaddresses")
        .ok_or_else(|| ApiError::internal("ipaddresses are not served"))
}

fn store_err(e: skiff_store::Error) -> ApiError {
    ApiError::internal(format!("Internal error occurred: {e}"))
}

/// A uniformly random number below `n` (`n` > 0).
fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b) % n.max(1)
}

/// The part of a range kept for requested values first: `min(max(lo, size/step), hi)`,
/// none for a range of at most `lo` values.
fn range_offset(size: u64, lo: u64, step: u64, hi: u64) -> u64 {
    if size <= lo {
        return 0;
    }
    (size / step).clamp(lo, hi)
}

/// What a Service holds of the allocators: its cluster IPs and node ports (the
/// health-check node port included).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    pub ips: BTreeSet<Ipv4Addr>,
    pub ports: BTreeSet<u16>,
}

impl Held {
    fn minus(&self, other: &Held) -> Held {
        Held {
            ips: self.ips.difference(&other.ips).copied().collect(),
            ports: self.ports.difference(&other.ports).copied().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.ports.is_empty()
    }
}

/// Whether `svc` gets cluster IPs: not ExternalName, not headless.
fn gets_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
        && svc.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
}

/// The cluster IPs `svc` names (`clusterIPs`, else `clusterIP`), as written.
fn cluster_ips(svc: &Value) -> Vec<String> {
    let list: Vec<String> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if !list.is_empty() {
        return list;
    }
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| vec![s.to_string()])
        .unwrap_or_default()
}

fn node_port(p: &Value) -> Option<u16> {
    p.get("nodePort")
        .and_then(Value::as_u64)
        .filter(|&n| n > 0)
        .and_then(|n| u16::try_from(n).ok())
}

fn health_check_node_port(svc: &Value) -> Option<u16> {
    svc.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_u64)
        .filter(|&n| n > 0)
        .and_then(|n| u16::try_from(n).ok())
}

/// What `svc` holds by kube's rules for its type.
pub fn held(svc: &Value) -> Held {
    let mut h = Held::default();
    if svc_type(svc) != "ExternalName" {
        h.ips = cluster_ips(svc)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
    }
    if needs_node_ports(svc) {
        h.ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(node_port)
            .collect();
    }
    if needs_health_check(svc) {
        h.ports.extend(health_check_node_port(svc));
    }
    h
}

fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The `spec.parentRef` of the IPAddress of a Service's IP.
pub fn parent_ref(ns: &str, name: &str) -> Value {
    json!({"group": "", "resource": "services", "namespace": ns, "name": name})
}

/// The node-port bitmap as stored: `{"range": "30000-32767", "data": base64}` (bit `i` of
/// byte `i / 8`, least significant first, is port `first + i`).
fn decode_ports(value: &[u8]) -> BTreeSet<u16> {
    let Ok(v) = serde_json::from_slice::<Value>(value) else {
        return BTreeSet::new();
    };
    let range = v
        .get("range")
        .and_then(Value::as_str)
        .and_then(|r| PortRange::parse("range", r).ok());
    let data = v
        .get("data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
    let (Some(range), Some(data)) = (range, data) else {
        return BTreeSet::new();
    };
    let mut set = BTreeSet::new();
    for (i, byte) in data.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                let port = u32::from(range.first) + (i as u32) * 8 + bit;
                if let Ok(p) = u16::try_from(port) {
                    if range.contains(p) {
                        set.insert(p);
                    }
                }
            }
        }
    }
    set
}

fn encode_ports(range: PortRange, set: &BTreeSet<u16>) -> Vec<u8> {
    let mut data = vec![0u8; range.size().div_ceil(8)];
    for &p in set.iter().filter(|&&p| range.contains(p)) {
        let i = usize::from(p - range.first);
        data[i / 8] |= 1 << (i % 8);
    }
    json!({
        "range": range.to_string(),
        "data": base64::engine::general_purpose::STANDARD.encode(data),
    })
    .to_string()
    .into_bytes()
}

/// The first and last allocatable address of `net` (no network or broadcast address).
fn first_last(net: Ipv4Net) -> (u32, u32) {
    let (n, b) = (u32::from(net.network()), u32::from(net.broadcast()));
    (
        n.saturating_add(1),
        b.saturating_sub(1).max(n.saturating_add(1)),
    )
}

fn usable(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    let (first, last) = first_last(net);
    net.prefix_len() <= 30 && (first..=last).contains(&u32::from(ip))
}

/// Why one IP could not be claimed.
#[derive(Debug)]
enum IpError {
    /// In no ServiceCIDR.
    Mismatched,
    /// In a ServiceCIDR (this one), but its network or broadcast address.
    NotInRange(Ipv4Net),
    Allocated,
    Other(ApiError),
}

/// The allocator of one server: the store and the configured ranges.
pub struct Allocator {
    store: Arc<dyn Store>,
    network: ClusterNetwork,
}

impl Allocator {
    pub fn new(store: Arc<dyn Store>, network: ClusterNetwork) -> Allocator {
        Allocator { store, network }
    }

    fn cidr(&self) -> Ipv4Net {
        self.network.service_cidr
    }

    /// The ranges cluster IPs come from, as kube-apiserver 1.33's allocator takes them:
    /// `--service-cidr` (the ServiceCIDR `kubernetes`) first, then the IPv4 ranges of the
    /// other ServiceCIDRs that are not being deleted and not marked not Ready.
    pub(crate) async fn service_cidrs(&self) -> ApiResult<Vec<Ipv4Net>> {
        let mut out = vec![self.cidr()];
        let Some(res) = crate::resources::lookup("networking.k8s.io", "v1", "servicecidrs") else {
            return Ok(out);
        };
        let prefix = crate::storage::prefix(res, None);
        let page = self
            .store
            .range(prefix.as_bytes(), Default::default())
            .await
            .map_err(store_err)?;
        for kv in &page.kvs {
            let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
            let not_ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] != "True");
            if deleting || not_ready {
                continue;
            }
            for c in obj
                .pointer("/spec/cidrs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let Ok(net) = c.parse::<Ipv4Net>() {
                    let net = net.trunc();
                    if !out.contains(&net) {
                        out.push(net);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether `ip` may be claimed in one of `cidrs` (kube's MetaAllocator: an IP in no
    /// range is a mismatched network; the network and broadcast addresses of a range
    /// are not in its valid range).
    fn check_range(cidrs: &[Ipv4Net], ip: Ipv4Addr) -> Result<(), IpError> {
        let containing: Vec<&Ipv4Net> = cidrs.iter().filter(|c| c.contains(&ip)).collect();
        match containing.first() {
            None => Err(IpError::Mismatched),
            Some(_) if containing.iter().any(|c| usable(**c, ip)) => Ok(()),
            Some(c) => Err(IpError::NotInRange(**c)),
        }
    }

    fn ports(&self) -> PortRange {
        self.network.node_port_range
    }

    // ---- IP addresses -------------------------------------------------------------

    /// The IPs that have an IPAddress object (any owner).
    async fn taken_ips(&self) -> ApiResult<HashSet<u32>> {
        let prefix = crate::storage::prefix(ipaddresses()?, None);
        let mut taken = HashSet::new();
        let mut start_after = None;
        loop {
            let page = self
                .store
                .range(
                    prefix.as_bytes(),
                    skiff_store::RangeOptions {
                        limit: 10_000,
                        start_after: start_after.take(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(store_err)?;
            for kv in &page.kvs {
                let key = String::from_utf8_lossy(&kv.key);
                if let Some(ip) = key
                    .strip_prefix(&prefix)
                    .and_then(|n| n.parse::<Ipv4Addr>().ok())
                {
                    taken.insert(u32::from(ip));
                }
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => start_after = Some(last.key.clone()),
                _ => return Ok(taken),
            }
        }
    }

    /// The IPAddress object of `ip` for the Service `ns/name`.
    fn ipaddress_object(ip: Ipv4Addr, ns: &str, name: &str) -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IPAddress",
            "metadata": {
                "name": ip.to_string(),
                "labels": {LABEL_FAMILY: "IPv4", LABEL_MANAGED_BY: MANAGED_BY},
            },
            "spec": {"parentRef": parent_ref(ns, name)},
        })
    }

    /// Creates the IPAddress of `ip` for `ns/name` (the claim).
    pub(crate) async fn create_ipaddress(
        &self,
        ip: Ipv4Addr,
        ns: &str,
        name: &str,
    ) -> ApiResult<bool> {
        let res = ipaddresses()?;
        let mut obj = Self::ipaddress_object(ip, ns, name);
        crate::strategy::prepare_for_create(res, &mut obj);
        let key = crate::storage::key(res, None, &ip.to_string());
        let value = crate::storage::encode_as(res, &obj)?;
        match self.store.create(key.as_bytes(), value).await {
            Ok(_) => Ok(true),
            Err(skiff_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn claim_ip(
        &self,
        cidrs: &[Ipv4Net],
        ip: Ipv4Addr,
        ns: &str,
        name: &str,
    ) -> Result<(), IpError> {
        Self::check_range(cidrs, ip)?;
        match self.create_ipaddress(ip, ns, name).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(IpError::Allocated),
            Err(e) => Err(IpError::Other(e)),
        }
    }

    /// Whether `ip` has an IPAddress object.
    async fn ip_exists(&self, ip: Ipv4Addr) -> ApiResult<bool> {
        let key = crate::storage::key(ipaddresses()?, None, &ip.to_string());
        Ok(self
            .store
            .get(key.as_bytes())
            .await
            .map_err(store_err)?
            .is_some())
    }

    /// A free IP of the first range that has one. Claimed for `ns/name` unless
    /// `dry_run`.
    async fn next_ip(
        &self,
        cidrs: &[Ipv4Net],
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> ApiResult<Ipv4Addr> {
        for cidr in cidrs {
            if let Some(ip) = self.next_ip_in(*cidr, ns, name, dry_run).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::internal(
            "Internal error occurred: failed to allocate a serviceIP: range is full",
        ))
    }

    /// A free IP of `cidr` (None when it is full): a random start in the upper part of
    /// the range, then the lower part.
    async fn next_ip_in(
        &self,
        cidr: Ipv4Net,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> ApiResult<Option<Ipv4Addr>> {
        if cidr.prefix_len() > 30 {
            return Ok(None);
        }
        let (first, last) = first_last(cidr);
        let size = u64::from(last - first) + 1;
        let offset = range_offset(size, 16, 16, 256) as u32;
        // A few random tries first: in a range that is mostly free one of them is, and
        // the claim costs one write, whatever the number of Services.
        if !dry_run && last - (first + offset) >= 64 {
            let span = u64::from(last - (first + offset)) + 1;
            for _ in 0..4 {
                let ip = Ipv4Addr::from(first + offset + random_below(span) as u32);
                if self.create_ipaddress(ip, ns, name).await? {
                    return Ok(Some(ip));
                }
            }
        }
        // Then a scan from a random start, skipping what is taken.
        let taken = self.taken_ips().await?;
        for (lo, hi) in [(first + offset, last), (first, first + offset - 1)] {
            if hi < lo {
                continue;
            }
            let span = u64::from(hi - lo) + 1;
            let start = random_below(span);
            for i in 0..span {
                let cand = lo + ((start + i) % span) as u32;
                if taken.contains(&cand) {
                    continue;
                }
                let ip = Ipv4Addr::from(cand);
                if dry_run {
                    return Ok(Some(ip));
                }
                // Taken by a concurrent writer since the read: try the next one.
                if self.create_ipaddress(ip, ns, name).await? {
                    return Ok(Some(ip));
                }
            }
        }
        Ok(None)
    }

    /// Deletes the IPAddress of `ip` if it is `ns/name`'s.
    pub(crate) async fn release_ip(&self, ip: Ipv4Addr, ns: &str, name: &str) -> ApiResult<()> {
        let key = crate::storage::key(ipaddresses()?, None, &ip.to_string());
        for _ in 0..CAS_ATTEMPTS {
            let Some(kv) = self.store.get(key.as_bytes()).await.map_err(store_err)? else {
                return Ok(());
            };
            let obj: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            if obj.pointer("/spec/parentRef") != Some(&parent_ref(ns, name)) {
                return Ok(());
            }
            match self
                .store
                .delete(key.as_bytes(), Some(kv.mod_revision))
                .await
            {
                Ok(_) | Err(skiff_store::Error::NotFound { .. }) => return Ok(()),
                Err(skiff_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }

    /// Deletes the IPAddress of `ip`, whoever's it is.
    pub(crate) async fn delete_ipaddress(&self, ip: Ipv4Addr) -> ApiResult<()> {
        let key = crate::storage::key(ipaddresses()?, None, &ip.to_string());
        match self.store.delete(key.as_bytes(), None).await {
            Ok(_) | Err(skiff_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    // ---- node ports ---------------------------------------------------------------

    /// The allocated node ports and the bitmap's revision (None when never written).
    pub(crate) async fn port_snapshot(&self) -> ApiResult<(BTreeSet<u16>, Option<i64>)> {
        let kv = self
            .store
            .get(NODE_PORTS_KEY.as_bytes())
            .await
            .map_err(store_err)?;
        Ok(match kv {
            Some(kv) => (decode_ports(&kv.value), Some(kv.mod_revision)),
            None => (BTreeSet::new(), None),
        })
    }

    /// Writes `set` over the bitmap at `rev`; false on a conflict.
    pub(crate) async fn write_ports(
        &self,
        set: &BTreeSet<u16>,
        rev: Option<i64>,
    ) -> ApiResult<bool> {
        let value = encode_ports(self.ports(), set);
        let res = match rev {
            Some(rev) => self
                .store
                .update(NODE_PORTS_KEY.as_bytes(), value, Some(rev))
                .await
                .map(|_| ()),
            None => self
                .store
                .create(NODE_PORTS_KEY.as_bytes(), value)
                .await
                .map(|_| ()),
        };
        match res {
            Ok(()) => Ok(true),
            Err(
                skiff_store::Error::Conflict { .. }
                | skiff_store::Error::AlreadyExists { .. }
                | skiff_store::Error::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Changes the bitmap with `f` under compare-and-swap (`f` runs again on a
    /// conflict); with `dry_run`, `f` only looks.
    async fn with_ports<T>(
        &self,
        dry_run: bool,
        mut f: impl FnMut(&mut BTreeSet<u16>) -> ApiResult<T>,
    ) -> ApiResult<T> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut set, rev) = self.port_snapshot().await?;
            let before = set.clone();
            let out = f(&mut set)?;
            if dry_run || set == before {
                return Ok(out);
            }
            if self.write_ports(&set, rev).await? {
                return Ok(out);
            }
        }
        Err(ApiError::internal(
            "Internal error occurred: too many concurrent node port allocations; try again",
        ))
    }

    /// A free port of the range not in `set`: upper part first, from a random start.
    fn next_port(&self, set: &BTreeSet<u16>) -> Option<u16> {
        let r = self.ports();
        let (first, last) = (u64::from(r.first), u64::from(r.last));
        let offset = range_offset(r.size() as u64, 16, 32, 128);
        // [lo, end) for the upper part, then the lower one.
        for (lo, end) in [(first + offset, last + 1), (first, first + offset)] {
            if end <= lo {
                continue;
            }
            let span = end - lo;
            let start = random_below(span);
            for i in 0..span {
                let cand = u16::try_from(lo + (start + i) % span).ok()?;
                if !set.contains(&cand) {
                    return Some(cand);
                }
            }
        }
        None
    }

    fn port_cause(&self, field: &str, port: u16, taken: bool) -> Cause {
        let msg = if taken {
            "provided port is already allocated".to_string()
        } else {
            format!(
                "provided port is not in the valid range. The range of valid ports is {}",
                self.ports()
            )
        };
        invalid_raw(field, &port.to_string(), &msg)
    }

    pub(crate) async fn release_ports(&self, ports: &BTreeSet<u16>) -> ApiResult<()> {
        if ports.is_empty() {
            return Ok(());
        }
        self.with_ports(false, |set| {
            for p in ports {
                set.remove(p);
            }
            Ok(())
        })
        .await
    }

    // ---- Services -----------------------------------------------------------------

    /// Claims what `new` holds beyond `old` (None on create) and fills in what it
    /// needs: a cluster IP, node ports, a health-check node port. On an error nothing
    /// stays claimed. With `dry_run` nothing is claimed, only checked.
    pub async fn allocate_for(
        &self,
        old: Option<&Value>,
        new: &mut Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        let name = name_of(new).to_string();
        let ns = namespace_of(new).to_string();
        let before = old.map(held).unwrap_or_default();
        let mut claimed_ips = Vec::new();
        let result = self
            .allocate_ips(&ns, &name, &before, new, dry_run, &mut claimed_ips)
            .await;
        let result = match result {
            Ok(()) => {
                self.allocate_ports(old.is_none(), &before, new, dry_run)
                    .await
            }
            Err(e) => Err(e),
        };
        if result.is_err() && !dry_run {
            for ip in claimed_ips {
                if let Err(e) = self.release_ip(ip, &ns, &name).await {
                    tracing::warn!(%ip, error = %e, "releasing a cluster IP after a failed allocation");
                }
            }
        }
        result
    }

    async fn allocate_ips(
        &self,
        ns: &str,
        name: &str,
        before: &Held,
        new: &mut Value,
        dry_run: bool,
        claimed: &mut Vec<Ipv4Addr>,
    ) -> ApiResult<()> {
        if !gets_cluster_ip(new) {
            return Ok(());
        }
        let ips = cluster_ips(new);
        let invalid = |cause: Cause| ApiError::invalid("", "Service", name, vec![cause]);
        let cidrs = self.service_cidrs().await?;
        let ip = match ips.first() {
            None => self
                .next_ip(&cidrs, ns, name, dry_run)
                .await
                .inspect(|ip| {
                    if !dry_run {
                        claimed.push(*ip);
                    }
                })?,
            Some(requested) => {
                let Ok(ip) = requested.parse::<Ipv4Addr>() else {
                    return Err(invalid(Cause::invalid(
                        "spec.clusterIPs[0]",
                        requested,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )));
                };
                if !before.ips.contains(&ip) {
                    let failed = |why: &str| {
                        invalid(invalid_raw(
                            "spec.clusterIPs",
                            &go_list("string", &ips),
                            &format!("failed to allocate IP {requested}: {why}"),
                        ))
                    };
                    let outcome = if dry_run {
                        match Self::check_range(&cidrs, ip) {
                            Err(e) => Err(e),
                            Ok(()) if self.ip_exists(ip).await? => Err(IpError::Allocated),
                            Ok(()) => Ok(()),
                        }
                    } else {
                        self.claim_ip(&cidrs, ip, ns, name).await
                    };
                    match outcome {
                        Ok(()) => {
                            if !dry_run {
                                claimed.push(ip);
                            }
                        }
                        Err(IpError::Mismatched) => {
                            return Err(failed(
                                "the provided network does not match the current range",
                            ))
                        }
                        Err(IpError::NotInRange(cidr)) => {
                            return Err(failed(&format!(
                                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
                            )))
                        }
                        Err(IpError::Allocated) => {
                            return Err(failed("provided IP is already allocated"))
                        }
                        Err(IpError::Other(e)) => return Err(e),
                    }
                }
                ip
            }
        };
        let spec = &mut new["spec"];
        spec["clusterIP"] = json!(ip.to_string());
        spec["clusterIPs"] = json!([ip.to_string()]);
        Ok(())
    }

    /// Node ports and the health-check node port in one compare-and-swap.
    async fn allocate_ports(
        &self,
        create: bool,
        before: &Held,
        new: &mut Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        let wants_ports = needs_node_ports(new);
        let wants_hc = needs_health_check(new);
        if !wants_ports && !wants_hc {
            return Ok(());
        }
        let name = name_of(new).to_string();
        // LoadBalancers with allocateLoadBalancerNodePorts: false get only the ports
        // asked for.
        let dynamic = svc_type(new) != "LoadBalancer"
            || new
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false);
        let ports: Vec<(i64, Option<u16>)> = new
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p.get("port").and_then(Value::as_i64).unwrap_or(0),
                    node_port(p),
                )
            })
            .collect();
        let hc = health_check_node_port(new);
        let range = self.ports();
        // What each port gets, and the health-check port; computed afresh on every
        // compare-and-swap attempt.
        let plan = self
            .with_ports(dry_run, |set| {
                let mut mine: BTreeSet<u16> = BTreeSet::new();
                let mut assigned: Vec<Option<u16>> = Vec::with_capacity(ports.len());
                let mut by_service_port: BTreeMap<i64, u16> = BTreeMap::new();
                if wants_ports {
                    for (i, (port, requested)) in ports.iter().enumerate() {
                        let field = format!("spec.ports[{i}].nodePort");
                        match requested {
                            Some(np) => {
                                if !before.ports.contains(np) && !mine.contains(np) {
                                    if !range.contains(*np) {
                                        return Err(ApiError::invalid(
                                            "",
                                            "Service",
                                            &name,
                                            vec![self.port_cause(&field, *np, false)],
                                        ));
                                    }
                                    if set.contains(np) {
                                        return Err(ApiError::invalid(
                                            "",
                                            "Service",
                                            &name,
                                            vec![self.port_cause(&field, *np, true)],
                                        ));
                                    }
                                    set.insert(*np);
                                    mine.insert(*np);
                                }
                                by_service_port.entry(*port).or_insert(*np);
                                assigned.push(Some(*np));
                            }
                            None if !dynamic => assigned.push(None),
                            None => {
                                // On create, ports of one number share a node port (TCP
                                // and UDP 53), as kube-apiserver does.
                                let shared = by_service_port.get(port).copied().filter(|_| create);
                                let np = match shared {
                                    Some(np) => np,
                                    None => {
                                        let np = self.next_port(set).ok_or_else(|| {
                                            ApiError::internal("Internal error occurred: failed to allocate a nodePort: range is full")
                                        })?;
                                        set.insert(np);
                                        mine.insert(np);
                                        np
                                    }
                                };
                                by_service_port.entry(*port).or_insert(np);
                                assigned.push(Some(np));
                            }
                        }
                    }
                }
                let mut hc_port = None;
                if wants_hc {
                    hc_port = Some(match hc {
                        Some(p) if before.ports.contains(&p) => p,
                        Some(p) => {
                            if !range.contains(p) || set.contains(&p) {
                                let why = if range.contains(p) {
                                    "provided port is already allocated".to_string()
                                } else {
                                    format!("provided port is not in the valid range. The range of valid ports is {range}")
                                };
                                return Err(ApiError::internal(format!(
                                    "Internal error occurred: failed to allocate requested HealthCheck NodePort {p}: {why}"
                                )));
                            }
                            set.insert(p);
                            p
                        }
                        None => {
                            let p = self.next_port(set).ok_or_else(|| {
                                ApiError::internal("Internal error occurred: failed to allocate a HealthCheck NodePort 0: range is full")
                            })?;
                            set.insert(p);
                            p
                        }
                    });
                }
                Ok((assigned, hc_port))
            })
            .await?;
        let (assigned, hc_port) = plan;
        if let Some(Value::Array(ps)) = new.pointer_mut("/spec/ports") {
            for (p, np) in ps.iter_mut().zip(assigned) {
                if let Some(np) = np {
                    p["nodePort"] = json!(np);
                }
            }
        }
        if let Some(p) = hc_port {
            new["spec"]["healthCheckNodePort"] = json!(p);
        }
        Ok(())
    }

    /// Ends the write [`Allocator::allocate`] began: releases what the loser of `old`
    /// and `new` holds beyond the winner (`new` won if it was `stored`).
    pub async fn finish_for(&self, old: Option<&Value>, new: &Value, stored: bool) {
        let (winner, loser) = match (stored, old) {
            (true, None) => return,
            (true, Some(old)) => (held(new), held(old)),
            (false, Some(old)) => (held(old), held(new)),
            (false, None) => (Held::default(), held(new)),
        };
        let release = loser.minus(&winner);
        // The released IPs are the loser's: the new object's name is the old one's.
        self.release(namespace_of(new), name_of(new), &release)
            .await;
    }

    /// Releases what a deleted Service held.
    pub async fn release_all(&self, svc: &Value) {
        self.release(namespace_of(svc), name_of(svc), &held(svc))
            .await;
    }

    async fn release(&self, ns: &str, name: &str, what: &Held) {
        if what.is_empty() {
            return;
        }
        for ip in &what.ips {
            if let Err(e) = self.release_ip(*ip, ns, name).await {
                tracing::warn!(%ip, service = %format!("{ns}/{name}"), error = %e, "releasing a cluster IP (the repair loop will)");
            }
        }
        if let Err(e) = self.release_ports(&what.ports).await {
            tracing::warn!(ports = ?what.ports, service = %format!("{ns}/{name}"), error = %e, "releasing node ports (the repair loop will)");
        }
    }
}

#[async_trait::async_trait]
impl crate::admit::Allocations for Allocator {
    async fn allocate(&self, old: Option<&Value>, new: &mut Value, dry_run: bool) -> ApiResult<()> {
        self.allocate_for(old, new, dry_run).await
    }

    async fn finish(&self, old: Option<&Value>, new: &Value, stored: bool) {
        self.finish_for(old, new, stored).await
    }

    async fn release_service(&self, svc: &Value) {
        self.release_all(svc).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_kube() {
        // /16: 65534 usable, 256 kept for requested IPs; /28: 14 usable, none.
        assert_eq!(range_offset(65534, 16, 16, 256), 256);
        assert_eq!(range_offset(14, 16, 16, 256), 0);
        assert_eq!(range_offset(254, 16, 16, 256), 16);
        // 30000-32767: 2768 ports, 86 kept.
        assert_eq!(range_offset(2768, 16, 32, 128), 86);
    }

    #[test]
    fn the_bitmap_round_trips() {
        let range = PortRange {
            first: 30000,
            last: 30009,
        };
        let set: BTreeSet<u16> = [30000, 30003, 30009].into();
        assert_eq!(decode_ports(&encode_ports(range, &set)), set);
        // Ports outside the range are not kept.
        let wide: BTreeSet<u16> = [29999, 30001, 30010].into();
        assert_eq!(decode_ports(&encode_ports(range, &wide)), [30001].into());
    }

    #[test]
    fn held_follows_the_type() {
        let svc = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "clusterIP": "10.43.1.2", "clusterIPs": ["10.43.1.2"], "healthCheckNodePort": 31000,
            "ports": [{"port": 80, "nodePort": 30080}]}});
        let h = held(&svc);
        assert_eq!(h.ips, [Ipv4Addr::new(10, 43, 1, 2)].into());
        assert_eq!(h.ports, [30080, 31000].into());
        let cluster = json!({"spec": {"type": "ClusterIP", "clusterIP": "None",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        assert_eq!(held(&cluster), Held::default());
        let external = json!({"spec": {"type": "ExternalName", "clusterIP": "10.43.1.2"}});
        assert!(held(&external).ips.is_empty());
    }
}
