//! The forwarder against fake upstreams written here, on 127.0.0.x addresses: the
//! cache (id rewritten, TTL lowered, negative answers, caps), TCP retry on TC,
//! failover, SERVFAIL, loop refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use skiff_dns::{zone::Nothing, Config, Forwarder, Options, Server};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn opts() -> Options {
    Options {
        timeout: Duration::from_millis(300),
        ..Options::default()
    }
}

fn serve(upstreams: Vec<SocketAddr>, o: Options) -> skiff_dns::Running {
    Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Nothing),
        Some(Forwarder::new(upstreams, o)),
        Config::default(),
    )
    .unwrap()
    .start()
    .unwrap()
}

/// Answers every A question with `ip`, TTL `ttl`.
fn a_answer(ip: [u8; 4], ttl: u32) -> Behaviour {
    Arc::new(move |q: &Message| {
        let mut r = reply_to(q);
        let name = q.queries()[0].name().clone();
        r.add_answer(Record::from_rdata(
            name,
            ttl,
            RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
        ));
        Some(r)
    })
}

fn nxdomain(soa: Option<(u32, u32)>) -> Behaviour {
    Arc::new(move |q: &Message| {
        let mut r = reply_to(q);
        r.set_response_code(ResponseCode::NXDomain);
        if let Some((ttl, minimum)) = soa {
            let zone = Name::from_str("example.").unwrap();
            r.add_name_server(Record::from_rdata(
                zone.clone(),
                ttl,
                RData::SOA(SOA::new(zone.clone(), zone, 1, 60, 60, 60, minimum)),
            ));
        }
        Some(r)
    })
}

fn servfail() -> Behaviour {
    Arc::new(|q: &Message| {
        let mut r = reply_to(q);
        r.set_response_code(ResponseCode::ServFail);
        Some(r)
    })
}

#[test]
fn cache_hits_rewrite_the_id_and_lower_the_ttl() {
    let up = fake("127.0.0.21", a_answer([192, 0, 2, 1], 20), silent());
    let srv = serve(vec![up.addr], opts());
    let a = srv.local_addr();
    let m = udp(a, &query(100, "host.example.", RecordType::A, None));
    assert_eq!(m.id(), 100);
    assert_eq!(m.answers()[0].data(), &RData::A(A::new(192, 0, 2, 1)));
    assert_eq!(m.answers()[0].ttl(), 20);
    // The upstream's OPT (we asked with EDNS) does not reach a client without it.
    assert!(m.extensions().is_none());
    std::thread::sleep(Duration::from_millis(1100));
    // Another case, another id: from the cache, question as sent.
    let mut q = query(200, "host.example.", RecordType::A, Some(1232));
    q[13] = b'H';
    let raw = udp_raw(a, &q).unwrap();
    assert_eq!(&raw[12..q.len() - 11], &q[12..q.len() - 11]);
    let m = Message::from_vec(&raw).unwrap();
    assert_eq!(m.id(), 200);
    let ttl = m.answers()[0].ttl();
    assert!(ttl == 19 || ttl == 18, "ttl {ttl}");
    assert!(m.extensions().is_some());
    // Over TCP too.
    let m = tcp(a, &query(300, "host.example.", RecordType::A, None));
    assert_eq!(m.id(), 300);
    assert_eq!(m.answers().len(), 1);
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    // Another type is another key.
    let _ = udp(a, &query(301, "host.example.", RecordType::AAAA, None));
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 2);
}

#[test]
fn positive_ttls_are_capped() {
    let up = fake("127.0.0.22", a_answer([192, 0, 2, 2], 3600), silent());
    let srv = serve(
        vec![up.addr],
        Options {
            max_ttl: 1,
            ..opts()
        },
    );
    let a = srv.local_addr();
    let m = udp(a, &query(1, "capped.example.", RecordType::A, None));
    assert_eq!(m.answers()[0].ttl(), 1);
    let _ = udp(a, &query(2, "capped.example.", RecordType::A, None));
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let _ = udp(a, &query(3, "capped.example.", RecordType::A, None));
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 2);
}

#[test]
fn negative_answers_are_cached_by_the_soa_minimum() {
    let up = fake("127.0.0.23", nxdomain(Some((60, 1))), silent());
    let srv = serve(vec![up.addr], opts());
    let a = srv.local_addr();
    for id in [1, 2] {
        let m = udp(a, &query(id, "gone.example.", RecordType::A, None));
        assert_eq!(m.id(), id);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(m.name_servers()[0].ttl(), 1);
    }
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let _ = udp(a, &query(3, "gone.example.", RecordType::A, None));
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 2);
    // Without an SOA a negative answer is not kept.
    let bare = fake("127.0.0.24", nxdomain(None), silent());
    let srv = serve(vec![bare.addr], opts());
    for id in [1, 2] {
        let m = udp(
            srv.local_addr(),
            &query(id, "gone.example.", RecordType::A, None),
        );
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
    }
    assert_eq!(bare.udp_queries.load(Ordering::SeqCst), 2);
    // Negative answers are capped as well.
    let long = fake("127.0.0.25", nxdomain(Some((3600, 3600))), silent());
    let srv = serve(vec![long.addr], opts());
    let m = udp(
        srv.local_addr(),
        &query(1, "gone.example.", RecordType::A, None),
    );
    assert_eq!(m.name_servers()[0].ttl(), 30);
}

#[test]
fn a_truncated_upstream_answer_is_asked_again_over_tcp() {
    let tc: Behaviour = Arc::new(|q: &Message| {
        let mut r = reply_to(q);
        r.set_truncated(true);
        Some(r)
    });
    let many: Behaviour = Arc::new(|q: &Message| {
        let mut r = reply_to(q);
        let name = q.queries()[0].name().clone();
        for i in 0..60u8 {
            r.add_answer(Record::from_rdata(
                name.clone(),
                30,
                RData::A(A::new(10, 9, 0, i)),
            ));
        }
        Some(r)
    });
    let up = fake("127.0.0.26", tc, many);
    let srv = serve(vec![up.addr], opts());
    let a = srv.local_addr();
    // An EDNS client gets all of it over UDP.
    let m = udp(a, &query(1, "big.example.", RecordType::A, Some(4096)));
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 60);
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
    // A 512-byte client gets TC, then the whole over TCP, from the cache.
    let m = udp(a, &query(2, "big.example.", RecordType::A, None));
    assert!(m.truncated());
    assert!(m.answers().is_empty());
    let m = tcp(a, &query(3, "big.example.", RecordType::A, None));
    assert_eq!(m.answers().len(), 60);
    assert_eq!(m.id(), 3);
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
}

#[test]
fn failover_to_the_next_upstream() {
    let dead = fake("127.0.0.27", silent(), silent());
    let failing = fake("127.0.0.28", servfail(), silent());
    let good = fake("127.0.0.29", a_answer([192, 0, 2, 9], 10), silent());
    let srv = serve(vec![dead.addr, failing.addr, good.addr], opts());
    let start = Instant::now();
    let m = udp(
        srv.local_addr(),
        &query(1, "x.example.", RecordType::A, None),
    );
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers()[0].data(), &RData::A(A::new(192, 0, 2, 9)));
    // One timeout's worth of waiting, not more.
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    for f in [&dead, &failing, &good] {
        assert_eq!(f.udp_queries.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn servfail_when_every_upstream_fails() {
    let dead = fake("127.0.0.30", silent(), silent());
    let failing = fake("127.0.0.31", servfail(), silent());
    let srv = serve(vec![dead.addr, failing.addr], opts());
    let m = udp(
        srv.local_addr(),
        &query(42, "x.example.", RecordType::A, None),
    );
    assert_eq!(m.id(), 42);
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_eq!(m.queries().len(), 1);
    // SERVFAIL is not cached.
    let _ = udp(
        srv.local_addr(),
        &query(43, "x.example.", RecordType::A, None),
    );
    assert_eq!(failing.udp_queries.load(Ordering::SeqCst), 2);
}

#[test]
fn never_forwards_to_itself() {
    // Find a free port, then serve there with ourselves as the only upstream.
    let probe = std::net::UdpSocket::bind("127.0.0.32:0").unwrap();
    let own = probe.local_addr().unwrap();
    drop(probe);
    let srv = Server::bind(
        own,
        Arc::new(Nothing),
        Some(Forwarder::new(
            vec![own],
            Options {
                timeout: Duration::from_secs(2),
                ..Options::default()
            },
        )),
        Config::default(),
    )
    .unwrap()
    .start()
    .unwrap();
    let start = Instant::now();
    let m = udp(
        srv.local_addr(),
        &query(7, "loop.example.", RecordType::A, None),
    );
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    // At once: nothing was sent anywhere.
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[test]
fn loops_through_the_wildcard_address_are_refused_too() {
    let mut f = Forwarder::new(
        vec![
            "127.0.0.1:5353".parse().unwrap(),
            "127.0.0.53:53".parse().unwrap(),
            "10.0.0.1:5353".parse().unwrap(),
        ],
        Options::default(),
    );
    f.refuse_loops("0.0.0.0:5353".parse().unwrap());
    assert_eq!(
        f.upstreams(),
        &[
            "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
            "10.0.0.1:5353".parse().unwrap()
        ]
    );
}

/// A zone for `zone.test` with `alias` (CNAME out of it, to `host.example.`),
/// `inside` (CNAME to `web`, in it) and `web` (A 10.43.0.7).
fn aliases() -> skiff_dns::Table {
    use hickory_proto::rr::rdata::CNAME;
    let apex = Name::from_str("zone.test.").unwrap();
    let mut t = skiff_dns::Table::with_apex(&apex, skiff_dns::zone::soa(&apex, 1, 5).unwrap());
    let n = |s: &str| Name::from_str(s).unwrap();
    t.add(Record::from_rdata(
        n("alias.zone.test."),
        5,
        RData::CNAME(CNAME(n("Host.Example."))),
    ));
    t.add(Record::from_rdata(
        n("inside.zone.test."),
        5,
        RData::CNAME(CNAME(n("web.zone.test."))),
    ));
    t.add(Record::from_rdata(
        n("web.zone.test."),
        5,
        RData::A(A::new(10, 43, 0, 7)),
    ));
    t
}

/// Answers A questions with `ip` (TTL 20), anything else with no records.
fn only_a(ip: [u8; 4]) -> Behaviour {
    Arc::new(move |q: &Message| {
        let mut r = reply_to(q);
        if q.queries()[0].query_type() == RecordType::A {
            let name = q.queries()[0].name().clone();
            r.add_answer(Record::from_rdata(
                name,
                20,
                RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
            ));
        }
        Some(r)
    })
}

#[test]
fn a_cname_out_of_the_zone_is_chased_through_the_forwarder() {
    let up = fake("127.0.0.33", only_a([192, 0, 2, 9]), silent());
    let srv = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(aliases()),
        Some(Forwarder::new(vec![up.addr], opts())),
        Config::default(),
    )
    .unwrap()
    .start()
    .unwrap();
    let a = srv.local_addr();
    let target = Name::from_str("host.example.").unwrap();
    let check = |m: &Message| {
        assert_eq!(m.response_code(), ResponseCode::NoError);
        let got: Vec<(String, RecordType)> = m
            .answers()
            .iter()
            .map(|r| (r.name().to_lowercase().to_string(), r.record_type()))
            .collect();
        assert_eq!(
            got,
            [
                ("alias.zone.test.".to_string(), RecordType::CNAME),
                ("host.example.".to_string(), RecordType::A)
            ]
        );
        assert_eq!(m.answers()[1].data(), &RData::A(A::new(192, 0, 2, 9)));
        assert_eq!(m.answers()[1].name(), &target);
    };
    check(&udp(a, &query(1, "alias.zone.test.", RecordType::A, None)));
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    // The target's answer is cached: the next ones, over UDP and TCP, ask no one.
    check(&udp(
        a,
        &query(2, "ALIAS.zone.test.", RecordType::A, Some(1232)),
    ));
    check(&tcp(a, &query(3, "alias.zone.test.", RecordType::A, None)));
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    // The target without such records: the CNAME alone.
    let m = udp(a, &query(4, "alias.zone.test.", RecordType::AAAA, None));
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 1);
    assert_eq!(m.answers()[0].record_type(), RecordType::CNAME);
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 2);
    // Other types, and CNAMEs the zone answers itself, are not forwarded.
    let m = udp(a, &query(5, "alias.zone.test.", RecordType::CNAME, None));
    assert_eq!(m.answers().len(), 1);
    let m = udp(a, &query(6, "inside.zone.test.", RecordType::A, None));
    assert_eq!(m.answers().len(), 2);
    assert_eq!(m.answers()[1].data(), &RData::A(A::new(10, 43, 0, 7)));
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 2);
}

#[test]
fn a_chased_cname_goes_alone_when_upstreams_fail() {
    let up = fake("127.0.0.34", silent(), silent());
    let srv = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(aliases()),
        Some(Forwarder::new(vec![up.addr], opts())),
        Config::default(),
    )
    .unwrap()
    .start()
    .unwrap();
    let started = Instant::now();
    let m = udp(
        srv.local_addr(),
        &query(7, "alias.zone.test.", RecordType::A, None),
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 1);
    assert_eq!(m.answers()[0].record_type(), RecordType::CNAME);
}
