//! The cluster's DNS records, per the Kubernetes DNS specification
//! (github.com/kubernetes/dns, docs/specification.md) and as CoreDNS's `kubernetes`
//! plugin answers them with k3s's Corefile (`pods insecure`, PTR misses fall through):
//!
//! - `<svc>.<ns>.svc.<zone>` A: the ClusterIP; for a headless Service the ready
//!   endpoints' addresses (none ready: the name does not exist);
//! - `<host>.<svc>.<ns>.svc.<zone>` A for a headless Service's endpoints, `<host>`
//!   being the endpoint's `hostname` (a StatefulSet pod's) or its dashed address;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV for named ports, targeting the
//!   Service (ClusterIP) or each endpoint (headless), with their A records as
//!   additionals;
//! - PTR for ClusterIPs and headless endpoints' addresses; other reverse names are
//!   not the zone's (forwarded);
//! - ExternalName: a CNAME to the external name; for A and AAAA questions, when the
//!   target is inside the zone, the target's records follow it (CoreDNS chases such
//!   CNAMEs itself; a target outside the zone is chased by the server through its
//!   forwarder, see skiff-dns's `server`);
//! - `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` A: the address in the name, when the namespace
//!   exists;
//! - `dns-version.<zone>` TXT `1.1.0`.
//!
//! A name that exists with no record of the asked type is NODATA, one that does not
//! exist NXDOMAIN, both with the zone's SOA; intermediate names (`svc.<zone>`,
//! `<ns>.svc.<zone>` of an existing namespace, `pod.<zone>`) exist. Everything has
//! CoreDNS's TTL, 5 s. Names compare case-insensitively.
//!
//! The zone is a snapshot: built from the Services, EndpointSlices and Namespaces
//! whenever they change, and swapped in whole.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

/// CoreDNS's default TTL for cluster records.
pub const TTL: u32 = 5;

/// How many CNAMEs in a row are followed inside the zone.
const MAX_CHASE: usize = 8;

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RData {
    A(Ipv4Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String),
    Cname(String),
    Txt(String),
}

/// The query types the zone knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    A,
    Aaaa,
    Srv,
    Ptr,
    Cname,
    Txt,
    Soa,
    Any,
    /// Any other type: the name may exist, but has no such record.
    Other(u16),
}

/// A record: owner name (lower case, no trailing dot), TTL, data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// The zone's SOA, for negative answers (CoreDNS's values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub zone: String,
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    pub ttl: u32,
}

/// The zone's answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, without records of that type.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// Not the zone's name: forward it.
    NotMine,
}

/// The cluster's records.
#[derive(Debug, Clone, Default)]
pub struct ClusterZone {
    domain: String,
    records: HashMap<String, Vec<Record>>,
    /// Names that exist without records (intermediate names).
    empty: HashSet<String>,
    namespaces: HashSet<String>,
    serial: u32,
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// `d.c.b.a.in-addr.arpa` for `a.b.c.d`.
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// The ready endpoints of a Service: (address, hostname, ports by name).
struct Endpoint {
    ip: Ipv4Addr,
    hostname: Option<String>,
    ports: Vec<(String, String, u16)>,
}

fn endpoints_of(ns: &str, name: &str, slices: &[EndpointSlice]) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in slices.iter().filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.address_type == "IPv4"
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                == Some(name)
    }) {
        let ports: Vec<(String, String, u16)> = s
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    u16::try_from(p.port?).ok()?,
                ))
            })
            .collect();
        for e in &s.endpoints {
            // Ready, or not said (the API's meaning of an absent condition).
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                let Ok(ip) = a.parse::<Ipv4Addr>() else {
                    continue;
                };
                if seen.insert((ip, e.hostname.clone())) {
                    out.push(Endpoint {
                        ip,
                        hostname: e.hostname.clone(),
                        ports: ports.clone(),
                    });
                }
            }
        }
    }
    out
}

impl ClusterZone {
    /// The zone of `domain` (e.g. `cluster.local`) for these objects.
    pub fn build(
        domain: &str,
        services: &[Service],
        slices: &[EndpointSlice],
        namespaces: &[String],
        serial: u32,
    ) -> ClusterZone {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut z = ClusterZone {
            domain: domain.clone(),
            serial,
            namespaces: namespaces.iter().map(|n| n.to_ascii_lowercase()).collect(),
            ..Default::default()
        };
        z.empty.insert(domain.clone());
        z.empty.insert(format!("svc.{domain}"));
        z.empty.insert(format!("pod.{domain}"));
        for ns in &z.namespaces.clone() {
            z.empty.insert(format!("{ns}.svc.{domain}"));
            z.empty.insert(format!("{ns}.pod.{domain}"));
        }
        z.add(Record {
            name: format!("dns-version.{domain}"),
            ttl: TTL,
            data: RData::Txt("1.1.0".into()),
        });
        for svc in services {
            let (Some(ns), Some(name), Some(spec)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
                svc.spec.as_ref(),
            ) else {
                continue;
            };
            let fqdn = format!("{name}.{ns}.svc.{domain}").to_ascii_lowercase();
            if spec.type_.as_deref() == Some("ExternalName") {
                if let Some(ext) = spec.external_name.as_deref() {
                    z.add(Record {
                        name: fqdn,
                        ttl: TTL,
                        data: RData::Cname(ext.trim_end_matches('.').to_ascii_lowercase()),
                    });
                }
                continue;
            }
            let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
            if cluster_ip == "None" {
                z.add_headless(&fqdn, endpoints_of(ns, name, slices));
                continue;
            }
            let Ok(ip) = cluster_ip.parse::<Ipv4Addr>() else {
                continue;
            };
            z.add(Record {
                name: fqdn.clone(),
                ttl: TTL,
                data: RData::A(ip),
            });
            z.add(Record {
                name: reverse_name(ip),
                ttl: TTL,
                data: RData::Ptr(fqdn.clone()),
            });
            for p in spec.ports.iter().flatten() {
                let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                let Ok(port) = u16::try_from(p.port) else {
                    continue;
                };
                z.add_srv(
                    &format!("_{pname}._{proto}.{fqdn}").to_ascii_lowercase(),
                    vec![(fqdn.clone(), port)],
                );
            }
        }
        z
    }

    fn add(&mut self, r: Record) {
        // Every ancestor name inside the zone exists too.
        let mut n = r.name.as_str();
        while let Some((_, parent)) = n.split_once('.') {
            if parent.len() < self.domain.len() || !parent.ends_with(&self.domain) {
                break;
            }
            self.empty.insert(parent.to_string());
            n = parent;
        }
        let v = self.records.entry(r.name.clone()).or_default();
        if !v.contains(&r) {
            v.push(r);
        }
    }

    /// SRV records at `name`, one per target, weighted evenly (CoreDNS: 100/n).
    fn add_srv(&mut self, name: &str, targets: Vec<(String, u16)>) {
        let n = u16::try_from(targets.len().max(1)).unwrap_or(u16::MAX);
        let weight = (100 / n).max(1);
        for (target, port) in targets {
            self.add(Record {
                name: name.to_string(),
                ttl: TTL,
                data: RData::Srv {
                    priority: 0,
                    weight,
                    port,
                    target,
                },
            });
        }
    }

    fn add_headless(&mut self, fqdn: &str, eps: Vec<Endpoint>) {
        // Ports by (name, protocol) → the endpoints serving them.
        let mut srv: BTreeMap<(String, String), Vec<(String, u16)>> = BTreeMap::new();
        for e in &eps {
            let host = e
                .hostname
                .clone()
                .unwrap_or_else(|| dashed(e.ip))
                .to_ascii_lowercase();
            let host_fqdn = format!("{host}.{fqdn}");
            self.add(Record {
                name: fqdn.to_string(),
                ttl: TTL,
                data: RData::A(e.ip),
            });
            self.add(Record {
                name: host_fqdn.clone(),
                ttl: TTL,
                data: RData::A(e.ip),
            });
            self.add(Record {
                name: reverse_name(e.ip),
                ttl: TTL,
                data: RData::Ptr(host_fqdn.clone()),
            });
            for (pname, proto, port) in &e.ports {
                if pname.is_empty() {
                    continue;
                }
                srv.entry((pname.to_ascii_lowercase(), proto.to_ascii_lowercase()))
                    .or_default()
                    .push((host_fqdn.clone(), *port));
            }
        }
        for ((pname, proto), targets) in srv {
            self.add_srv(&format!("_{pname}._{proto}.{fqdn}"), targets);
        }
    }

    /// The zone's apex (e.g. `cluster.local`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The SOA negative answers carry.
    pub fn soa(&self) -> Soa {
        Soa {
            zone: self.domain.clone(),
            mname: format!("ns.dns.{}", self.domain),
            rname: format!("hostmaster.{}", self.domain),
            serial: self.serial,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: TTL,
            ttl: TTL,
        }
    }

    fn in_zone(&self, name: &str) -> bool {
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }

    /// The answer to `qname`/`qtype`.
    pub fn answer(&self, qname: &str, qtype: QType) -> Answer {
        let name = qname.trim_end_matches('.').to_ascii_lowercase();
        if name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa") {
            // Reverse names are the zone's only where it has them.
            return match self.records.get(&name) {
                Some(rs) => self.pick(rs, qtype),
                None => Answer::NotMine,
            };
        }
        if !self.in_zone(&name) {
            return Answer::NotMine;
        }
        if let Some(rs) = self.records.get(&name) {
            return self.pick(rs, qtype);
        }
        if let Some(a) = self.pod_record(&name) {
            return match qtype {
                QType::A | QType::Any => Answer::Records {
                    answers: vec![a],
                    additionals: vec![],
                },
                _ => Answer::NoData,
            };
        }
        if self.empty.contains(&name) {
            return Answer::NoData;
        }
        Answer::NxDomain
    }

    /// `a-b-c-d.<ns>.pod.<zone>` with an existing namespace.
    fn pod_record(&self, name: &str) -> Option<Record> {
        let rest = name.strip_suffix(&format!(".pod.{}", self.domain))?;
        let (dashed, ns) = rest.split_once('.')?;
        if ns.contains('.') || !self.namespaces.contains(ns) {
            return None;
        }
        let ip: Ipv4Addr = dashed.replace('-', ".").parse().ok()?;
        Some(Record {
            name: name.to_string(),
            ttl: TTL,
            data: RData::A(ip),
        })
    }

    /// Follow a CNAME answer while its target is in the zone, appending each target's
    /// records of `qtype` (and its CNAME, to go on); a target outside the zone, or
    /// one without such records, ends the chain.
    fn chase(&self, answers: &mut Vec<Record>, qtype: QType) {
        for _ in 0..MAX_CHASE {
            let Some(RData::Cname(target)) = answers.last().map(|r| &r.data) else {
                return;
            };
            let target = target.clone();
            if !self.in_zone(&target) {
                return;
            }
            let found: Vec<Record> = match self.records.get(&target) {
                Some(rs) => rs
                    .iter()
                    .filter(|r| {
                        matches!(
                            (&r.data, qtype),
                            (RData::A(_), QType::A) | (RData::Cname(_), _)
                        )
                    })
                    .cloned()
                    .collect(),
                None if qtype == QType::A => self.pod_record(&target).into_iter().collect(),
                None => Vec::new(),
            };
            if found.is_empty() || found.iter().any(|r| answers.contains(r)) {
                return;
            }
            let mut found = found;
            found.sort();
            answers.extend(found);
        }
    }

    fn pick(&self, rs: &[Record], qtype: QType) -> Answer {
        let want = |r: &Record| match (&r.data, qtype) {
            (_, QType::Any) => true,
            (RData::A(_), QType::A) => true,
            (RData::Srv { .. }, QType::Srv) => true,
            (RData::Ptr(_), QType::Ptr) => true,
            (RData::Txt(_), QType::Txt) => true,
            // A CNAME answers every type but its own owner's other records.
            (RData::Cname(_), _) => true,
            _ => false,
        };
        let mut answers: Vec<Record> = rs.iter().filter(|r| want(r)).cloned().collect();
        if answers.is_empty() {
            return Answer::NoData;
        }
        answers.sort();
        if matches!(qtype, QType::A | QType::Aaaa) {
            self.chase(&mut answers, qtype);
        }
        let mut additionals = Vec::new();
        for r in &answers {
            if let RData::Srv { target, .. } = &r.data {
                for t in self.records.get(target).into_iter().flatten() {
                    if matches!(t.data, RData::A(_)) && !additionals.contains(t) {
                        additionals.push(t.clone());
                    }
                }
            }
        }
        Answer::Records {
            answers,
            additionals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn zone() -> ClusterZone {
        let services = vec![
            svc(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.43.12.34", "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP"},
                    {"port": 81}]}})),
            svc(
                json!({"metadata": {"name": "nginx", "namespace": "default"},
                "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 80}]}}),
            ),
            svc(
                json!({"metadata": {"name": "empty", "namespace": "default"},
                "spec": {"clusterIP": "None"}}),
            ),
            svc(json!({"metadata": {"name": "db", "namespace": "team"},
                "spec": {"type": "ExternalName", "externalName": "DB.Example.COM."}})),
        ];
        let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "nginx-x", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "nginx"}},
        "addressType": "IPv4",
        "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.0.5"], "hostname": "web-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.1.7"], "conditions": {"ready": true}},
            {"addresses": ["10.42.1.9"], "hostname": "web-2", "conditions": {"ready": false}}
        ]}))
        .unwrap();
        ClusterZone::build(
            "Cluster.Local.",
            &services,
            &[slice],
            &["default".into(), "team".into()],
            7,
        )
    }

    fn answers(a: Answer) -> Vec<RData> {
        match a {
            Answer::Records { answers, .. } => answers.into_iter().map(|r| r.data).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cluster_ip_services_have_a_srv_and_ptr() {
        let z = zone();
        assert_eq!(
            answers(z.answer("web.default.svc.cluster.local.", QType::A)),
            [RData::A(Ipv4Addr::new(10, 43, 12, 34))]
        );
        // Case-insensitive.
        assert_eq!(
            answers(z.answer("WEB.Default.SVC.cluster.local", QType::A)).len(),
            1
        );
        let srv = z.answer("_http._tcp.web.default.svc.cluster.local", QType::Srv);
        let Answer::Records {
            answers,
            additionals,
        } = srv
        else {
            panic!()
        };
        assert_eq!(
            answers[0].data,
            RData::Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: "web.default.svc.cluster.local".into()
            }
        );
        assert_eq!(additionals[0].data, RData::A(Ipv4Addr::new(10, 43, 12, 34)));
        // The unnamed port has no SRV record.
        assert_eq!(
            z.answer("_81._tcp.web.default.svc.cluster.local", QType::Srv),
            Answer::NxDomain
        );
        assert_eq!(
            answers_of(&z, "34.12.43.10.in-addr.arpa", QType::Ptr),
            [RData::Ptr("web.default.svc.cluster.local".into())]
        );
    }

    fn answers_of(z: &ClusterZone, n: &str, t: QType) -> Vec<RData> {
        answers(z.answer(n, t))
    }

    #[test]
    fn headless_services_list_ready_endpoints_with_hostnames() {
        let z = zone();
        assert_eq!(
            answers_of(&z, "nginx.default.svc.cluster.local", QType::A),
            [
                RData::A(Ipv4Addr::new(10, 42, 0, 5)),
                RData::A(Ipv4Addr::new(10, 42, 1, 7))
            ]
        );
        assert_eq!(
            answers_of(&z, "web-0.nginx.default.svc.cluster.local", QType::A),
            [RData::A(Ipv4Addr::new(10, 42, 0, 5))]
        );
        assert_eq!(
            answers_of(&z, "10-42-1-7.nginx.default.svc.cluster.local", QType::A),
            [RData::A(Ipv4Addr::new(10, 42, 1, 7))]
        );
        // Not ready: not there.
        assert_eq!(
            z.answer("web-2.nginx.default.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
        let Answer::Records {
            answers,
            additionals,
        } = z.answer("_web._tcp.nginx.default.svc.cluster.local", QType::Srv)
        else {
            panic!()
        };
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(|r| matches!(&r.data,
            RData::Srv { port: 8080, weight: 50, target, .. } if target.ends_with(".nginx.default.svc.cluster.local"))));
        assert_eq!(additionals.len(), 2);
        assert_eq!(
            answers_of(&z, "5.0.42.10.in-addr.arpa", QType::Ptr),
            [RData::Ptr("web-0.nginx.default.svc.cluster.local".into())]
        );
        // A headless Service without ready endpoints has no name.
        assert_eq!(
            z.answer("empty.default.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
    }

    #[test]
    fn external_names_pods_and_negative_answers() {
        let z = zone();
        assert_eq!(
            answers_of(&z, "db.team.svc.cluster.local", QType::A),
            [RData::Cname("db.example.com".into())]
        );
        assert_eq!(
            answers_of(&z, "10-42-0-9.team.pod.cluster.local", QType::A),
            [RData::A(Ipv4Addr::new(10, 42, 0, 9))]
        );
        // The namespace must exist; the name must be an address.
        assert_eq!(
            z.answer("10-42-0-9.nope.pod.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(
            z.answer("x-y.team.pod.cluster.local", QType::A),
            Answer::NxDomain
        );
        // An existing name without that type: NODATA; intermediate names exist.
        assert_eq!(
            z.answer("web.default.svc.cluster.local", QType::Aaaa),
            Answer::NoData
        );
        for n in [
            "cluster.local",
            "svc.cluster.local",
            "default.svc.cluster.local",
            "pod.cluster.local",
            "nginx.default.svc.cluster.local",
        ] {
            assert_eq!(z.answer(n, QType::Aaaa), Answer::NoData, "{n}");
        }
        assert_eq!(
            z.answer("nope.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
        assert_eq!(
            z.answer("nothere.default.svc.cluster.local", QType::A),
            Answer::NxDomain
        );
        // Not the zone's: forwarded.
        assert_eq!(z.answer("example.com", QType::A), Answer::NotMine);
        assert_eq!(
            z.answer("1.2.0.192.in-addr.arpa", QType::Ptr),
            Answer::NotMine
        );
        assert_eq!(
            answers_of(&z, "dns-version.cluster.local", QType::Txt),
            [RData::Txt("1.1.0".into())]
        );
        let soa = z.soa();
        assert_eq!(
            (
                soa.mname.as_str(),
                soa.rname.as_str(),
                soa.serial,
                soa.minimum
            ),
            ("ns.dns.cluster.local", "hostmaster.cluster.local", 7, 5)
        );
    }

    #[test]
    fn external_names_inside_the_zone_are_chased() {
        let ext = |name: &str, target: &str| {
            svc(json!({"metadata": {"name": name, "namespace": "team"},
                "spec": {"type": "ExternalName", "externalName": target}}))
        };
        let services = vec![
            svc(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.43.12.34"}})),
            ext("alias", "Web.Default.svc.cluster.local."),
            ext("twice", "alias.team.svc.cluster.local"),
            ext("pod", "10-42-0-9.default.pod.cluster.local"),
            ext("gone", "nothere.default.svc.cluster.local"),
            ext("outside", "db.example.com"),
            ext("loop-a", "loop-b.team.svc.cluster.local"),
            ext("loop-b", "loop-a.team.svc.cluster.local"),
        ];
        let z = ClusterZone::build(
            "cluster.local",
            &services,
            &[],
            &["default".into(), "team".into()],
            1,
        );
        let web = RData::A(Ipv4Addr::new(10, 43, 12, 34));
        let to = |n: &str| RData::Cname(n.into());
        assert_eq!(
            answers_of(&z, "alias.team.svc.cluster.local", QType::A),
            [to("web.default.svc.cluster.local"), web.clone()]
        );
        assert_eq!(
            answers_of(&z, "twice.team.svc.cluster.local", QType::A),
            [
                to("alias.team.svc.cluster.local"),
                to("web.default.svc.cluster.local"),
                web
            ]
        );
        assert_eq!(
            answers_of(&z, "pod.team.svc.cluster.local", QType::A),
            [
                to("10-42-0-9.default.pod.cluster.local"),
                RData::A(Ipv4Addr::new(10, 42, 0, 9))
            ]
        );
        // No AAAA at the target: the CNAME alone (CoreDNS's answer too).
        assert_eq!(
            answers_of(&z, "alias.team.svc.cluster.local", QType::Aaaa),
            [to("web.default.svc.cluster.local")]
        );
        // Asked for the CNAME itself: not chased.
        assert_eq!(
            answers_of(&z, "alias.team.svc.cluster.local", QType::Cname),
            [to("web.default.svc.cluster.local")]
        );
        // A missing target, a target outside the zone (the server's forwarder chases
        // that one), and a loop end the chain.
        assert_eq!(
            answers_of(&z, "gone.team.svc.cluster.local", QType::A),
            [to("nothere.default.svc.cluster.local")]
        );
        assert_eq!(
            answers_of(&z, "outside.team.svc.cluster.local", QType::A),
            [to("db.example.com")]
        );
        assert_eq!(
            answers_of(&z, "loop-a.team.svc.cluster.local", QType::A),
            [
                to("loop-b.team.svc.cluster.local"),
                to("loop-a.team.svc.cluster.local")
            ]
        );
    }
}
