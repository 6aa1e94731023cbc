//! The server over real sockets on loopback: every answer type, case, truncation and
//! TCP, EDNS sizes, malformed input, TCP limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use skiff_dns::{zone, Config, Server, Table};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn n(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn test_zone() -> Table {
    let apex = n("test.local.");
    let mut t = Table::with_apex(&apex, zone::soa(&apex, 7, 5).unwrap());
    let web = n("web.ns.svc.test.local.");
    t.add(Record::from_rdata(
        web.clone(),
        5,
        RData::A(A::new(10, 43, 0, 7)),
    ));
    for i in 0..60u8 {
        t.add(Record::from_rdata(
            n("many.ns.svc.test.local."),
            5,
            RData::A(A::new(10, 42, 1, i)),
        ));
    }
    for (host, ip) in [("web-0", 5u8), ("web-1", 6)] {
        let h = n(&format!("{host}.web.ns.svc.test.local."));
        t.add(Record::from_rdata(
            h.clone(),
            5,
            RData::A(A::new(10, 42, 0, ip)),
        ));
        t.add(Record::from_rdata(
            n("_http._tcp.web.ns.svc.test.local."),
            5,
            RData::SRV(SRV::new(0, 50, 80, h)),
        ));
    }
    t.add(Record::from_rdata(
        n("7.0.43.10.in-addr.arpa."),
        5,
        RData::PTR(PTR(web.clone())),
    ));
    t.add(Record::from_rdata(
        n("ext.ns.svc.test.local."),
        5,
        RData::CNAME(CNAME(n("example.org."))),
    ));
    t.add(Record::from_rdata(
        n("alias.ns.svc.test.local."),
        5,
        RData::CNAME(CNAME(web)),
    ));
    t
}

fn serve(config: Config) -> skiff_dns::Running {
    Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(test_zone()),
        None,
        config,
    )
    .unwrap()
    .start()
    .unwrap()
}

fn ask(s: SocketAddr, name: &str, t: RecordType) -> Message {
    let m = udp(s, &query(99, name, t, None));
    assert_eq!(m.id(), 99);
    m
}

#[test]
fn a_records_are_authoritative_and_case_insensitive() {
    let srv = serve(Config::default());
    let a = srv.local_addr();
    let m = ask(a, "web.ns.svc.test.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative());
    assert_eq!(m.answers().len(), 1);
    assert_eq!(m.answers()[0].data(), &RData::A(A::new(10, 43, 0, 7)));
    assert_eq!(m.answers()[0].ttl(), 5);
    // Mixed case (0x20): answered, and the question comes back byte for byte.
    let mut q = query(5, "web.ns.svc.test.local.", RecordType::A, None);
    q[13] = b'W';
    q[18] = b'S';
    let raw = udp_raw(a, &q).unwrap();
    assert_eq!(&raw[12..q.len()], &q[12..]);
    let m = Message::from_vec(&raw).unwrap();
    assert_eq!(m.answers().len(), 1);
}

#[test]
fn nodata_and_nxdomain_carry_the_soa() {
    let srv = serve(Config::default());
    let a = srv.local_addr();
    // A name that exists, asked for another type: NOERROR, nothing, SOA.
    let m = ask(a, "web.ns.svc.test.local.", RecordType::AAAA);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.answers().is_empty());
    assert_eq!(m.name_servers().len(), 1);
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
    assert_eq!(m.name_servers()[0].name().to_string(), "test.local.");
    // A parent of existing names: NODATA too.
    let m = ask(a, "ns.svc.test.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.name_servers().len(), 1);
    // A missing name in the zone.
    let m = ask(a, "nope.ns.svc.test.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(m.authoritative());
    assert!(m.answers().is_empty());
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
    // Not ours, no forwarder: REFUSED.
    let m = ask(a, "example.org.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::Refused);
}

#[test]
fn srv_ptr_and_cname() {
    let srv = serve(Config::default());
    let a = srv.local_addr();
    let m = ask(a, "_http._tcp.web.ns.svc.test.local.", RecordType::SRV);
    assert_eq!(m.answers().len(), 2);
    let mut targets: Vec<String> = m
        .answers()
        .iter()
        .map(|r| match r.data() {
            RData::SRV(s) => {
                assert_eq!((s.priority(), s.weight(), s.port()), (0, 50, 80));
                s.target().to_string()
            }
            d => panic!("not SRV: {d:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "web-0.web.ns.svc.test.local.",
            "web-1.web.ns.svc.test.local."
        ]
    );
    let mut extra: Vec<(String, RData)> = m
        .additionals()
        .iter()
        .map(|r| (r.name().to_string(), r.data().clone()))
        .collect();
    extra.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        extra,
        [
            (
                "web-0.web.ns.svc.test.local.".to_string(),
                RData::A(A::new(10, 42, 0, 5))
            ),
            (
                "web-1.web.ns.svc.test.local.".to_string(),
                RData::A(A::new(10, 42, 0, 6))
            )
        ]
    );
    let m = ask(a, "7.0.43.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        m.answers()[0].data(),
        &RData::PTR(PTR(n("web.ns.svc.test.local.")))
    );
    // A CNAME out of the zone: the CNAME alone.
    let m = ask(a, "ext.ns.svc.test.local.", RecordType::A);
    assert_eq!(m.answers().len(), 1);
    assert_eq!(
        m.answers()[0].data(),
        &RData::CNAME(CNAME(n("example.org.")))
    );
    // A CNAME into the zone: the CNAME, then the target's address.
    let m = ask(a, "alias.ns.svc.test.local.", RecordType::A);
    assert_eq!(m.answers().len(), 2);
    assert_eq!(m.answers()[1].data(), &RData::A(A::new(10, 43, 0, 7)));
}

#[test]
fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let srv = serve(Config::default());
    let a = srv.local_addr();
    let name = "many.ns.svc.test.local.";
    // No EDNS: 512 bytes at most, so TC and nothing.
    let raw = udp_raw(a, &query(1, name, RecordType::A, None)).unwrap();
    assert!(raw.len() <= 512);
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.truncated());
    assert!(m.answers().is_empty());
    assert_eq!(m.queries().len(), 1);
    // The same over TCP: all 60.
    let m = tcp(a, &query(2, name, RecordType::A, None));
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 60);
    assert_eq!(m.id(), 2);
    // EDNS 4096: fits under our 1232 ceiling (60 x 16 bytes), with our OPT.
    let raw = udp_raw(a, &query(3, name, RecordType::A, Some(4096))).unwrap();
    assert!(raw.len() <= 1232);
    let m = Message::from_vec(&raw).unwrap();
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 60);
    assert_eq!(m.extensions().as_ref().unwrap().max_payload(), 1232);
    // EDNS 800: too small, TC, OPT kept.
    let m = udp(a, &query(4, name, RecordType::A, Some(800)));
    assert!(m.truncated());
    assert!(m.extensions().is_some());
    // Our own ceiling applies too.
    drop(srv);
    let srv = serve(Config {
        max_udp_payload: 700,
        ..Config::default()
    });
    let m = udp(srv.local_addr(), &query(5, name, RecordType::A, Some(4096)));
    assert!(m.truncated());
    // A query without EDNS gets no OPT back.
    let m = udp(
        srv.local_addr(),
        &query(6, "web.ns.svc.test.local.", RecordType::A, None),
    );
    assert!(m.extensions().is_none());
}

#[test]
fn malformed_queries_get_formerr_or_nothing_and_the_server_lives_on() {
    let srv = serve(Config::default());
    let a = srv.local_addr();
    // Shorter than a header: no answer.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(&[1, 2, 3], a).unwrap();
    // A header claiming a question that is not there: FORMERR with the id.
    let mut bad = query(77, "web.ns.svc.test.local.", RecordType::A, None);
    bad.truncate(16);
    let m = udp(a, &bad);
    assert_eq!(m.id(), 77);
    assert_eq!(m.response_code(), ResponseCode::FormErr);
    // Garbage of many shapes, over UDP and TCP.
    let mut x: u32 = 99;
    for len in (0..600).step_by(7) {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        s.send_to(&junk, a).unwrap();
    }
    let mut c = TcpStream::connect(a).unwrap();
    c.write_all(&[0, 5, 1, 2, 3, 4, 5]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 64];
    // A packet too short for a header: the connection is closed.
    assert_eq!(c.read(&mut b).unwrap_or(0), 0);
    // Still serving.
    let m = ask(a, "web.ns.svc.test.local.", RecordType::A);
    assert_eq!(m.answers().len(), 1);
}

#[test]
fn tcp_connections_are_bounded_and_idle_ones_closed() {
    let srv = serve(Config {
        max_tcp_connections: 2,
        tcp_idle_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let a = srv.local_addr();
    let c1 = TcpStream::connect(a).unwrap();
    let c2 = TcpStream::connect(a).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // The third is closed at once.
    let mut c3 = TcpStream::connect(a).unwrap();
    c3.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 16];
    assert_eq!(c3.read(&mut b).unwrap_or(0), 0);
    // An idle one is closed after the timeout, freeing its slot.
    let start = Instant::now();
    let mut c1r = c1.try_clone().unwrap();
    c1r.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(c1r.read(&mut b).unwrap_or(0), 0);
    assert!(start.elapsed() < Duration::from_secs(2));
    drop((c1, c2));
    std::thread::sleep(Duration::from_millis(400));
    let m = tcp(a, &query(8, "web.ns.svc.test.local.", RecordType::A, None));
    assert_eq!(m.answers().len(), 1);
    // Several queries on one connection, answered in order.
    let mut c = TcpStream::connect(a).unwrap();
    for id in [11u16, 12] {
        let q = query(id, "web.ns.svc.test.local.", RecordType::A, None);
        let mut out = (q.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&q);
        c.write_all(&out).unwrap();
    }
    for id in [11u16, 12] {
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut body).unwrap();
        assert_eq!(Message::from_vec(&body).unwrap().id(), id);
    }
}
