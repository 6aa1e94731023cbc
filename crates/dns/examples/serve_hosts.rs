//! Serve a hosts file: `serve_hosts FILE ADDR:PORT [WORKERS]`. The quick way to
//! measure the server alone (`skiff __dns-serve` is the same in the full binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&args[1]).unwrap();
    let zone = skiff_dns::hosts::parse(&text, 5).unwrap();
    let config = skiff_dns::Config {
        udp_workers: args.get(3).map_or(2, |w| w.parse().unwrap()),
        ..skiff_dns::Config::default()
    };
    let addr = args[2].parse().unwrap();
    skiff_dns::Server::bind(addr, Arc::new(zone), None, config)
        .unwrap()
        .run()
        .unwrap();
}
