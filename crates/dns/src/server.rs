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

use crate::batch::Batch;
use crate::forward::Forwarder;
use crate::wire::{self, Policy, Request, REFUSED};
use crate::zone::{Answer, Zone};
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
    Drop,
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
            Ok(a) => Outcome::Reply(wire::respond(&req, &a, limit, self.policy)),
        };
        (outcome, limit)
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
