//! The ruleset, in kube-proxy's nftables layout (docs/plans/network.md §4.4): the fixed
//! skeleton of one table, and the chains, affinity sets and map elements of each
//! Service. Pure functions of the model.

use super::categorize::categorize;
use super::model::{Endpoint, Protocol, ServicePort};
use crate::nft::{BaseChain, SetSpec};
use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const CLUSTER_IPS: &str = "cluster-ips";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Addresses and ports of Services without endpoints: kube-proxy's
/// `no-endpoint-services`/`-nodeports` verdict maps, as four sets with the verdict in
/// the rule. Adding a verdict-map element with a goto makes the kernel re-validate
/// the whole table (tens of milliseconds at 1,000 Services); a set element does not.
/// So a Service written before its endpoints costs one validation, not two.
pub const REJECT_SERVICES: &str = "reject-services";
pub const DROP_SERVICES: &str = "drop-services";
pub const REJECT_NODEPORTS: &str = "reject-nodeports";
pub const DROP_NODEPORTS: &str = "drop-nodeports";
/// kube-proxy's names, which earlier versions used; a full sync deletes them.
pub const OLD_NO_ENDPOINT_MAPS: [&str; 2] = ["no-endpoint-services", "no-endpoint-nodeports"];
pub const FIREWALL_IPS: &str = "firewall-ips";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const MARK_MASQ: &str = "mark-for-masquerade";
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";

/// The values every rule depends on besides the Services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSettings {
    /// The table, family ip.
    pub table: String,
    pub node_name: String,
    /// Pods' addresses: traffic from elsewhere to a ClusterIP is masqueraded.
    pub cluster_cidr: Option<Ipv4Net>,
    /// Rejected wherever no Service matches.
    pub service_cidr: Ipv4Net,
}

/// kube-proxy's `hashAndTruncate`: the first 8 characters of base32(sha256(name)),
/// a dash, the name (truncated past 240 characters).
pub fn hash_and_truncate(name: &str) -> String {
    let hash = Sha256::digest(name.as_bytes());
    let encoded = data_encoding::BASE32.encode(&hash);
    let mut out = format!("{}-{name}", &encoded[..8]);
    if out.len() > 240 {
        let mut cut = 237;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// `service-<H>-ns/svc/proto/port`: the Cluster-policy chain.
pub fn service_chain(sp: &ServicePort) -> String {
    format!("service-{}", hash_and_truncate(&sp.name_base()))
}

/// `local-<H>-ns/svc/proto/port`: the Local-policy chain.
pub fn local_chain(sp: &ServicePort) -> String {
    format!("local-{}", hash_and_truncate(&sp.name_base()))
}

fn endpoint_base(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("{}__{}/{}", sp.name_base(), ep.ip, ep.port)
}

/// `endpoint-<H>-ns/svc/proto/port__ip/port`.
pub fn endpoint_chain(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("endpoint-{}", hash_and_truncate(&endpoint_base(sp, ep)))
}

/// `affinity-<H>-ns/svc/proto/port__ip/port`: the ClientIP affinity set.
pub fn affinity_set(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("affinity-{}", hash_and_truncate(&endpoint_base(sp, ep)))
}

/// Whether a chain is a per-Service one (only they have a `/` in their names).
pub fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

/// Whether a set is a per-Service affinity set.
pub fn is_affinity_set(name: &str) -> bool {
    name.starts_with("affinity-")
}

/// Whether an element belongs to one Service only (map elements, and the addresses in
/// the no-endpoint sets): two Services claiming it conflict.
pub fn is_exclusive(set: &str, value: Option<&String>) -> bool {
    value.is_some()
        || [
            REJECT_SERVICES,
            DROP_SERVICES,
            REJECT_NODEPORTS,
            DROP_NODEPORTS,
        ]
        .contains(&set)
}

/// The maps and sets of the skeleton.
pub fn skeleton_sets() -> Vec<SetSpec> {
    let set = |name: &str, key: &str, value: Option<&str>, comment: Option<&str>| SetSpec {
        name: name.to_string(),
        key_type: key.to_string(),
        value_type: value.map(str::to_string),
        flags: None,
        timeout: None,
        comment: comment.map(str::to_string),
    };
    let vip = "ipv4_addr . inet_proto . inet_service";
    let port = "inet_proto . inet_service";
    vec![
        set(CLUSTER_IPS, "ipv4_addr", None, Some("Active ClusterIPs")),
        set(
            SERVICE_IPS,
            vip,
            Some("verdict"),
            Some("ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        ),
        set(
            SERVICE_NODEPORTS,
            port,
            Some("verdict"),
            Some("NodePort traffic"),
        ),
        set(
            REJECT_SERVICES,
            vip,
            None,
            Some("Services without endpoints"),
        ),
        set(
            DROP_SERVICES,
            vip,
            None,
            Some("Services without local endpoints"),
        ),
        set(
            REJECT_NODEPORTS,
            port,
            None,
            Some("NodePorts without endpoints"),
        ),
        set(
            DROP_NODEPORTS,
            port,
            None,
            Some("NodePorts without local endpoints"),
        ),
        set(FIREWALL_IPS, vip, Some("verdict"), None),
    ]
}

/// A chain with its rules; `base` for the hooked ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDef {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<String>,
}

/// The fixed chains of the table, base chains first.
pub fn skeleton_chains(s: &RuleSettings) -> Vec<ChainDef> {
    let base = |name: &str, kind, hook, priority, rules: &[&str]| ChainDef {
        name: name.to_string(),
        base: Some(BaseChain {
            kind,
            hook,
            priority,
        }),
        rules: rules.iter().map(|r| r.to_string()).collect(),
    };
    let plain = |name: &str, rules: Vec<String>| ChainDef {
        name: name.to_string(),
        base: None,
        rules,
    };
    let v = |rules: &[&str]| rules.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    vec![
        base("filter-prerouting", "filter", "prerouting", -110, &["ct state new jump firewall-check"]),
        base(
            "filter-input",
            "filter",
            "input",
            -110,
            &[
                "ct state new jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
                // NodePorts answer on 127.0.0.1 (route_localnet=1); kube-proxy's guard
                // against CVE-2020-8558: nothing else may reach 127/8 from outside.
                "iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat == 0 ct state != { established, related } drop",
            ],
        ),
        base(
            "filter-forward",
            "filter",
            "forward",
            -110,
            &["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"],
        ),
        base(
            "filter-output",
            "filter",
            "output",
            -110,
            &["ct state new jump service-endpoints-check", "ct state new jump firewall-check"],
        ),
        base("filter-output-post-dnat", "filter", "output", -90, &["ct state new jump cluster-ips-check"]),
        base("nat-prerouting", "nat", "prerouting", -100, &["jump services"]),
        base("nat-output", "nat", "output", -100, &["jump services"]),
        base("nat-postrouting", "nat", "postrouting", 100, &["jump masquerading"]),
        plain(MARK_MASQ, v(&["meta mark set meta mark or 0x4000"])),
        plain(
            "masquerading",
            v(&[
                "meta mark & 0x4000 == 0 return",
                "meta mark set meta mark xor 0x4000",
                "masquerade fully-random",
            ]),
        ),
        plain(REJECT_CHAIN, v(&["meta l4proto tcp reject with tcp reset", "reject"])),
        plain(
            "service-endpoints-check",
            v(&[
                "ip daddr . meta l4proto . th dport @reject-services goto reject-chain",
                "ip daddr . meta l4proto . th dport @drop-services drop",
            ]),
        ),
        plain(
            "nodeport-endpoints-check",
            v(&[
                "fib daddr type local meta l4proto . th dport @reject-nodeports goto reject-chain",
                "fib daddr type local meta l4proto . th dport @drop-nodeports drop",
            ]),
        ),
        plain("firewall-check", v(&["ip daddr . meta l4proto . th dport vmap @firewall-ips"])),
        plain(
            CLUSTER_IPS_CHECK,
            vec![
                "ip daddr @cluster-ips goto reject-chain comment \"Reject traffic to invalid ports of ClusterIPs\""
                    .to_string(),
                format!(
                    "ip daddr {} goto reject-chain comment \"Reject traffic to unallocated ClusterIPs\"",
                    s.service_cidr
                ),
            ],
        ),
        plain(
            "services",
            v(&[
                "ip daddr . meta l4proto . th dport vmap @service-ips",
                "fib daddr type local meta l4proto . th dport vmap @service-nodeports",
            ]),
        ),
    ]
}

/// A UDP service port and the endpoints it sends to, for conntrack cleanup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpTarget {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub endpoints: Vec<Ipv4Addr>,
}

/// Everything one Service puts in the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRules {
    /// Chain name → rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity set name → timeout (seconds).
    pub sets: BTreeMap<String, u32>,
    /// (set or map, key) → value (None for sets).
    pub elements: BTreeMap<(&'static str, String), Option<String>>,
    pub udp: Vec<UdpTarget>,
}

fn endpoint_rules(sp: &ServicePort, ep: &Endpoint) -> Vec<String> {
    let mut rules = vec![format!("ip saddr {} jump {MARK_MASQ}", ep.ip)];
    if sp.affinity.is_some() {
        rules.push(format!("update @{} {{ ip saddr }}", affinity_set(sp, ep)));
    }
    rules.push(format!(
        "meta l4proto {} dnat to {}:{}",
        sp.protocol.nft(),
        ep.ip,
        ep.port
    ));
    rules
}

/// The rules sending to `eps` at random (affinity first), as kube-proxy's
/// `writeServiceToEndpointRules`.
fn dispatch_rules(sp: &ServicePort, eps: &[&Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if sp.affinity.is_some() {
        for ep in eps {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(sp, ep),
                endpoint_chain(sp, ep)
            ));
        }
    }
    let vmap: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto {}", endpoint_chain(sp, ep)))
        .collect();
    rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        eps.len(),
        vmap.join(" , ")
    ));
    rules
}

/// `external-<H>-ns/svc/proto/port`: where NodePort traffic goes.
pub fn external_chain(sp: &ServicePort) -> String {
    format!("external-{}", hash_and_truncate(&sp.name_base()))
}

/// `firewall-<H>-ns/svc/proto/port`: a LoadBalancer's source ranges.
pub fn firewall_chain(sp: &ServicePort) -> String {
    format!("firewall-{}", hash_and_truncate(&sp.name_base()))
}

/// The chains, sets and elements of one Service's ports.
pub fn service_rules(ports: &[ServicePort], s: &RuleSettings) -> ServiceRules {
    let mut out = ServiceRules::default();
    for sp in ports {
        let cat = categorize(sp);
        let proto = sp.protocol.nft();
        let key = format!("{} . {proto} . {}", sp.cluster_ip, sp.port);
        out.elements
            .insert((CLUSTER_IPS, sp.cluster_ip.to_string()), None);
        let internal = cat.internal(sp);
        if sp.protocol == Protocol::Udp {
            out.udp.push(UdpTarget {
                vip: sp.cluster_ip,
                port: sp.port,
                endpoints: internal.iter().map(|e| e.ip).collect(),
            });
        }
        // The Cluster-policy chain serves ClusterIP traffic unless ITP is Local, and
        // NodePort traffic (ETP Local short-circuits pods and the node to it).
        let cluster_chain = service_chain(sp);
        let local_chain = local_chain(sp);
        let externally = sp.externally_accessible();
        let uses_cluster = cat.any && (!sp.internal_local || externally);
        let uses_local = !cat.local.is_empty() && (sp.internal_local || sp.external_local);
        let mut used: Vec<&Endpoint> = Vec::new();
        if uses_cluster {
            let mut rules = Vec::new();
            if let Some(cidr) = s.cluster_cidr {
                rules.push(format!(
                    "ip daddr {} {proto} dport {} ip saddr != {cidr} jump {MARK_MASQ}",
                    sp.cluster_ip, sp.port
                ));
            }
            rules.extend(dispatch_rules(sp, &cat.cluster));
            out.chains.insert(cluster_chain.clone(), rules);
            used.extend(cat.cluster.iter().copied());
        }
        if uses_local {
            out.chains
                .insert(local_chain.clone(), dispatch_rules(sp, &cat.local));
            used.extend(cat.local.iter().copied());
        }
        for ep in used {
            out.chains
                .insert(endpoint_chain(sp, ep), endpoint_rules(sp, ep));
            if let Some(timeout) = sp.affinity {
                out.sets.insert(affinity_set(sp, ep), timeout);
            }
        }
        if internal.is_empty() {
            // None anywhere: reject; none on this node under Local policy: drop.
            let set = if cat.any {
                DROP_SERVICES
            } else {
                REJECT_SERVICES
            };
            out.elements.insert((set, key), None);
        } else {
            let chain = if sp.internal_local {
                &local_chain
            } else {
                &cluster_chain
            };
            out.elements
                .insert((SERVICE_IPS, key), Some(format!("goto {chain}")));
        }
        if !externally {
            continue;
        }
        let external = external_chain(sp);
        // What external traffic meets before the DNAT: reject without endpoints, drop
        // under ETP Local without a local one (pods and the node still short-circuit).
        // (The sets of the services and of the node ports, by verdict.)
        let filter = if !cat.any {
            Some((REJECT_SERVICES, REJECT_NODEPORTS))
        } else if sp.external_local && !uses_local {
            Some((DROP_SERVICES, DROP_NODEPORTS))
        } else {
            None
        };
        if cat.any {
            let rules = if sp.external_local {
                let mut rules = Vec::new();
                // Pods and the node itself are not "external": they get every endpoint.
                if let Some(cidr) = s.cluster_cidr {
                    rules.push(format!("ip saddr {cidr} goto {cluster_chain}"));
                }
                rules.push(format!("fib saddr type local jump {MARK_MASQ}"));
                rules.push(format!("fib saddr type local goto {cluster_chain}"));
                if uses_local {
                    rules.push(format!("goto {local_chain}"));
                }
                rules
            } else {
                vec![format!("jump {MARK_MASQ}"), format!("goto {cluster_chain}")]
            };
            out.chains.insert(external.clone(), rules);
        }
        if let Some(node_port) = sp.node_port {
            let port_key = format!("{proto} . {node_port}");
            if cat.any {
                out.elements.insert(
                    (SERVICE_NODEPORTS, port_key.clone()),
                    Some(format!("goto {external}")),
                );
            }
            if let Some((_, nodeports)) = filter {
                out.elements.insert((nodeports, port_key), None);
            }
        }
        let firewall = firewall_chain(sp);
        if !sp.source_ranges.is_empty() && !sp.load_balancer_ips.is_empty() {
            let ranges: Vec<String> = sp.source_ranges.iter().map(|r| r.to_string()).collect();
            out.chains.insert(
                firewall.clone(),
                vec![format!("ip saddr != {{ {} }} drop", ranges.join(", "))],
            );
        }
        for ip in sp.external_ips.iter().chain(&sp.load_balancer_ips) {
            let key = format!("{ip} . {proto} . {}", sp.port);
            if cat.any {
                out.elements
                    .insert((SERVICE_IPS, key.clone()), Some(format!("goto {external}")));
            }
            if let Some((services, _)) = filter {
                out.elements.insert((services, key.clone()), None);
            }
            if sp.load_balancer_ips.contains(ip) && out.chains.contains_key(&firewall) {
                out.elements
                    .insert((FIREWALL_IPS, key), Some(format!("goto {firewall}")));
            }
        }
    }
    out
}

/// The spec of an affinity set.
pub fn affinity_spec(name: &str, timeout: u32) -> SetSpec {
    SetSpec {
        name: name.to_string(),
        key_type: "ipv4_addr".to_string(),
        value_type: None,
        flags: Some("dynamic,timeout".to_string()),
        timeout: Some(timeout),
        comment: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hash_as_kube_proxy_does() {
        // Names from kube-proxy's nftables proxier tests (pkg/proxy/nftables).
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80"),
            "ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let long = "n".repeat(300);
        let h = hash_and_truncate(&long);
        assert_eq!(h.len(), 240);
        assert!(h.ends_with("..."));
        assert!(is_service_chain("service-ULMVA6XW-ns1/svc1/tcp/p80"));
        assert!(!is_service_chain("services"));
    }
}
