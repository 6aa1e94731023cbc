//! Test helpers: a client over UDP and TCP, and fake upstream servers on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub fn query(id: u16, name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_str(name).unwrap(), t));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Send raw bytes over UDP; the raw answer, or None after a second.
pub fn udp_raw(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(packet, server).unwrap();
    let mut buf = [0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

pub fn udp(server: SocketAddr, packet: &[u8]) -> Message {
    Message::from_vec(&udp_raw(server, packet).expect("no answer over UDP")).unwrap()
}

pub fn tcp_raw(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = (packet.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(packet);
    s.write_all(&out).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

pub fn tcp(server: SocketAddr, packet: &[u8]) -> Message {
    Message::from_vec(&tcp_raw(server, packet)).unwrap()
}

/// How a fake upstream answers a query (None: silence).
pub type Behaviour = Arc<dyn Fn(&Message) -> Option<Message> + Send + Sync>;

/// A fake upstream resolver on a loopback address, counting what it is asked.
pub struct Fake {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The answer skeleton to `q`: same id and question, QR and RA set.
pub fn reply_to(q: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError);
    for x in q.queries() {
        m.add_query(x.clone());
    }
    if let Some(e) = q.extensions() {
        m.set_edns(e.clone());
    }
    m
}

/// Start a fake upstream on `ip` (port chosen by the system, the same for UDP and
/// TCP), answering UDP with `udp` and TCP with `tcp`.
pub fn fake(ip: &str, udp: Behaviour, tcp: Behaviour) -> Fake {
    let (us, ts) = loop {
        let us = UdpSocket::bind((ip, 0)).unwrap();
        if let Ok(ts) = TcpListener::bind(us.local_addr().unwrap()) {
            break (us, ts);
        }
    };
    let addr = us.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (uq, tq) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut threads = Vec::new();
    {
        let (stop, uq) = (stop.clone(), uq.clone());
        us.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = us.recv_from(&mut buf) else {
                    continue;
                };
                uq.fetch_add(1, Ordering::SeqCst);
                let q = Message::from_vec(&buf[..n]).unwrap();
                if let Some(r) = udp(&q) {
                    us.send_to(&r.to_vec().unwrap(), from).unwrap();
                }
            }
        }));
    }
    {
        let (stop, tq) = (stop.clone(), tq.clone());
        ts.set_nonblocking(true).unwrap();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = ts.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
                if c.read_exact(&mut b).is_err() {
                    continue;
                }
                tq.fetch_add(1, Ordering::SeqCst);
                let q = Message::from_vec(&b).unwrap();
                if let Some(r) = tcp(&q) {
                    let r = r.to_vec().unwrap();
                    let mut out = (r.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&r);
                    let _ = c.write_all(&out);
                }
            }
        }));
    }
    Fake {
        addr,
        udp_queries: uq,
        tcp_queries: tq,
        stop,
        threads,
    }
}

pub fn silent() -> Behaviour {
    Arc::new(|_| None)
}
