//! How long the proxy takes to program 1,000 Services × 10 endpoints (a full sync) and
//! then one changed endpoint or one new Service (partial syncs), in a node network
//! namespace. A measurement, not a timed test: run it alone with
//! `cargo test -p skiff-network --test bench -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use skiff_network::proxy::Snapshot;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SERVICES: usize = 1000;
const ENDPOINTS: usize = 10;

fn endpoints(
    i: usize,
    shift: usize,
) -> std::sync::Arc<k8s_openapi::api::discovery::v1::EndpointSlice> {
    let eps: Vec<_> = (0..ENDPOINTS)
        .map(|e| {
            let n = i * ENDPOINTS + e + shift;
            json!({"addresses": [format!("10.240.{}.{}", 1 + n / 250, 1 + n % 250)], "nodeName": "node-b"})
        })
        .collect();
    std::sync::Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "bench", "name": format!("s{i}-x"),
                         "labels": {"kubernetes.io/service-name": format!("s{i}")}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": eps}))
        .unwrap(),
    )
}

fn svc(i: usize) -> std::sync::Arc<k8s_openapi::api::core::v1::Service> {
    std::sync::Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "bench", "name": format!("s{i}")},
            "spec": {"clusterIP": format!("10.241.{}.{}", 1 + i / 250, 1 + i % 250),
                     "ports": [{"name": "http", "port": 80}]}}))
        .unwrap(),
    )
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    format!(
        "n={} p50={:.1} ms p90={:.1} ms max={:.1} ms",
        v.len(),
        pick(0.5),
        pick(0.9),
        pick(1.0)
    )
}

#[test]
#[ignore = "a measurement; run alone with --ignored --nocapture"]
fn apply_time_at_1000_services_by_10_endpoints() {
    let mut lab = Lab::new(0);
    let mut snap = Snapshot {
        services: (0..SERVICES).map(svc).collect(),
        slices: (0..SERVICES).map(|i| endpoints(i, 0)).collect(),
    };
    let mut p = lab.proxier();
    let t = Instant::now();
    let stats = p.sync(&snap, &BTreeSet::new()).unwrap();
    let full = t.elapsed();
    lab.check_covered();
    let chains = lab.chains().len();
    assert!(chains > SERVICES * (ENDPOINTS + 1), "{chains} chains");
    println!(
        "full sync: {:.0} ms, {} commands, {chains} chains",
        full.as_secs_f64() * 1000.0,
        stats.commands
    );

    // A second full sync over the filled table (a restart).
    let t = Instant::now();
    lab.proxier().sync(&snap, &BTreeSet::new()).unwrap();
    println!(
        "full sync over an existing table: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let mut endpoint_change = Vec::new();
    for round in 0..30 {
        let i = (round * 37) % SERVICES;
        snap.slices[i] = endpoints(i, 5000 + round);
        let key: BTreeSet<String> = [format!("bench/s{i}")].into();
        let t = Instant::now();
        let stats = p.sync(&snap, &key).unwrap();
        endpoint_change.push(t.elapsed());
        assert!(!stats.full && stats.commands > 0);
    }
    println!(
        "one Service's endpoints replaced (partial): {}",
        summary(endpoint_change)
    );

    let mut new_service = Vec::new();
    for round in 0..30 {
        let i = SERVICES + round;
        snap.services.push(svc(i));
        snap.slices.push(endpoints(i, 0));
        let key: BTreeSet<String> = [format!("bench/s{i}")].into();
        let t = Instant::now();
        p.sync(&snap, &key).unwrap();
        new_service.push(t.elapsed());
    }
    println!(
        "one new Service with 10 endpoints (partial): {}",
        summary(new_service)
    );
    let (netlink, nft) = p.backend().counts();
    println!("transactions: {netlink} as netlink batches, {nft} through nft");
}
