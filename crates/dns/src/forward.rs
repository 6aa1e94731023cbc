//! Forwarding what no zone owns to upstream resolvers, with a cache.
//!
//! A query goes to the upstreams in order (as glibc tries resolv.conf's nameservers):
//! over UDP from a fresh socket with a fresh random id, EDNS(0) added, and again over
//! TCP to the same upstream when its answer is truncated. A timeout, a network error,
//! an unreadable answer, SERVFAIL or REFUSED moves on to the next upstream; when none
//! is left the client gets SERVFAIL. Answers are cached by (lower-case name, type,
//! class, DO, CD) for their smallest TTL, at most [`Options::max_ttl`]; negative
//! answers (NXDOMAIN, NODATA) for the SOA's minimum and TTL, at most
//! [`Options::max_negative_ttl`], and only with an SOA (RFC 2308). A hit is the cached
//! message with the client's id, question and RD, each TTL lowered by the time spent
//! in the cache. Our own listening address is never an upstream.

use crate::wire::{self, Policy, Request, HEADER, NOERROR, NXDOMAIN, OPT, REFUSED, SERVFAIL};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// How a forwarder behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long one upstream has to answer (UDP, then TCP if truncated).
    pub timeout: Duration,
    /// The longest a positive answer stays cached (CoreDNS `cache 30`).
    pub max_ttl: u32,
    /// The longest a negative answer stays cached.
    pub max_negative_ttl: u32,
    /// Cached answers at most; past it expired ones go, then arbitrary ones.
    pub cache_entries: usize,
    /// Queries waiting for an upstream at once; more are dropped (clients retry).
    pub max_in_flight: usize,
    /// The UDP payload size we ask upstreams for.
    pub udp_payload: u16,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(2),
            max_ttl: 30,
            max_negative_ttl: 30,
            cache_entries: 10_000,
            max_in_flight: 1024,
            udp_payload: 1232,
        }
    }
}

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    opts: Options,
    cache: Mutex<Cache>,
    in_flight: Semaphore,
    ids: AtomicU32,
}

/// Why one upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer in time")]
    Timeout,
    #[error("unreadable answer")]
    Garbled,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, opts: Options) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                max: opts.cache_entries.max(1),
            }),
            in_flight: Semaphore::new(opts.max_in_flight),
            ids: AtomicU32::new(getrandom::u32().unwrap_or(0x5eed)),
            opts,
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Drop every upstream that is `own` (the address we listen on) or, when we
    /// listen on every address, any loopback address on our port: forwarding there
    /// would send queries back to ourselves.
    pub fn refuse_loops(&mut self, own: SocketAddr) {
        self.upstreams.retain(|up| {
            let ours = *up == own
                || (own.ip().is_unspecified() && up.port() == own.port() && up.ip().is_loopback());
            if ours {
                tracing::warn!(upstream = %up, "not forwarding to our own address");
            }
            !ours
        });
    }

    /// The cached answer to `req`, ready to send, if there is a live one.
    pub fn cached(&self, req: &Request<'_>, limit: usize, policy: Policy) -> Option<Vec<u8>> {
        let (k, n) = key(req);
        let now = Instant::now();
        let mut msg = {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            c.get(&k[..n], req, now)?
        };
        Some(wire::finish(&mut msg, req, limit, policy))
    }

    /// The answer to a query no zone owns: an upstream's, or SERVFAIL when none
    /// answers; None (drop) when the packet is not a query or too many are waiting.
    pub async fn resolve(&self, packet: &[u8], limit: usize, policy: Policy) -> Option<Vec<u8>> {
        let req = Request::parse(packet).ok()?;
        let Ok(_permit) = self.in_flight.try_acquire() else {
            tracing::debug!("too many queries waiting for upstreams; dropping one");
            return None;
        };
        // Someone may have asked the same meanwhile.
        if let Some(hit) = self.cached(&req, limit, policy) {
            return Some(hit);
        }
        let id = self.next_id();
        let query = self.upstream_query(&req, id);
        for up in &self.upstreams {
            let resp = match self.exchange(*up, &query, id, req.question()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(upstream = %up, name = req.name(), "forwarding failed: {e}");
                    continue;
                }
            };
            if matches!(wire::rcode(&resp), Some(SERVFAIL | REFUSED)) {
                tracing::debug!(upstream = %up, name = req.name(), "upstream refused or failed");
                continue;
            }
            let Some(prepared) = prepare(&resp, &self.opts) else {
                tracing::debug!(upstream = %up, "unreadable answer from upstream");
                continue;
            };
            let now = Instant::now();
            let mut msg = {
                let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                let msg = prepared.msg.clone();
                if prepared.lifetime > 0 {
                    let (k, n) = key(&req);
                    c.insert(&k[..n], prepared, now);
                }
                msg
            };
            personalize(&mut msg, &req, &[], 0);
            return Some(wire::finish(&mut msg, &req, limit, policy));
        }
        Some(wire::error(&req, SERVFAIL, policy))
    }

    fn next_id(&self) -> u16 {
        // Random (with the fresh socket's random port, what a forger must guess); a
        // counter should the system's generator fail.
        match getrandom::u32() {
            Ok(x) => x as u16,
            Err(_) => (self.ids.fetch_add(40503, Ordering::Relaxed) >> 8) as u16,
        }
    }

    /// The client's question with our id and our OPT record (its DO bit kept).
    fn upstream_query(&self, req: &Request<'_>, id: u16) -> Vec<u8> {
        let mut q = Vec::with_capacity(req.question_end + wire::OPT_LEN);
        q.extend_from_slice(&req.packet[..req.question_end]);
        wire::set_id(&mut q, id);
        wire::write_u16(&mut q, 10, 1);
        let dnssec_ok = req.edns.is_some_and(|e| e.dnssec_ok);
        wire::put_opt(&mut q, self.opts.udp_payload, 0, dnssec_ok);
        q
    }

    async fn exchange(
        &self,
        up: SocketAddr,
        query: &[u8],
        id: u16,
        question: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let deadline = tokio::time::Instant::now() + self.opts.timeout;
        let resp = tokio::time::timeout_at(deadline, udp_exchange(up, query, id, question))
            .await
            .map_err(|_| Failure::Timeout)??;
        if !wire::is_truncated(&resp) {
            return Ok(resp);
        }
        tracing::debug!(upstream = %up, "truncated answer; asking again over TCP");
        let deadline = tokio::time::Instant::now() + self.opts.timeout;
        tokio::time::timeout_at(deadline, tcp_exchange(up, query, id, question))
            .await
            .map_err(|_| Failure::Timeout)?
    }
}

/// Whether `resp` answers our query `id` about `question`.
fn answers(resp: &[u8], id: u16, question: &[u8]) -> bool {
    resp.len() >= HEADER + question.len()
        && wire::is_response(resp)
        && wire::id(resp) == Some(id)
        && wire::count(resp, 0) == Some(1)
        && resp[HEADER..HEADER + question.len()].eq_ignore_ascii_case(question)
}

async fn udp_exchange(
    up: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
) -> Result<Vec<u8>, Failure> {
    let local: SocketAddr = if up.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Anything else (a late answer, a forgery) is ignored.
        if answers(&buf[..n], id, question) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(
    up: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
) -> Result<Vec<u8>, Failure> {
    let mut s = tokio::net::TcpStream::connect(up).await?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&(query.len() as u16).to_be_bytes());
    out.extend_from_slice(query);
    s.write_all(&out).await?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    if answers(&buf, id, question) {
        Ok(buf)
    } else {
        Err(Failure::Garbled)
    }
}

/// The cache key of a question: its name in wire form, lower case, then type,
/// class and the DO and CD bits.
fn key(req: &Request<'_>) -> ([u8; 264], usize) {
    let mut k = [0u8; 264];
    let q = req.question();
    let n = q.len().min(260);
    for (d, s) in k.iter_mut().zip(&q[..n]) {
        *d = s.to_ascii_lowercase();
    }
    let dnssec_ok = req.edns.is_some_and(|e| e.dnssec_ok);
    k[n] = u8::from(dnssec_ok) | (u8::from(req.checking_disabled()) << 1);
    (k, n + 1)
}

/// An upstream answer made ready to keep: its OPT record removed, every TTL at most
/// the entry's lifetime, the offsets of the TTLs to lower on a hit.
struct Prepared {
    msg: Vec<u8>,
    ttls: Vec<usize>,
    lifetime: u32,
}

struct Walk {
    ttls: Vec<usize>,
    opt: Option<(usize, usize)>,
    min_ttl: Option<u32>,
    soa: Option<(u32, u32)>,
}

/// Every record's TTL offset, the OPT record's span, the smallest TTL and the
/// authority section's SOA (its TTL and minimum) of a message.
fn walk(m: &[u8]) -> Option<Walk> {
    let mut at = wire::skip_name(m, HEADER)? + 4;
    let mut w = Walk {
        ttls: Vec::new(),
        opt: None,
        min_ttl: None,
        soa: None,
    };
    for section in 0..3 {
        for _ in 0..wire::count(m, section + 1)? {
            let start = at;
            at = wire::skip_name(m, at)?;
            let rtype = wire::read_u16(m, at)?;
            let ttl = wire::read_u32(m, at + 4)?;
            let rdlen = wire::read_u16(m, at + 8)? as usize;
            let end = at + 10 + rdlen;
            if end > m.len() {
                return None;
            }
            if rtype == OPT {
                w.opt = Some((start, end));
            } else {
                w.ttls.push(at + 4);
                w.min_ttl = Some(w.min_ttl.map_or(ttl, |t| t.min(ttl)));
                if section == 1 && rtype == u16::from(hickory_proto::rr::RecordType::SOA) {
                    w.soa = Some((ttl, wire::read_u32(m, end - 4)?));
                }
            }
            at = end;
        }
    }
    Some(w)
}

fn prepare(resp: &[u8], opts: &Options) -> Option<Prepared> {
    let mut msg = resp.to_vec();
    if let Some((start, end)) = walk(&msg)?.opt {
        msg.drain(start..end);
        let ar = wire::count(&msg, 3)?.saturating_sub(1);
        wire::write_u16(&mut msg, 10, ar);
    }
    let w = walk(&msg)?;
    let answers = wire::count(&msg, 1)?;
    let lifetime = match wire::rcode(&msg)? {
        NOERROR if answers > 0 => w.min_ttl.unwrap_or(0).min(opts.max_ttl),
        NOERROR | NXDOMAIN => match w.soa {
            Some((ttl, minimum)) => ttl.min(minimum).min(opts.max_negative_ttl),
            None => 0,
        },
        _ => 0,
    };
    if lifetime > 0 {
        for &at in &w.ttls {
            let t = wire::read_u32(&msg, at)?;
            wire::write_u32(&mut msg, at, t.min(lifetime));
        }
    }
    Some(Prepared {
        msg,
        ttls: w.ttls,
        lifetime,
    })
}

/// Make a kept message the answer to `req`: its id, RD and question as sent, each
/// TTL (at `ttls`) lowered by `elapsed` seconds.
fn personalize(msg: &mut [u8], req: &Request<'_>, ttls: &[usize], elapsed: u32) {
    wire::set_id(msg, req.id);
    wire::set_rd(msg, req.recursion_desired());
    let q = req.question();
    if msg.len() >= HEADER + q.len() {
        msg[HEADER..HEADER + q.len()].copy_from_slice(q);
    }
    if elapsed > 0 {
        for &at in ttls {
            let t = wire::read_u32(msg, at).unwrap_or(0);
            wire::write_u32(msg, at, t.saturating_sub(elapsed));
        }
    }
}

struct Entry {
    p: Prepared,
    stored: Instant,
}

struct Cache {
    map: HashMap<Box<[u8]>, Entry>,
    max: usize,
}

impl Cache {
    fn get(&mut self, k: &[u8], req: &Request<'_>, now: Instant) -> Option<Vec<u8>> {
        let e = self.map.get(k)?;
        let elapsed = now.duration_since(e.stored).as_secs();
        if elapsed >= u64::from(e.p.lifetime) {
            self.map.remove(k);
            return None;
        }
        let mut msg = e.p.msg.clone();
        personalize(&mut msg, req, &e.p.ttls, elapsed as u32);
        Some(msg)
    }

    fn insert(&mut self, k: &[u8], p: Prepared, now: Instant) {
        if self.map.len() >= self.max {
            self.map
                .retain(|_, e| now.duration_since(e.stored).as_secs() < u64::from(e.p.lifetime));
        }
        if self.map.len() >= self.max {
            // Still full of live answers: let a tenth go at once, so the scan above
            // is not paid on every insert.
            let victims: Vec<Box<[u8]>> =
                self.map.keys().take(self.max / 10 + 1).cloned().collect();
            for v in victims {
                self.map.remove(&v);
            }
        }
        self.map.insert(k.into(), Entry { p, stored: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded() {
        let mut c = Cache {
            map: HashMap::new(),
            max: 100,
        };
        let now = Instant::now();
        for i in 0..1000u32 {
            let p = Prepared {
                msg: vec![0; HEADER],
                ttls: Vec::new(),
                lifetime: 30,
            };
            c.insert(&i.to_be_bytes(), p, now);
            assert!(c.map.len() <= 100);
        }
        // Once full again, expired entries go first, all of them.
        let later = now + Duration::from_secs(31);
        for i in 0..20u32 {
            let p = Prepared {
                msg: vec![0; HEADER],
                ttls: Vec::new(),
                lifetime: 30,
            };
            c.insert(format!("fresh{i}").as_bytes(), p, later);
        }
        assert_eq!(c.map.len(), 20);
        assert!(c.map.keys().all(|k| k.starts_with(b"fresh")));
    }
}
