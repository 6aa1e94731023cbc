//! The userland port proxy (`skiff __proxy`), one per container with published
//! ports, as docker-proxy: it binds every host port first (so a port in use is an
//! error at start), reports the ports it got, then relays TCP connections and UDP
//! datagrams to the container's address. It dies with its monitor.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Spec {
    proto: String,
    host: SocketAddr,
    target: SocketAddr,
}

fn parse(s: &str) -> Result<Spec, String> {
    let p: Vec<&str> = s.split(':').collect();
    if p.len() != 5 {
        return Err(format!("bad proxy spec {s}"));
    }
    let hip: Ipv4Addr = p[1].parse().map_err(|_| format!("bad host ip in {s}"))?;
    let hport: u16 = p[2].parse().map_err(|_| format!("bad host port in {s}"))?;
    let cip: Ipv4Addr = p[3]
        .parse()
        .map_err(|_| format!("bad container ip in {s}"))?;
    let cport: u16 = p[4]
        .parse()
        .map_err(|_| format!("bad container port in {s}"))?;
    Ok(Spec {
        proto: p[0].to_string(),
        host: SocketAddr::from((hip, hport)),
        target: SocketAddr::from((cip, cport)),
    })
}

enum Bound {
    Tcp(TcpListener, SocketAddr),
    Udp(Arc<UdpSocket>, SocketAddr),
}

/// The embedded DNS this helper serves inside a container.
pub struct DnsConfig {
    /// The container's PID 1 (its network namespace is entered to bind 127.0.0.11).
    pub pid: i32,
    pub root: std::path::PathBuf,
    pub networks: Vec<String>,
}

/// The embedded DNS's sockets, UDP and TCP on 127.0.0.11:53 in the container's
/// network namespace.
fn bind_dns_in(pid: i32) -> Result<(UdpSocket, TcpListener), String> {
    use skiff_runtime::sys;
    let own = sys::open_path(std::path::Path::new("/proc/self/ns/net"), libc::O_RDONLY)
        .map_err(|e| e.to_string())?;
    let theirs = sys::open_path(
        std::path::Path::new(&format!("/proc/{pid}/ns/net")),
        libc::O_RDONLY,
    )
    .map_err(|e| e.to_string())?;
    sys::setns(theirs, libc::CLONE_NEWNET).map_err(|e| format!("entering netns: {e}"))?;
    let s = UdpSocket::bind("127.0.0.11:53")
        .and_then(|u| Ok((u, TcpListener::bind("127.0.0.11:53")?)))
        .map_err(|e| format!("binding 127.0.0.11:53: {e}"));
    let back = sys::setns(own, libc::CLONE_NEWNET);
    sys::close(own);
    sys::close(theirs);
    back.map_err(|e| format!("leaving netns: {e}"))?;
    s
}

/// The descriptor the proxy reports its bound ports (or its failure) on.
pub const FD_STATUS: i32 = 3;

/// Entry point; `status` is the fd to report `OK p1,p2,...` or `ERR message` on.
/// Must be called before any thread exists (it enters a network namespace).
pub fn run(specs: &[String], status: i32, dns: Option<DnsConfig>) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let report = |s: &str| {
        let _ = skiff_runtime::sys::write_all(status, format!("{s}\n").as_bytes());
        skiff_runtime::sys::close(status);
    };
    let dns_sock = match &dns {
        Some(d) => match bind_dns_in(d.pid) {
            Ok(s) => Some(s),
            Err(e) => {
                report(&format!("ERR embedded DNS: {e}"));
                std::process::exit(1);
            }
        },
        None => None,
    };
    let mut bound = Vec::new();
    let mut ports = Vec::new();
    for s in specs {
        let spec = match parse(s) {
            Ok(x) => x,
            Err(e) => {
                report(&format!("ERR {e}"));
                std::process::exit(1);
            }
        };
        let r = if spec.proto == "udp" {
            UdpSocket::bind(spec.host).map(|u| {
                let a = u.local_addr().unwrap_or(spec.host);
                (Bound::Udp(Arc::new(u), spec.target), a)
            })
        } else {
            TcpListener::bind(spec.host).map(|l| {
                let a = l.local_addr().unwrap_or(spec.host);
                (Bound::Tcp(l, spec.target), a)
            })
        };
        match r {
            Ok((b, addr)) => {
                ports.push(addr.port().to_string());
                bound.push(b);
            }
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                    "port is already allocated".to_string()
                } else {
                    e.to_string()
                };
                report(&format!(
                    "ERR driver failed programming external connectivity: Bind for {}:{} failed: {why}",
                    spec.host.ip(),
                    spec.host.port()
                ));
                std::process::exit(1);
            }
        }
    }
    report(&format!("OK {}", ports.join(",")));
    let mut handles = Vec::new();
    if let (Some((udp, tcp)), Some(d)) = (dns_sock, dns) {
        handles.push(std::thread::spawn(move || {
            if let Err(e) = crate::dns::serve(udp, Some(tcp), d.root, d.networks) {
                tracing::error!("embedded DNS: {e}");
            }
        }));
    }
    for b in bound {
        handles.push(std::thread::spawn(move || match b {
            Bound::Tcp(l, target) => serve_tcp(l, target),
            Bound::Udp(u, target) => serve_udp(u, target),
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    std::process::exit(0)
}

fn serve_tcp(l: TcpListener, target: SocketAddr) {
    for conn in l.incoming() {
        let Ok(client) = conn else { continue };
        std::thread::spawn(move || {
            let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(10)) else {
                return;
            };
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                return;
            };
            let a = std::thread::spawn(move || pipe(client, upstream));
            pipe(u2, c2);
            let _ = a.join();
        });
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn serve_udp(sock: Arc<UdpSocket>, target: SocketAddr) {
    // One upstream socket per client address, replies relayed back.
    let peers: Arc<Mutex<std::collections::HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = [0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let up = {
            let mut m = match peers.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if let Some(u) = m.get(&from) {
                u.clone()
            } else {
                let Ok(u) = UdpSocket::bind("0.0.0.0:0") else {
                    continue;
                };
                if u.connect(target).is_err() {
                    continue;
                }
                let u = Arc::new(u);
                m.insert(from, u.clone());
                let (u2, s2, peers2) = (u.clone(), sock.clone(), peers.clone());
                std::thread::spawn(move || {
                    let _ = u2.set_read_timeout(Some(Duration::from_secs(90)));
                    let mut b = [0u8; 65536];
                    while let Ok(k) = u2.recv(&mut b) {
                        let _ = s2.send_to(&b[..k], from);
                    }
                    if let Ok(mut m) = peers2.lock() {
                        m.remove(&from);
                    }
                });
                u
            }
        };
        let _ = up.send(&buf[..n]);
    }
}
