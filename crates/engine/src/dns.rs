//! The embedded DNS of user-defined networks, as docker's: served at 127.0.0.11
//! inside each container on such a network (by the container's helper process),
//! answering the names, aliases and short ids of running containers that share a
//! network with it, and forwarding everything else to the host's resolvers. The
//! server, the forwarder and its cache are skiff-dns's; this module is the zone.

use crate::persist::read_json;
use crate::state::{NetPlan, Record, State};
use hickory_proto::rr::{rdata::A, DNSClass, RData, Record as RR, RecordType};
use skiff_dns::{Answer, Config, Forwarder, Options, Query, ResolvConf, Server, Zone};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Look `name` up among the running containers of `root` on `networks`.
pub fn lookup(root: &Path, networks: &[String], name: &str) -> Option<Ipv4Addr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let rd = std::fs::read_dir(root.join("containers")).ok()?;
    for e in rd.flatten() {
        let dir = e.path();
        let Ok(st) = read_json::<State>(&dir.join("state.json")) else {
            continue;
        };
        if !st.status.is_active() {
            continue;
        }
        let Ok(plan) = read_json::<NetPlan>(&dir.join("net.json")) else {
            continue;
        };
        let Ok(rec) = read_json::<Record>(&dir.join("config.json")) else {
            continue;
        };
        for a in &plan.attachments {
            if !networks.contains(&a.network) {
                continue;
            }
            let hit = rec.name.to_ascii_lowercase() == name
                || rec.id.get(..12) == Some(name.as_str())
                || rec.hostname.to_ascii_lowercase() == name
                || a.aliases.iter().any(|x| x.to_ascii_lowercase() == name);
            if hit {
                return Some(a.ip);
            }
        }
    }
    None
}

/// The host's resolvers, skipping loopback ones (a resolver on the host's loopback
/// is not meant for containers).
pub fn host_upstreams() -> Vec<SocketAddr> {
    ResolvConf::read(Path::new("/etc/resolv.conf"))
        .unwrap_or_default()
        .upstreams()
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect()
}

/// The running containers' names as a DNS zone: A for a container's name, short id,
/// hostname and aliases on the networks it serves; a known name asked for another
/// type has no records (NOERROR, not NXDOMAIN); other names are not its business
/// (the server forwards them).
pub struct Containers<F> {
    resolve: F,
}

impl<F: Fn(&str) -> Option<Ipv4Addr> + Send + Sync> Containers<F> {
    pub fn new(resolve: F) -> Self {
        Containers { resolve }
    }
}

impl<F: Fn(&str) -> Option<Ipv4Addr> + Send + Sync> Zone for Containers<F> {
    fn answer(&self, q: &Query<'_>) -> Answer {
        if q.qclass != DNSClass::IN || q.name.is_empty() {
            return Answer::NotMine;
        }
        match ((self.resolve)(q.name), q.qtype) {
            (Some(ip), RecordType::A) => match q.owner() {
                Ok(owner) => Answer::records(vec![RR::from_rdata(owner, 600, RData::A(A(ip)))]),
                Err(_) => Answer::NotMine,
            },
            (Some(_), _) => Answer::NoData { soa: None },
            (None, _) => Answer::NotMine,
        }
    }
}

/// Serve the embedded DNS on sockets bound at 127.0.0.11:53 in a container's network
/// namespace, until the process ends: the containers of `networks` under `root`,
/// everything else forwarded to the host's resolvers (with a cache).
pub fn serve(
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    root: PathBuf,
    networks: Vec<String>,
) -> std::io::Result<()> {
    let zone = Containers::new(move |name: &str| lookup(&root, &networks, name));
    let forwarder = Forwarder::new(host_upstreams(), Options::default());
    // One container's queries: one UDP thread is plenty.
    let config = Config {
        udp_workers: 1,
        ..Config::default()
    };
    Server::from_sockets(udp, tcp, Arc::new(zone), Some(forwarder), config).run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(77).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn answer(packet: &[u8], zone: &dyn Zone) -> Option<Vec<u8>> {
        skiff_dns::answer_packet(zone, packet, 512)
    }

    #[test]
    fn answers_known_names_and_defers_the_rest() {
        let resolve = Containers::new(|n: &str| {
            if n.trim_end_matches('.') == "db" {
                Some(Ipv4Addr::new(10, 5, 0, 3))
            } else {
                None
            }
        });
        let r = answer(&query("db.", RecordType::A), &resolve).unwrap();
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.id(), 77);
        assert!(m.authoritative());
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.answers()[0].ttl(), 600);
        assert_eq!(
            m.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 5, 0, 3)))
        );
        let r = answer(&query("db.", RecordType::AAAA), &resolve).unwrap();
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(m.answers().len(), 0);
        // Case does not matter.
        let mut p = query("db.", RecordType::A);
        p[13] = b'D';
        let r = answer(&p, &resolve).unwrap();
        assert_eq!(Message::from_vec(&r).unwrap().answers().len(), 1);
        assert!(answer(&query("example.org.", RecordType::A), &resolve).is_none());
    }
}
