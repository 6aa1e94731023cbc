//! The node's copy of the cluster DNS zone: Services, EndpointSlices and Namespaces
//! watched in all namespaces, and a fresh [`ClusterZone`] snapshot built a moment
//! (20 ms) after each change, swapped in whole so the answerer never sees half an
//! update. The promise — answers change within a second of a Service or
//! endpoint change — is the watch latency plus that debounce.

use crate::clusterzone::{self, ClusterZone, QType, RData, Record};
use hickory_proto::rr::{self, Name, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The current zone, shared with the answerer.
#[derive(Clone, Default)]
pub struct ZoneHandle(Arc<RwLock<Arc<ClusterZone>>>);

impl ZoneHandle {
    /// The zone as it is now.
    pub fn current(&self) -> Arc<ClusterZone> {
        match self.0.read() {
            Ok(z) => z.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, z: ClusterZone) {
        let z = Arc::new(z);
        match self.0.write() {
            Ok(mut w) => *w = z,
            Err(poisoned) => *poisoned.into_inner() = z,
        }
    }
}

const DEBOUNCE: Duration = Duration::from_millis(20);

/// Keeps `handle` up to date for `domain` until `stop`; returns once the first zone
/// (built from a complete listing) is in place, the rest runs on a task.
pub async fn keep(
    client: kube::Client,
    domain: String,
    handle: ZoneHandle,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let services = skiff_informer::Informer::spawn(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        stop.clone(),
    );
    let slices = skiff_informer::Informer::spawn(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
        stop.clone(),
    );
    let namespaces = skiff_informer::Informer::spawn(
        Api::<Namespace>::all(client),
        watcher::Config::default(),
        stop.clone(),
    );
    let kick = Arc::new(tokio::sync::Notify::new());
    {
        let k = kick.clone();
        services.on_change(move |_| k.notify_one());
        let k = kick.clone();
        slices.on_change(move |_| k.notify_one());
        let k = kick.clone();
        namespaces.on_change(move |_| k.notify_one());
    }
    let stopped = skiff_informer::stopped(stop.clone());
    tokio::pin!(stopped);
    tokio::select! {
        _ = async { services.synced().await; slices.synced().await; namespaces.synced().await; } => {}
        _ = &mut stopped => return,
    }
    let mut serial: u32 = 1;
    let build = move |serial: u32| {
        let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let sls: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let nss: Vec<String> = namespaces
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        ClusterZone::build(&domain, &svcs, &sls, &nss, serial)
    };
    handle.set(build(serial));
    tokio::spawn(async move {
        let stopped = skiff_informer::stopped(stop);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = kick.notified() => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
            serial = serial.wrapping_add(1);
            handle.set(build(serial));
        }
    });
}

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::PTR => QType::Ptr,
        RecordType::CNAME => QType::Cname,
        RecordType::TXT => QType::Txt,
        RecordType::SOA => QType::Soa,
        RecordType::ANY => QType::Any,
        other => QType::Other(u16::from(other)),
    }
}

fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn record(r: &Record) -> Option<rr::Record> {
    use rr::rdata;
    let data = match &r.data {
        RData::A(ip) => rr::RData::A(rdata::A(*ip)),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => rr::RData::SRV(rdata::SRV::new(*priority, *weight, *port, fqdn(target)?)),
        RData::Ptr(n) => rr::RData::PTR(rdata::PTR(fqdn(n)?)),
        RData::Cname(n) => rr::RData::CNAME(rdata::CNAME(fqdn(n)?)),
        RData::Txt(t) => rr::RData::TXT(rdata::TXT::new(vec![t.clone()])),
    };
    Some(rr::Record::from_rdata(fqdn(&r.name)?, r.ttl, data))
}

fn records(rs: &[Record]) -> Vec<rr::Record> {
    rs.iter().filter_map(record).collect()
}

/// The live zone answers the node's DNS server.
impl skiff_dns::Zone for ZoneHandle {
    fn answer(&self, q: &skiff_dns::Query<'_>) -> skiff_dns::Answer {
        if q.qclass != rr::DNSClass::IN {
            return skiff_dns::Answer::NotMine;
        }
        let zone = self.current();
        let soa = || {
            fqdn(zone.domain()).and_then(|apex| {
                skiff_dns::zone::soa(&apex, zone.soa().serial, clusterzone::TTL).ok()
            })
        };
        match zone.answer(q.name, qtype(q.qtype)) {
            clusterzone::Answer::Records {
                answers,
                additionals,
            } => skiff_dns::Answer::Records {
                answers: records(&answers),
                authority: Vec::new(),
                additionals: records(&additionals),
            },
            clusterzone::Answer::NoData => skiff_dns::Answer::NoData { soa: soa() },
            clusterzone::Answer::NxDomain => skiff_dns::Answer::NxDomain { soa: soa() },
            clusterzone::Answer::NotMine => skiff_dns::Answer::NotMine,
        }
    }
}

/// Serves the node's cluster DNS on `listen` (UDP and TCP) until `stop`: the live
/// zone, and names outside it forwarded to `upstreams` through skiff-dns's cache.
pub async fn serve(
    handle: ZoneHandle,
    listen: std::net::SocketAddr,
    upstreams: Vec<std::net::SocketAddr>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let forwarder = (!upstreams.is_empty())
        .then(|| skiff_dns::Forwarder::new(upstreams, skiff_dns::Options::default()));
    let server = skiff_dns::Server::bind(
        listen,
        Arc::new(handle),
        forwarder,
        skiff_dns::Config::default(),
    )?;
    let running = server.start()?;
    tracing::info!(address = %running.local_addr(), "answering the cluster's DNS");
    let _ = stop.wait_for(|s| *s).await;
    // Stopping joins the server's threads.
    let _ = tokio::task::spawn_blocking(move || drop(running)).await;
    Ok(())
}
