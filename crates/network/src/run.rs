//! The proxy loop the node agent starts: informers on Services and EndpointSlices, a
//! full sync once both have listed, then partial syncs of the Services that changed,
//! and a periodic full resync. Stopping leaves the table as it is.

use crate::conntrack::Conntrack;
use crate::nft::{Backend, NftCli, NftError, NftNetlink};
use crate::proxy::healthcheck::{self, bind_any, Bind, HealthServer};
use crate::proxy::model::{key_of, slice_service_key};
use crate::proxy::{Proxier, RuleSettings, Snapshot, SyncError};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use skiff_informer::Informer;
use skiff_meta::netconf::ClusterNetwork;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The default table name (`--nftables-table`).
pub const DEFAULT_TABLE: &str = "skiff-node";

/// What the proxy needs to know about its node and cluster.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// The nftables table (family ip), one per agent.
    pub table: String,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub cluster_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// How long to wait after a change for more changes before syncing.
    pub debounce: Duration,
    /// The least time between the starts of two syncs.
    pub min_sync_interval: Duration,
    /// How often everything is rewritten even without changes.
    pub full_sync_period: Duration,
    /// Delete UDP flows to removed endpoints (needs the `conntrack` tool).
    pub conntrack: bool,
}

impl ProxySettings {
    /// Settings for node `node_name` at `node_ip` in `net`, with the default table and
    /// timings.
    pub fn new(node_name: &str, node_ip: Ipv4Addr, net: &ClusterNetwork) -> Self {
        ProxySettings {
            table: DEFAULT_TABLE.to_string(),
            node_name: node_name.to_string(),
            node_ip,
            cluster_cidr: net.cluster_cidr,
            service_cidr: net.service_cidr,
            debounce: Duration::from_millis(5),
            min_sync_interval: Duration::from_millis(20),
            full_sync_period: Duration::from_secs(3600),
            conntrack: true,
        }
    }

    pub fn rules(&self) -> RuleSettings {
        RuleSettings {
            table: self.table.clone(),
            node_name: self.node_name.clone(),
            cluster_cidr: Some(self.cluster_cidr),
            service_cidr: self.service_cidr,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("the sync task failed: {0}")]
    Join(String),
}

/// Service keys changed since the last sync.
#[derive(Default)]
struct Changes {
    dirty: Mutex<BTreeSet<String>>,
    notify: Notify,
}

impl Changes {
    fn mark(&self, key: Option<String>) {
        let Some(key) = key else { return };
        if let Ok(mut d) = self.dirty.lock() {
            d.insert(key);
        }
        self.notify.notify_one();
    }

    fn take(&self) -> BTreeSet<String> {
        self.dirty
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }
}

fn set_sysctl(path: &str, value: &str) {
    let full = format!("/proc/sys/{path}");
    match std::fs::read_to_string(&full) {
        Ok(v) if v.trim() == value => {}
        _ => {
            if let Err(e) = std::fs::write(&full, value) {
                tracing::warn!(sysctl = path, error = %e, "cannot set sysctl");
            }
        }
    }
}

/// Runs a blocking step of the proxier on the blocking pool.
async fn blocking<B, T>(
    mut proxier: Proxier<B>,
    f: impl FnOnce(&mut Proxier<B>) -> T + Send + 'static,
) -> Result<(Proxier<B>, T), ProxyError>
where
    B: Backend + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let r = f(&mut proxier);
        (proxier, r)
    })
    .await
    .map_err(|e| ProxyError::Join(e.to_string()))
}

/// The service proxy of this node until `stop`: programs the table `settings.table` in
/// the process's network namespace. Returns an error only when the skeleton cannot be
/// installed; sync failures are logged and retried with a full sync.
pub async fn run(
    client: kube::Client,
    settings: ProxySettings,
    stop: watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    set_sysctl("net/ipv4/ip_forward", "1");
    // NodePorts answer on 127.0.0.1 as on k3s (the filter-input guard rule keeps 127/8
    // closed to everything else from outside).
    set_sysctl("net/ipv4/conf/all/route_localnet", "1");
    let conntrack = settings.conntrack.then(Conntrack::new);
    let health: Bind = Box::new(bind_any);
    run_with(client, settings, NftNetlink::new(), conntrack, health, stop).await
}

/// [`run`] with the nftables backend, the conntrack tool and the health check
/// listeners' bind given (tests put them in a named network namespace), and no sysctls
/// set.
pub async fn run_with<B: Backend + 'static>(
    client: kube::Client,
    settings: ProxySettings,
    backend: B,
    conntrack: Option<Conntrack>,
    health_bind: Bind,
    stop: watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    let mut health = HealthServer::new(health_bind);
    let mut proxier = Proxier::new(backend, settings.rules());
    if let Some(ct) = conntrack {
        proxier = proxier.with_conntrack(ct);
    }
    let (mut proxier, installed) = blocking(proxier, |p| p.ensure_skeleton()).await?;
    if installed? {
        tracing::info!(table = %settings.table, service_cidr = %settings.service_cidr, "installed the service table skeleton");
    }

    let services: Informer<Service> = Informer::spawn(
        Api::all(client.clone()),
        watcher::Config::default(),
        stop.clone(),
    );
    let slices: Informer<EndpointSlice> =
        Informer::spawn(Api::all(client), watcher::Config::default(), stop.clone());
    let changes = Arc::new(Changes::default());
    let c = changes.clone();
    services.on_change(move |s| c.mark(key_of(s)));
    let c = changes.clone();
    // A slice relabelled to another Service changes the one it left too.
    let owners: Mutex<std::collections::HashMap<(String, String), String>> = Mutex::default();
    let cache = slices.clone();
    slices.on_change(move |s| {
        let id = (
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
        );
        let now = slice_service_key(s);
        // The handler runs after the cache applied the change: a deleted slice is gone.
        let gone = cache
            .get(&skiff_informer::Key {
                namespace: id.0.clone(),
                name: id.1.clone(),
            })
            .is_none();
        if let Ok(mut o) = owners.lock() {
            let before = match &now {
                Some(k) if !gone => o.insert(id, k.clone()),
                _ => o.remove(&id),
            };
            if before != now {
                c.mark(before);
            }
        }
        c.mark(now);
    });

    let stopped = skiff_informer::stopped(stop);
    tokio::pin!(stopped);
    tokio::select! {
        _ = &mut stopped => return Ok(()),
        _ = async { services.synced().await; slices.synced().await } => {}
    }

    let mut next_full = tokio::time::Instant::now();
    loop {
        let full = tokio::time::Instant::now() >= next_full || proxier.needs_full_sync();
        if full {
            proxier.request_full_sync();
        }
        let changed = changes.take();
        let snap = Snapshot {
            services: services.state(),
            slices: slices.state(),
        };
        let health_wanted = healthcheck::wanted(&snap, &settings.node_name);
        let started = tokio::time::Instant::now();
        let (p, result) = blocking(proxier, move |p| p.sync(&snap, &changed)).await?;
        proxier = p;
        if result.is_ok() {
            health.update(health_wanted);
        }
        match result {
            Ok(stats) if stats.full => {
                next_full = started + settings.full_sync_period;
                tracing::info!(
                    services = stats.services,
                    commands = stats.commands,
                    ms = stats.elapsed.as_millis() as u64,
                    "full service sync"
                );
            }
            Ok(stats) => {
                if stats.commands > 0 {
                    tracing::debug!(
                        services = stats.services,
                        commands = stats.commands,
                        ms = stats.elapsed.as_millis() as u64,
                        "partial service sync"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "service sync failed; a full sync follows in 1 s");
                tokio::select! {
                    _ = &mut stopped => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        }
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            _ = tokio::time::sleep_until(next_full) => continue,
            _ = changes.notify.notified() => {}
        }
        // Let a burst of changes gather (each change waits `debounce` for the next, up
        // to four times that after the first: a Service and its EndpointSlice written
        // one after the other cost one kernel transaction, not two), and keep syncs
        // apart.
        let first = tokio::time::Instant::now();
        let cap = first + settings.debounce * 4;
        let mut wake = (first + settings.debounce).max(started + settings.min_sync_interval);
        loop {
            tokio::select! {
                _ = &mut stopped => return Ok(()),
                _ = tokio::time::sleep_until(wake) => break,
                _ = changes.notify.notified() => {
                    wake = (tokio::time::Instant::now() + settings.debounce).min(cap).max(wake);
                }
            }
        }
    }
}

/// Deletes the proxy's table (`--cleanup`); false when there was none.
pub fn cleanup(table: &str) -> Result<bool, NftError> {
    NftCli::new().delete_table(table)
}
