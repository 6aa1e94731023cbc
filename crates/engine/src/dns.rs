//! The embedded DNS of user-defined networks, as docker's: served at 127.0.0.11
//! inside each container on such a network (by the container's helper process),
//! answering the names, aliases and short ids of running containers that share a
//! network with it, and forwarding everything else to the host's resolvers.

use crate::persist::read_json;
use crate::state::{NetPlan, Record, State};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record as RR, RecordType};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The host's resolvers, skipping loopback ones (unreachable from here anyway).
pub fn host_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse::<std::net::IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Answer one query packet; None when it should be forwarded upstream.
pub fn answer(packet: &[u8], resolve: &dyn Fn(&str) -> Option<Ipv4Addr>) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    let q = req.queries().first()?.clone();
    let name = q.name().to_ascii();
    let ip = resolve(&name);
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .add_query(q.clone());
    match (ip, q.query_type()) {
        (Some(ip), RecordType::A) => {
            resp.set_authoritative(true);
            resp.add_answer(RR::from_rdata(q.name().clone(), 600, RData::A(A(ip))));
        }
        // A known name without an address of this type: empty answer, not NXDOMAIN.
        (Some(_), _) => {
            resp.set_authoritative(true);
        }
        (None, _) => return None,
    }
    resp.set_response_code(ResponseCode::NoError);
    resp.to_vec().ok()
}

fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_response_code(ResponseCode::ServFail);
    for q in req.queries() {
        resp.add_query(q.clone());
    }
    resp.to_vec().ok()
}

/// Serve queries arriving on `sock` forever.
pub fn serve(sock: UdpSocket, root: PathBuf, networks: Vec<String>) {
    let upstreams = host_upstreams();
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let packet = buf[..n].to_vec();
        let resolve = |name: &str| lookup(&root, &networks, name);
        if let Some(reply) = answer(&packet, &resolve) {
            let _ = sock.send_to(&reply, from);
            continue;
        }
        let sock2 = match sock.try_clone() {
            Ok(s) => s,
            Err(_) => continue,
        };
        let ups = upstreams.clone();
        std::thread::spawn(move || {
            let reply = forward(&packet, &ups).or_else(|| servfail(&packet));
            if let Some(r) = reply {
                let _ = sock2.send_to(&r, from);
            }
        });
    }
}

fn forward(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let Ok(s) = UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if s.send_to(packet, up).is_err() {
            continue;
        }
        let mut b = [0u8; 4096];
        if let Ok((n, _)) = s.recv_from(&mut b) {
            return Some(b[..n].to_vec());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(77).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_known_names_and_defers_the_rest() {
        let resolve = |n: &str| {
            if n.trim_end_matches('.') == "db" {
                Some(Ipv4Addr::new(10, 5, 0, 3))
            } else {
                None
            }
        };
        let r = answer(&query("db.", RecordType::A), &resolve).unwrap();
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.id(), 77);
        assert_eq!(m.answers().len(), 1);
        assert_eq!(
            m.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 5, 0, 3)))
        );
        let r = answer(&query("db.", RecordType::AAAA), &resolve).unwrap();
        assert_eq!(Message::from_vec(&r).unwrap().answers().len(), 0);
        assert!(answer(&query("example.org.", RecordType::A), &resolve).is_none());
    }
}
