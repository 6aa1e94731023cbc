//! The cluster-wide network settings every part of a cluster agrees on: the pod and
//! service ranges, the cluster DNS address and domain, and the NodePort range, with
//! k3s's flag names and defaults. The server parses its flags into a
//! [`ClusterNetwork`]; the API server allocates from it, the node agents program and
//! answer from it (joining agents fetch it from the server as JSON, as k3s agents fetch
//! `/v1-k3s/config`).

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub use ipnet::Ipv4Net;

/// k3s's `--cluster-cidr` default.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// k3s's `--service-cidr` default.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
/// k3s's `--cluster-domain` default.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// kube-apiserver's `--service-node-port-range` default.
pub const DEFAULT_NODE_PORT_RANGE: &str = "30000-32767";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetconfError {
    #[error("--{flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> NetconfError {
    NetconfError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A NodePort range, both ends included (kube's `utilnet.PortRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// `30000-32767`, or kube's `30000+2767` form (base plus size - 1), or one port.
    pub fn parse(flag: &'static str, s: &str) -> Result<PortRange, NetconfError> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| invalid(flag, s, format!("{p:?} is not a port number")))
        };
        let (first, last) = if let Some((a, b)) = s.split_once('-') {
            (port(a)?, port(b)?)
        } else if let Some((a, b)) = s.split_once('+') {
            let first = port(a)?;
            let extra = port(b)?;
            let last = first
                .checked_add(extra)
                .ok_or_else(|| invalid(flag, s, "the range runs past port 65535"))?;
            (first, last)
        } else {
            let p = port(s)?;
            (p, p)
        };
        if first == 0 {
            return Err(invalid(flag, s, "port 0 is not a valid port"));
        }
        if last < first {
            return Err(invalid(flag, s, "the last port is below the first"));
        }
        Ok(PortRange { first, last })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// How many ports the range holds.
    pub fn size(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The cluster-wide network settings (serialised in camelCase for agents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// `--cluster-cidr`: the pods' addresses; nodes get /24s of it.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Ipv4Net,
    /// `--service-cidr`: the Services' virtual IPs.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Ipv4Net,
    /// `--cluster-dns`: the `kube-dns` Service's IP, the pods' nameserver.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Ipv4Addr,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// `--service-node-port-range`.
    pub node_port_range: PortRange,
    /// `--flannel-backend`: how pods on different nodes reach each other (`vxlan`,
    /// `host-gw` or `none`).
    #[serde(default = "default_backend")]
    pub flannel_backend: String,
    /// Whether the nodes answer the cluster's DNS (off with `--disable coredns`: pods
    /// with dnsPolicy ClusterFirst then get the node's resolvers, as the kubelet gives
    /// them without a cluster DNS).
    #[serde(default = "yes")]
    pub dns: bool,
}

fn yes() -> bool {
    true
}

/// k3s's `--flannel-backend` default.
pub const DEFAULT_FLANNEL_BACKEND: &str = "vxlan";

fn default_backend() -> String {
    DEFAULT_FLANNEL_BACKEND.to_string()
}

impl Default for ClusterNetwork {
    /// k3s's defaults (the `the_defaults_are_k3s` test checks they equal the parsed
    /// default flags).
    fn default() -> Self {
        let net = |a, b, len| Ipv4Net::new_assert(Ipv4Addr::new(10, a, b, 0), len);
        ClusterNetwork {
            cluster_cidr: net(42, 0, 16),
            service_cidr: net(43, 0, 16),
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            node_port_range: PortRange {
                first: 30000,
                last: 32767,
            },
            flannel_backend: default_backend(),
            dns: true,
        }
    }
}

/// `a.b.c.d/n` with the host bits cleared; `flag` names it in errors.
pub fn parse_cidr(flag: &'static str, s: &str) -> Result<Ipv4Net, NetconfError> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| invalid(flag, s, "not an IPv4 CIDR such as 10.43.0.0/16"))?;
    Ok(net.trunc())
}

impl ClusterNetwork {
    /// Parse and check the flags together. `cluster_dns` None takes the tenth address of
    /// the service range, as k3s does (10.43.0.10).
    pub fn parse(
        cluster_cidr: &str,
        service_cidr: &str,
        cluster_dns: Option<&str>,
        cluster_domain: &str,
        node_port_range: &str,
    ) -> Result<ClusterNetwork, NetconfError> {
        let cluster = parse_cidr("cluster-cidr", cluster_cidr)?;
        if cluster.prefix_len() > 24 {
            return Err(invalid(
                "cluster-cidr",
                cluster_cidr,
                "must hold at least one /24 (nodes get a /24 each)",
            ));
        }
        let service = parse_cidr("service-cidr", service_cidr)?;
        // kube-apiserver: at most 20 host bits for IPv4, and room for more than the
        // network and broadcast addresses.
        if service.prefix_len() < 12 {
            return Err(invalid(
                "service-cidr",
                service_cidr,
                "too large; for 32-bit addresses the mask must be >= 12",
            ));
        }
        if service.prefix_len() > 28 {
            return Err(invalid(
                "service-cidr",
                service_cidr,
                "too small; the mask must be <= 28",
            ));
        }
        if cluster.contains(&service.network()) || service.contains(&cluster.network()) {
            return Err(invalid(
                "service-cidr",
                service_cidr,
                format!("overlaps --cluster-cidr {cluster}"),
            ));
        }
        let dns = match cluster_dns {
            Some(s) => s
                .trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid("cluster-dns", s, "not an IPv4 address"))?,
            None => nth(service, 10),
        };
        if !service.contains(&dns) || dns == service.network() || dns == service.broadcast() {
            return Err(invalid(
                "cluster-dns",
                &dns.to_string(),
                format!("must be an address inside --service-cidr {service}"),
            ));
        }
        if dns == nth(service, 1) {
            return Err(invalid(
                "cluster-dns",
                &dns.to_string(),
                "is the kubernetes Service's address (the first of --service-cidr)",
            ));
        }
        let domain = cluster_domain
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !crate::names::is_dns1123_subdomain(&domain) {
            return Err(invalid(
                "cluster-domain",
                cluster_domain,
                "must be a DNS subdomain: lower-case letters, digits, '-' and '.'",
            ));
        }
        Ok(ClusterNetwork {
            cluster_cidr: cluster,
            service_cidr: service,
            cluster_dns: dns,
            cluster_domain: domain,
            node_port_range: PortRange::parse("service-node-port-range", node_port_range)?,
            flannel_backend: default_backend(),
            dns: true,
        })
    }

    /// The settings with `--flannel-backend` `backend` (checked).
    pub fn with_backend(mut self, backend: &str) -> Result<ClusterNetwork, NetconfError> {
        match backend {
            "vxlan" | "host-gw" | "none" => {
                self.flannel_backend = backend.to_string();
                Ok(self)
            }
            _ => Err(invalid(
                "flannel-backend",
                backend,
                "not supported (skiff has vxlan, host-gw and none)",
            )),
        }
    }

    /// The `kubernetes` Service's address: the first address of the service range.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        nth(self.service_cidr, 1)
    }
}

/// The `n`th address of `net` (0 is the network address).
pub fn nth(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_k3s() {
        let n = ClusterNetwork::default();
        let parsed = ClusterNetwork::parse(
            DEFAULT_CLUSTER_CIDR,
            DEFAULT_SERVICE_CIDR,
            None,
            DEFAULT_CLUSTER_DOMAIN,
            DEFAULT_NODE_PORT_RANGE,
        )
        .unwrap();
        assert_eq!(parsed, n);
        assert_eq!(n.cluster_cidr.to_string(), "10.42.0.0/16");
        assert_eq!(n.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(n.cluster_dns, Ipv4Addr::new(10, 43, 0, 10));
        assert_eq!(n.kubernetes_service_ip(), Ipv4Addr::new(10, 43, 0, 1));
        assert_eq!(n.cluster_domain, "cluster.local");
        assert_eq!(
            n.node_port_range,
            PortRange {
                first: 30000,
                last: 32767
            }
        );
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["serviceCIDR"], "10.43.0.0/16");
        assert_eq!(json["clusterDNS"], "10.43.0.10");
        assert_eq!(json["nodePortRange"]["first"], 30000);
        let back: ClusterNetwork = serde_json::from_value(json).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn bad_flags_name_the_flag_and_the_reason() {
        let e = |c, s, d, dom, r| {
            ClusterNetwork::parse(c, s, d, dom, r)
                .unwrap_err()
                .to_string()
        };
        assert!(e(
            "10.42.0.0/25",
            "10.43.0.0/16",
            None,
            "cluster.local",
            "30000-32767"
        )
        .starts_with("--cluster-cidr"));
        assert!(e(
            "10.42.0.0/16",
            "10.43.0.0/8",
            None,
            "cluster.local",
            "30000-32767"
        )
        .contains("mask must be >= 12"));
        assert!(e(
            "10.0.0.0/8",
            "10.43.0.0/16",
            None,
            "cluster.local",
            "30000-32767"
        )
        .contains("overlaps --cluster-cidr"));
        assert!(e(
            "10.42.0.0/16",
            "10.43.0.0/16",
            Some("10.44.0.10"),
            "cluster.local",
            "30000-32767"
        )
        .contains("inside --service-cidr 10.43.0.0/16"));
        assert!(e(
            "10.42.0.0/16",
            "10.43.0.0/16",
            Some("10.43.0.1"),
            "cluster.local",
            "30000-32767"
        )
        .contains("kubernetes Service"));
        assert!(e(
            "10.42.0.0/16",
            "10.43.0.0/16",
            None,
            "Bad_Domain",
            "30000-32767"
        )
        .starts_with("--cluster-domain"));
        assert!(e(
            "10.42.0.0/16",
            "10.43.0.0/16",
            None,
            "cluster.local",
            "32767-30000"
        )
        .contains("below the first"));
        assert!(e(
            "10.42.0.0/16",
            "nonsense",
            None,
            "cluster.local",
            "30000-32767"
        )
        .starts_with("--service-cidr \"nonsense\""));
    }

    #[test]
    fn port_ranges_read_both_of_kubes_forms() {
        assert_eq!(
            PortRange::parse("p", "30000+2767").unwrap(),
            PortRange {
                first: 30000,
                last: 32767
            }
        );
        let r = PortRange::parse("p", "31000-31009").unwrap();
        assert_eq!(r.size(), 10);
        assert!(r.contains(31009) && !r.contains(31010));
        assert_eq!(r.to_string(), "31000-31009");
        assert!(PortRange::parse("p", "0-10").is_err());
        assert!(PortRange::parse("p", "65535+1").is_err());
    }

    #[test]
    fn host_bits_are_cleared_and_the_domain_is_canonical() {
        let n = ClusterNetwork::parse(
            "10.42.7.1/16",
            "10.96.3.4/12",
            None,
            "Cluster.Local.",
            "30000-32767",
        )
        .unwrap();
        assert_eq!(n.cluster_cidr.to_string(), "10.42.0.0/16");
        assert_eq!(n.service_cidr.to_string(), "10.96.0.0/12");
        assert_eq!(n.cluster_dns, Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(n.cluster_domain, "cluster.local");
    }
}
