//! The server loop: UDP and TCP on one address.
//!
//! UDP is served by a few plain threads sharing one socket, each taking the waiting
//! queries in one system call ([`crate::batch`]), asking the zone and sending the
//! answers in one more, with no allocation beyond the answers and no hand-off. Queries the zone does not own are answered from the forwarder's
//! cache on the same thread, or handed to a small tokio runtime (one thread) that
//! waits for the upstreams and also serves TCP: one task per connection, at most
//! [`Config::max_tcp_connections`] of them, each closed after
//! [`Config::tcp_idle_timeout`] without a query. A UDP answer larger than 512 bytes
//! (or the client's EDNS size, at most ours) goes out empty with TC set; over TCP
//! the whole answer goes.
//!
//! An answer to an A or AAAA question that ends in a CNAME to a name no zone owns
//! (a Kubernetes ExternalName Service's, say) is completed as CoreDNS completes it:
//! the target's records of that type are asked of the forwarder (its cache first)
//! and follow the CNAME; when the forwarder has none, the CNAME goes alone.

use crate::batch::Batch;
use crate::forward::Forwarder;
use crate::wire::{self, Policy, Request, REFUSED};
use crate::zone::{Answer, Query, Zone};
use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct Config {
    /// Threads reading the UDP socket.
    pub udp_workers: usize,
    /// Our UDP payload ceiling: answers to EDNS clients are cut at min(theirs, this).
    pub max_udp_payload: u16,
    /// TCP connections served at once; more are closed on accept.
    pub max_tcp_connections: usize,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            udp_workers: 2,
            max_udp_payload: 1232,
            max_tcp_connections: 128,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// What the server answers from and how, before it runs.
pub struct Server {
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    zone: Arc<dyn Zone>,
    forwarder: Option<Forwarder>,
    config: Config,
}

/// How one query is dealt with.
enum Outcome {
    Reply(Vec<u8>),
    Forward,
    /// The zone's answer ends in a CNAME out of it: ask the forwarder `query` (for the
    /// target), append what it answers, then reply.
    Chase {
        answer: Box<Answer>,
        query: Vec<u8>,
    },
    Drop,
}

/// How many CNAMEs of a zone's answer are walked to find where it ends.
const MAX_CNAMES: usize = 16;

/// Where the CNAME chain of `answers`, from `qname`, ends without records of
/// `qtype`: the last target, if there is a CNAME and nothing answers it.
/// Names compare by [`crate::table::key`] (case and final dot ignored).
fn dangling_cname(qname: &str, qtype: RecordType, answers: &[Record]) -> Option<Name> {
    use crate::table::key;
    if !answers.iter().any(|r| r.record_type() == RecordType::CNAME) {
        return None;
    }
    let mut at = qname.to_string();
    let mut last = None;
    for _ in 0..MAX_CNAMES {
        if answers
            .iter()
            .any(|r| r.record_type() == qtype && key(r.name()) == at)
        {
            return None;
        }
        let next = answers.iter().find_map(|r| match r.data() {
            hickory_proto::rr::RData::CNAME(t) if key(r.name()) == at => Some(t.0.clone()),
            _ => None,
        });
        match next {
            Some(t) => {
                at = key(&t);
                last = Some(t);
            }
            None => break,
        }
    }
    last
}

/// `answer` with the answer records of the forwarder's `reply` (to the chased
/// target) appended; an answer it cannot read, or an error, adds nothing.
fn with_chased(mut answer: Answer, reply: Option<&[u8]>) -> Answer {
    let Some(reply) = reply else {
        return answer;
    };
    let Ok(m) = Message::from_vec(reply) else {
        return answer;
    };
    if let Answer::Records { answers, .. } = &mut answer {
        for r in m.answers() {
            if !answers.contains(r) {
                answers.push(r.clone());
            }
        }
    }
    answer
}

struct Shared {
    zone: Arc<dyn Zone>,
    forwarder: Option<Arc<Forwarder>>,
    policy: Policy,
    stop: AtomicBool,
}

impl Shared {
    fn handle(&self, packet: &[u8], tcp: bool) -> (Outcome, usize) {
        let req = match Request::parse(packet) {
            Ok(r) => r,
            Err(why) => {
                let reply = wire::malformed(packet, why, self.policy);
                return (reply.map_or(Outcome::Drop, Outcome::Reply), 0);
            }
        };
        let limit = if tcp {
            u16::MAX as usize
        } else {
            req.udp_limit(self.policy.max_udp_payload)
        };
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.zone.answer(&req.query())
        }));
        let outcome = match answer {
            Err(_) => {
                tracing::error!(name = req.name(), "the zone panicked answering");
                Outcome::Reply(wire::error(&req, wire::SERVFAIL, self.policy))
            }
            Ok(Answer::NotMine) => match &self.forwarder {
                None => Outcome::Reply(wire::error(&req, REFUSED, self.policy)),
                Some(f) => match f.cached(&req, limit, self.policy) {
                    Some(hit) => Outcome::Reply(hit),
                    None => Outcome::Forward,
                },
            },
            Ok(a) => match self.chase(&req, &a) {
                Some(query) => match self.forwarder.as_ref().and_then(|f| {
                    let q = Request::parse(&query).ok()?;
                    f.cached(&q, u16::MAX as usize, self.policy)
                }) {
                    Some(hit) => {
                        let a = with_chased(a, Some(&hit));
                        Outcome::Reply(wire::respond(&req, &a, limit, self.policy))
                    }
                    None => Outcome::Chase {
                        answer: Box::new(a),
                        query,
                    },
                },
                None => Outcome::Reply(wire::respond(&req, &a, limit, self.policy)),
            },
        };
        (outcome, limit)
    }

    /// The query for the forwarder when `answer` to `req` (A or AAAA) ends in a
    /// CNAME to a name no zone owns and there is a forwarder to ask.
    fn chase(&self, req: &Request<'_>, answer: &Answer) -> Option<Vec<u8>> {
        self.forwarder.as_ref()?;
        let q = req.query();
        if !matches!(q.qtype, RecordType::A | RecordType::AAAA) {
            return None;
        }
        let Answer::Records { answers, .. } = answer else {
            return None;
        };
        let target = dangling_cname(q.name, q.qtype, answers)?;
        let name = crate::table::key(&target);
        let theirs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.zone.answer(&Query {
                name: &name,
                qtype: q.qtype,
                qclass: DNSClass::IN,
            })
        }));
        matches!(theirs, Ok(Answer::NotMine)).then(|| wire::query_for(&target, q.qtype))
    }

    /// The reply to `packet` once the forwarder has been asked `query` (`answer`'s
    /// CNAME target).
    async fn chased(
        &self,
        packet: &[u8],
        answer: Answer,
        query: &[u8],
        limit: usize,
    ) -> Option<Vec<u8>> {
        let f = self.forwarder.as_ref()?;
        let reply = f.resolve(query, u16::MAX as usize, self.policy).await;
        let req = Request::parse(packet).ok()?;
        let a = with_chased(answer, reply.as_deref());
        Some(wire::respond(&req, &a, limit, self.policy))
    }
}

impl Server {
    /// Bind UDP and TCP on `addr` (port 0: a free port, the same for both).
    pub fn bind(
        addr: SocketAddr,
        zone: Arc<dyn Zone>,
        forwarder: Option<Forwarder>,
        config: Config,
    ) -> std::io::Result<Server> {
        let mut tries = 0;
        loop {
            let udp = UdpSocket::bind(addr)?;
            let at = udp.local_addr()?;
            match TcpListener::bind(at) {
                Ok(tcp) => {
                    return Ok(Server::from_sockets(
                        udp,
                        Some(tcp),
                        zone,
                        forwarder,
                        config,
                    ))
                }
                Err(e) if addr.port() == 0 && tries < 20 => {
                    tracing::debug!("TCP port {} taken ({e}); trying another", at.port());
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Serve on sockets bound elsewhere (in another network namespace, say).
    pub fn from_sockets(
        udp: UdpSocket,
        tcp: Option<TcpListener>,
        zone: Arc<dyn Zone>,
        forwarder: Option<Forwarder>,
        config: Config,
    ) -> Server {
        Server {
            udp,
            tcp,
            zone,
            forwarder,
            config,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Start serving on threads of our own; dropping the handle stops them.
    pub fn start(self) -> std::io::Result<Running> {
        let addr = self.udp.local_addr()?;
        let forwarder = self.forwarder.map(|mut f| {
            f.refuse_loops(addr);
            Arc::new(f)
        });
        let policy = Policy {
            recursion: forwarder.is_some(),
            max_udp_payload: self.config.max_udp_payload,
        };
        let shared = Arc::new(Shared {
            zone: self.zone,
            forwarder,
            policy,
            stop: AtomicBool::new(false),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut threads = Vec::new();
        {
            let shared = shared.clone();
            let config = self.config.clone();
            let tcp = self.tcp;
            threads.push(
                std::thread::Builder::new()
                    .name("dns-async".into())
                    .spawn(move || rt.block_on(async_side(tcp, shared, config, stop_rx)))?,
            );
        }
        self.udp
            .set_read_timeout(Some(Duration::from_millis(250)))?;
        let udp = Arc::new(self.udp);
        for i in 0..self.config.udp_workers.max(1) {
            let (udp, shared, handle) = (udp.clone(), shared.clone(), handle.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || udp_worker(udp, shared, handle))?,
            );
        }
        Ok(Running {
            addr,
            shared,
            stop_tx,
            threads,
        })
    }

    /// Serve until the process ends.
    pub fn run(self) -> std::io::Result<()> {
        let mut running = self.start()?;
        for t in running.threads.drain(..) {
            let _ = t.join();
        }
        Ok(())
    }
}

/// A server serving; dropping it stops it (within a quarter of a second).
pub struct Running {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.stop_tx.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn udp_worker(sock: Arc<UdpSocket>, shared: Arc<Shared>, rt: tokio::runtime::Handle) {
    let fd = sock.as_raw_fd();
    let mut batch = Batch::new();
    let mut answers = Vec::with_capacity(crate::batch::BATCH);
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok(n) = batch.recv(fd) else {
            continue;
        };
        answers.clear();
        for i in 0..n {
            let packet = batch.packet(i);
            match shared.handle(packet, false) {
                (Outcome::Reply(r), _) => answers.push((i, r)),
                (Outcome::Forward, limit) => {
                    let (Some(f), Some(from)) = (shared.forwarder.clone(), batch.peer(i)) else {
                        continue;
                    };
                    let (packet, sock, policy) = (packet.to_vec(), sock.clone(), shared.policy);
                    rt.spawn(async move {
                        if let Some(r) = f.resolve(&packet, limit, policy).await {
                            let _ = sock.send_to(&r, from);
                        }
                    });
                }
                (Outcome::Chase { answer, query }, limit) => {
                    let Some(from) = batch.peer(i) else {
                        continue;
                    };
                    let (packet, sock, shared) = (packet.to_vec(), sock.clone(), shared.clone());
                    rt.spawn(async move {
                        if let Some(r) = shared.chased(&packet, *answer, &query, limit).await {
                            let _ = sock.send_to(&r, from);
                        }
                    });
                }
                (Outcome::Drop, _) => {}
            }
        }
        batch.send(fd, &answers);
    }
}

async fn async_side(
    tcp: Option<TcpListener>,
    shared: Arc<Shared>,
    config: Config,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match tcp.map(|l| {
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    }) {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            tracing::error!("cannot serve DNS over TCP: {e}");
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
        None => {
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(config.max_tcp_connections));
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = conn else {
            // Out of descriptors, say: let the moment pass.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("too many DNS TCP connections; closing a new one");
            continue;
        };
        let (shared, idle) = (shared.clone(), config.tcp_idle_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            serve_tcp(stream, shared, idle).await;
        });
    }
}

/// Length-prefixed queries on one connection, answered in order.
async fn serve_tcp(mut s: tokio::net::TcpStream, shared: Arc<Shared>, idle: Duration) {
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            tokio::time::timeout(idle, s.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if !matches!(
            tokio::time::timeout(idle, s.read_exact(&mut msg)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let reply = match shared.handle(&msg, true) {
            (Outcome::Reply(r), _) => r,
            (Outcome::Forward, limit) => {
                let Some(f) = &shared.forwarder else {
                    return;
                };
                match f.resolve(&msg, limit, shared.policy).await {
                    Some(r) => r,
                    None => return,
                }
            }
            (Outcome::Chase { answer, query }, limit) => {
                match shared.chased(&msg, *answer, &query, limit).await {
                    Some(r) => r,
                    None => return,
                }
            }
            (Outcome::Drop, _) => return,
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        out.extend_from_slice(&reply);
        if !matches!(
            tokio::time::timeout(idle, s.write_all(&out)).await,
            Ok(Ok(_))
        ) {
            return;
        }
    }
}
