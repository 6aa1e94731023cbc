//! `skiff __dns-serve` (hidden): a hosts file served by skiff's DNS server, the same
//! server the engine's user networks use, for the DNS benchmark (bench/dns.sh) and
//! manual checks.

use anyhow::{Context, Result};
use clap::Args;
use skiff_dns::{hosts, Config, Forwarder, Options, ResolvConf, Server};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct DnsServeArgs {
    /// The hosts file to answer from (`ADDRESS NAME [ALIASES...]`).
    #[arg(long, value_name = "FILE")]
    hosts: PathBuf,
    /// Where to serve, UDP and TCP.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// A resolv.conf whose nameservers get the names the hosts file lacks (else
    /// they are REFUSED).
    #[arg(long, value_name = "RESOLV_CONF")]
    upstream: Option<PathBuf>,
    /// Threads reading the UDP socket.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The TTL of the hosts file's records.
    #[arg(long, default_value_t = 5)]
    ttl: u32,
}

pub fn run(a: DnsServeArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&a.hosts)
        .with_context(|| format!("reading {}", a.hosts.display()))?;
    let zone = hosts::parse(&text, a.ttl).with_context(|| format!("in {}", a.hosts.display()))?;
    let forwarder = match &a.upstream {
        Some(p) => {
            let rc = ResolvConf::read(p).with_context(|| format!("reading {}", p.display()))?;
            Some(Forwarder::new(rc.upstreams(), Options::default()))
        }
        None => None,
    };
    let config = Config {
        udp_workers: a.workers,
        ..Config::default()
    };
    let server = Server::bind(a.listen, Arc::new(zone), forwarder, config)
        .with_context(|| format!("listening on {}", a.listen))?;
    eprintln!("serving {} names on {}", text.lines().count(), a.listen);
    server.run()?;
    Ok(0)
}
