//! A pod's `/etc/resolv.conf`, as the kubelet forms it (`pkg/kubelet/network/dns`):
//! the node's resolver configuration (`--resolv-conf`, parsed as the kubelet parses
//! it) or the cluster DNS, chosen by the pod's `dnsPolicy`, with its `dnsConfig`
//! merged in and the kubelet's limits applied (a `DNSConfigForming` Warning when
//! something had to be left out). The file is written as the container runtime writes
//! it: `search`, then one `nameserver` line each, then `options`.

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};
use std::net::IpAddr;
use std::path::Path;

/// The most nameservers a resolver uses (glibc's MAXNS; kube's MaxDNSNameservers).
pub const MAX_NAMESERVERS: usize = 3;
/// The most search domains (kube's MaxDNSSearchPaths, ExpandedDNSConfig).
pub const MAX_SEARCH_PATHS: usize = 32;
/// The longest search line, spaces included (kube's MaxDNSSearchListChars).
pub const MAX_SEARCH_CHARS: usize = 2048;
/// The longest single search domain (a DNS-1123 subdomain; longer ones abort glibc).
const MAX_SEARCH_PATH_LEN: usize = 253;
/// The kubelet reads at most this much of the resolver file.
const MAX_RESOLV_CONF: u64 = 10 << 20;

/// A resolver configuration: what a resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What the node tells its pods about DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDns {
    /// The cluster DNS addresses (`--cluster-dns`); empty when the cluster has none.
    pub cluster_dns: Vec<IpAddr>,
    /// `--cluster-domain`; empty for none.
    pub cluster_domain: String,
    /// The node's resolver configuration as `--resolv-conf` reads (None: the flag was
    /// empty, which the kubelet takes as "no upstream": the node's own loopback).
    pub host: Option<DnsConfig>,
}

/// Why a resolver file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolvConfError {
    #[error("reading --resolv-conf {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("--resolv-conf {path}: nameserver list is empty")]
    EmptyNameserver { path: String },
}

/// Parses a resolv.conf as the kubelet does: `nameserver` lines accumulate, the last
/// `search` and the last `options` line win, search domains lose a trailing dot, `#`
/// comment lines are skipped. None when a `nameserver` line names none.
pub fn parse_resolv_conf(text: &str) -> Option<DnsConfig> {
    let mut out = DnsConfig::default();
    let mut bad = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first().copied() {
            Some("nameserver") => match fields.get(1) {
                Some(ns) => out.servers.push(ns.to_string()),
                None => bad = true,
            },
            Some("search") => {
                out.searches = fields[1..]
                    .iter()
                    .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                    .collect();
            }
            Some("options") => out.options = fields[1..].iter().map(|s| s.to_string()).collect(),
            _ => {}
        }
    }
    (!bad).then_some(out)
}

/// Reads and parses `--resolv-conf` (None for an empty flag).
pub fn read_resolv_conf(path: Option<&Path>) -> Result<Option<DnsConfig>, ResolvConfError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let read = || -> std::io::Result<String> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)?
            .take(MAX_RESOLV_CONF)
            .read_to_string(&mut text)?;
        Ok(text)
    };
    let text = read().map_err(|error| ResolvConfError::Read {
        path: shown.clone(),
        error,
    })?;
    parse_resolv_conf(&text)
        .map(Some)
        .ok_or(ResolvConfError::EmptyNameserver { path: shown })
}

/// The resolver configuration the kubelet gives `pod`, and the Warning events (reason,
/// message) it records while forming it.
pub fn pod_dns(pod: &Pod, node: &NodeDns) -> (DnsConfig, Vec<(&'static str, String)>) {
    let mut events = Vec::new();
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .filter(|p| !p.is_empty())
        .unwrap_or("ClusterFirst");
    let host = || match &node.host {
        Some(h) => h.clone(),
        // An empty --resolv-conf: the node's own resolver, no search (as the kubelet).
        None => DnsConfig {
            servers: vec!["127.0.0.1".into()],
            searches: vec![".".into()],
            options: Vec::new(),
        },
    };
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "Default" => Some(false),
        "ClusterFirst" => Some(!host_network),
        // The API server refuses other values; the kubelet takes them as ClusterFirst.
        _ => Some(true),
    };
    let mut cfg = match cluster {
        None => DnsConfig::default(),
        Some(true) if !node.cluster_dns.is_empty() => {
            // An empty --resolv-conf adds no search domains here.
            let base = node.host.clone().unwrap_or_default();
            let mut searches = Vec::new();
            if !node.cluster_domain.is_empty() {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                let d = &node.cluster_domain;
                searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            }
            searches.extend(base.searches);
            DnsConfig {
                servers: node.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                searches: dedup(searches),
                options: vec!["ndots:5".into()],
            }
        }
        Some(true) => {
            events.push((
                "MissingClusterDNS",
                format!(
                    "pod: \"{}\". kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                    pod_desc(pod)
                ),
            ));
            host()
        }
        Some(false) => host(),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        merge(&mut cfg, extra);
    }
    fit_limits(&mut cfg, &mut events);
    (cfg, events)
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
fn pod_desc(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    )
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// `dnsConfig` over a base: nameservers and searches appended without duplicates,
/// options merged by name (the pod's value wins; an option without a value is bare).
pub fn merge(cfg: &mut DnsConfig, extra: &PodDNSConfig) {
    let mut servers = std::mem::take(&mut cfg.servers);
    servers.extend(extra.nameservers.iter().flatten().cloned());
    cfg.servers = dedup(servers);
    let mut searches = std::mem::take(&mut cfg.searches);
    searches.extend(extra.searches.iter().flatten().cloned());
    cfg.searches = dedup(searches);
    // By name, in the order first seen (the kubelet's map has no order; this keeps the
    // base's order and appends the pod's new ones).
    let mut options: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match options.iter_mut().find(|(n, _)| n == name) {
        Some(o) => o.1 = value.to_string(),
        None => options.push((name.to_string(), value.to_string())),
    };
    for op in &cfg.options {
        let (name, value) = op.split_once(':').unwrap_or((op, ""));
        set(name, value);
    }
    for op in extra.options.iter().flatten() {
        set(
            op.name.as_deref().unwrap_or(""),
            op.value.as_deref().unwrap_or(""),
        );
    }
    cfg.options = options
        .into_iter()
        .map(|(n, v)| if v.is_empty() { n } else { format!("{n}:{v}") })
        .collect();
}

/// The kubelet's limits: at most 3 nameservers; at most 32 search domains, none
/// longer than 253 characters, the line at most 2048 characters (trimmed from the
/// end). Each trim is a `DNSConfigForming` Warning.
fn fit_limits(cfg: &mut DnsConfig, events: &mut Vec<(&'static str, String)>) {
    if cfg.servers.len() > MAX_NAMESERVERS {
        cfg.servers.truncate(MAX_NAMESERVERS);
        events.push((
            "DNSConfigForming",
            format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                cfg.servers.join(" ")
            ),
        ));
    }
    let mut exceeded = false;
    if cfg.searches.len() > MAX_SEARCH_PATHS {
        cfg.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = cfg.searches.len();
    cfg.searches.retain(|s| s.len() <= MAX_SEARCH_PATH_LEN);
    exceeded |= cfg.searches.len() != before;
    let line_len =
        |s: &[String]| s.iter().map(String::len).sum::<usize>() + s.len().saturating_sub(1);
    if line_len(&cfg.searches) > MAX_SEARCH_CHARS {
        while line_len(&cfg.searches) > MAX_SEARCH_CHARS {
            cfg.searches.pop();
        }
        exceeded = true;
    }
    if exceeded {
        events.push((
            "DNSConfigForming",
            format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                cfg.searches.join(" ")
            ),
        ));
    }
}

/// The resolv.conf text of `cfg`, as the container runtime writes it.
pub fn render(cfg: &DnsConfig) -> String {
    let mut out = String::new();
    if !cfg.searches.is_empty() {
        out.push_str(&format!("search {}\n", cfg.searches.join(" ")));
    }
    for s in &cfg.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !cfg.options.is_empty() {
        out.push_str(&format!("options {}\n", cfg.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "team", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn node() -> NodeDns {
        NodeDns {
            cluster_dns: vec!["10.43.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            host: Some(
                parse_resolv_conf(
                    "# host\nnameserver 192.0.2.53\nsearch corp.example. lab.example\noptions timeout:2 rotate\nnameserver 192.0.2.54\n",
                )
                .unwrap(),
            ),
        }
    }

    #[test]
    fn the_host_file_is_read_as_the_kubelet_reads_it() {
        let h = parse_resolv_conf(
            "nameserver 1.1.1.1\nsearch a.example\n  # comment\nsearch b.example. c.example\noptions ndots:1\noptions edns0\nnameserver 8.8.8.8 extra\ndomain ignored.example\n",
        )
        .unwrap();
        assert_eq!(h.servers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(h.searches, ["b.example", "c.example"]);
        assert_eq!(h.options, ["edns0"]);
        assert!(parse_resolv_conf("nameserver\n").is_none());
        assert_eq!(parse_resolv_conf("").unwrap(), DnsConfig::default());
    }

    #[test]
    fn each_policy_forms_its_file() {
        let cluster = "search team.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n";
        let host = "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 rotate\n";
        let cases = [
            (json!({}), cluster),
            (json!({"dnsPolicy": "ClusterFirst"}), cluster),
            (
                json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true}),
                host,
            ),
            (
                json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
                cluster,
            ),
            (json!({"dnsPolicy": "Default"}), host),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"]}}),
                "nameserver 192.0.2.1\n",
            ),
        ];
        for (spec, want) in cases {
            let (cfg, events) = pod_dns(&pod(spec.clone()), &node());
            assert_eq!(render(&cfg), want, "{spec}");
            assert!(events.is_empty(), "{spec}: {events:?}");
        }
    }

    #[test]
    fn dns_config_merges_as_kubernetes_merges_it() {
        let p = pod(json!({"dnsConfig": {
            "nameservers": ["10.43.0.10", "192.0.2.9"],
            "searches": ["cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}, {"name": "attempts", "value": "3"}],
        }}));
        let (cfg, events) = pod_dns(&p, &node());
        assert_eq!(cfg.servers, ["10.43.0.10", "192.0.2.9"]);
        assert_eq!(
            cfg.searches,
            [
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "lab.example",
                "extra.example"
            ]
        );
        assert_eq!(cfg.options, ["ndots:2", "edns0", "attempts:3"]);
        assert!(events.is_empty());
        // Default keeps the host's options and lets the pod's override them by name.
        let p = pod(json!({"dnsPolicy": "Default", "dnsConfig": {
            "options": [{"name": "rotate", "value": "1"}, {"name": "timeout"}],
        }}));
        assert_eq!(pod_dns(&p, &node()).0.options, ["timeout", "rotate:1"]);
        // None starts from nothing.
        let p = pod(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1"], "searches": ["a.example", "a.example"],
            "options": [{"name": "ndots", "value": "1"}],
        }}));
        assert_eq!(
            render(&pod_dns(&p, &node()).0),
            "search a.example\nnameserver 192.0.2.1\noptions ndots:1\n"
        );
    }

    #[test]
    fn limits_trim_with_a_warning() {
        let p = pod(json!({"dnsPolicy": "Default", "dnsConfig": {
            "nameservers": ["192.0.2.1", "192.0.2.2"],
        }}));
        let (cfg, events) = pod_dns(&p, &node());
        assert_eq!(cfg.servers, ["192.0.2.53", "192.0.2.54", "192.0.2.1"]);
        assert_eq!(
            events,
            [(
                "DNSConfigForming",
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 192.0.2.53 192.0.2.54 192.0.2.1".to_string()
            )]
        );
        // 32 search paths at most: the cluster's three and the host's two leave 27.
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let p = pod(json!({"dnsConfig": {"searches": many}}));
        let (cfg, events) = pod_dns(&p, &node());
        assert_eq!(cfg.searches.len(), 32);
        assert_eq!(cfg.searches[31], "d26.example");
        assert_eq!(events.len(), 1);
        assert!(events[0].1.starts_with("Search Line limits were exceeded"));
        assert!(events[0].1.ends_with("d25.example d26.example"));
        // 2048 characters at most, trimmed from the end; over-long paths dropped.
        let long: Vec<String> = (0..12)
            .map(|i| format!("{i:02}{}", "x".repeat(198)))
            .collect();
        let mut searches = long.clone();
        searches.insert(0, "y".repeat(254));
        let p = pod(
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": searches}}),
        );
        let (cfg, events) = pod_dns(&p, &node());
        assert_eq!(cfg.searches, long[..10]);
        assert_eq!(cfg.searches.join(" ").len(), 2009);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn without_cluster_dns_cluster_first_falls_back_to_the_host() {
        let mut n = node();
        n.cluster_dns.clear();
        let (cfg, events) = pod_dns(&pod(json!({})), &n);
        assert_eq!(cfg, n.host.clone().unwrap());
        assert_eq!(events[0].0, "MissingClusterDNS");
        // An empty --resolv-conf: the node's loopback and no search.
        n.host = None;
        let (cfg, _) = pod_dns(&pod(json!({"dnsPolicy": "Default"})), &n);
        assert_eq!(render(&cfg), "search .\nnameserver 127.0.0.1\n");
    }
}
