//! The cluster-wide loops. The garbage collector (`gc::Collector`) watches every
//! resource discovery finds (again every 30 s) and works per object. Every `period`:
//! the namespace controller lists the objects of each namespace being deleted. Pod
//! CIDR allocation runs when a node without one shows up, and the persistent-volume
//! pass when a claim, volume, class, node or pod with claims changes (and every 5 s);
//! both bind by what they read, so they read the API, not a cache that may lag their
//! own writes.
//! Whenever a Service, pod, Endpoints, EndpointSlice, node, PodDisruptionBudget or
//! pod controller changes (and every second): the ServiceLB, cluster DNS and
//! disruption-budget passes, over the shared caches. Every 5 s: the node monitor.
//! (Endpoints are a per-Service controller of their own, `endpoints`.)
//! (Service accounts and the root CA are a per-namespace controller of their own,
//! `serviceaccounts`.)

use crate::gc::{self, Resources};
use kube::Client;
use std::time::{Duration, Instant};

/// What the cluster loop needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time between passes.
    pub period: Duration,
    /// A node whose Lease is older than this is unreachable (Kubernetes: 40 s).
    pub node_monitor_grace_period: Duration,
    /// The cluster CA (PEM), published as `kube-root-ca.crt` in every namespace.
    pub ca_pem: Option<String>,
    /// The pods' address range; nodes without a pod CIDR get a /24 of it.
    pub cluster_cidr: Option<String>,
    /// Run ServiceLB (k3s's load balancer; off with `--disable servicelb`).
    pub servicelb: bool,
    /// The cluster DNS address: keep the kube-dns Service and its per-node endpoints
    /// (None: no cluster DNS, as with `--disable coredns`).
    pub cluster_dns: Option<std::net::Ipv4Addr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            period: Duration::from_millis(500),
            node_monitor_grace_period: Duration::from_secs(40),
            ca_pem: None,
            cluster_cidr: None,
            servicelb: true,
            cluster_dns: None,
        }
    }
}

/// How often discovery is run again.
const REDISCOVER: Duration = Duration::from_secs(30);

/// Run the cluster passes until `shutdown`.
pub async fn run(
    client: Client,
    settings: Settings,
    informers: skiff_informer::Informers,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    spawn_allocators(&client, &settings, &informers, &stop);
    tokio::spawn(run_cached(
        client.clone(),
        settings.clone(),
        informers,
        stop.clone(),
    ));
    let collector = gc::Collector::new(client.clone());
    let mut resources: Option<(Resources, Instant)> = None;
    let mut ticker = crate::Ticker::new(settings.period, skiff_informer::stopped(stop.clone()));
    let mut workers = None;
    while ticker.tick().await {
        if resources
            .as_ref()
            .is_none_or(|(_, t)| t.elapsed() > REDISCOVER)
        {
            match Resources::discover(&client).await {
                Ok(r) => {
                    collector.watch(&r, &stop);
                    resources = Some((r, Instant::now()));
                }
                Err(e) => tracing::warn!(error = %e, "discovery"),
            }
        }
        if workers.is_none() && resources.is_some() {
            workers = Some(tokio::spawn(collector.clone().run(stop.clone())));
        }
        if let Some((res, _)) = resources.as_ref() {
            for ns in collector.terminating_namespaces() {
                match gc::inventory_in(&client, res, &ns).await {
                    Ok(items) => crate::namespaces::sync_namespace(&client, res, &ns, &items).await,
                    Err(e) => {
                        tracing::warn!(namespace = %ns, error = %e, "listing a namespace being deleted")
                    }
                }
            }
        }
    }
}

/// How often pod CIDR allocation runs even if no node was seen without one.
const NODEIPAM_RESYNC: Duration = Duration::from_secs(30);

/// How long the persistent-volume pass waits after a change before it reads.
const VOLUMES_SETTLE: Duration = Duration::from_millis(500);

/// How often the persistent-volume pass runs even if nothing it reads was seen to change.
const VOLUMES_RESYNC: Duration = Duration::from_secs(5);

/// Pod CIDR allocation, run when a node without a pod CIDR shows up; and the
/// persistent-volume pass, run when a claim, volume, class or node changes, or a pod
/// that uses claims. Both read the API when they run.
fn spawn_allocators(
    client: &Client,
    settings: &Settings,
    inf: &skiff_informer::Informers,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    if let Some(cidr) = settings.cluster_cidr.clone() {
        let kick = std::sync::Arc::new(tokio::sync::Notify::new());
        {
            let kick = kick.clone();
            inf.nodes.on_change(move |n| {
                let has = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .is_some_and(|c| !c.is_empty());
                if !has {
                    kick.notify_one();
                }
            });
        }
        let client = client.clone();
        tokio::spawn(kicked(
            "pod CIDRs",
            kick,
            NODEIPAM_RESYNC,
            stop.clone(),
            move || {
                let (client, cidr) = (client.clone(), cidr.clone());
                async move { crate::nodeipam::sync(&client, &cidr).await }
            },
        ));
    }
    let kick = std::sync::Arc::new(tokio::sync::Notify::new());
    macro_rules! kick_on {
        ($($i:ident),*) => {$({
            let k = kick.clone();
            inf.$i.on_change(move |_| k.notify_one());
        })*};
    }
    kick_on!(claims, volumes, classes, nodes);
    {
        let k = kick.clone();
        inf.pods.on_change(move |p| {
            if !skiff_scheduler::pod_claims(p).is_empty() {
                k.notify_one();
            }
        });
    }
    let client = client.clone();
    tokio::spawn(kicked(
        "volumes",
        kick,
        VOLUMES_RESYNC,
        stop.clone(),
        move || {
            let client = client.clone();
            async move {
                // Objects applied together (a claim and its volumes) are all there when
                // the pass picks the smallest volume that fits.
                tokio::time::sleep(VOLUMES_SETTLE).await;
                crate::persistentvolumes::sync(&client).await
            }
        },
    ));
}

/// How often the node monitor looks at every node's Lease and conditions
/// (kube-controller-manager's --node-monitor-period).
const NODE_MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// How often the cached passes run even if nothing was seen to change.
const CACHED_RESYNC: Duration = Duration::from_secs(1);

/// The passes that read only the shared caches (ServiceLB, cluster DNS endpoints,
/// disruption budgets): run whenever one of the kinds they read changes, and
/// every [`CACHED_RESYNC`]; and the node monitor on its own period.
async fn run_cached(
    client: Client,
    settings: Settings,
    inf: skiff_informer::Informers,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    // Each pass is kicked only by the kinds it reads: a pod's change costs the budget
    // pass (over the budgets, each reading its namespace's pods), not the others.
    let addresses = std::sync::Arc::new(tokio::sync::Notify::new());
    let budgets = std::sync::Arc::new(tokio::sync::Notify::new());
    macro_rules! kick_on {
        ($kick:expr; $($i:ident),*) => {$({
            let k = $kick.clone();
            inf.$i.on_change(move |_| k.notify_one());
        })*};
    }
    kick_on!(addresses; services, endpoints, endpoint_slices, nodes);
    kick_on!(budgets; pods, pdbs, replicasets, deployments, statefulsets);
    tokio::select! {
        _ = inf.synced() => {}
        _ = skiff_informer::stopped(stop.clone()) => return,
    }
    // The node monitor runs on its own period (kube's nodeMonitorPeriod): node Leases
    // change every 10 s per node, and a lapse is seen only as time passes.
    {
        let (client, inf, grace) = (
            client.clone(),
            inf.clone(),
            settings.node_monitor_grace_period,
        );
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut nodes = crate::nodes::NodeMonitor::default();
            let mut ticker = crate::Ticker::new(NODE_MONITOR_PERIOD, skiff_informer::stopped(stop));
            while ticker.tick().await {
                if let Err(e) = nodes.sync(&client, &inf, grace).await {
                    tracing::warn!(error = %e, "node monitor pass");
                }
            }
        });
    }
    {
        let (client, inf, stop) = (client.clone(), inf.clone(), stop.clone());
        tokio::spawn(kicked(
            "disruption budgets",
            budgets,
            CACHED_RESYNC,
            stop,
            move || {
                let (client, inf) = (client.clone(), inf.clone());
                async move { crate::disruption::sync(&client, &inf).await }
            },
        ));
    }
    kicked(
        "service addresses",
        addresses,
        CACHED_RESYNC,
        stop,
        move || {
            let (client, inf, settings) = (client.clone(), inf.clone(), settings.clone());
            async move {
                if settings.servicelb {
                    crate::servicelb::sync(&client, &inf).await?;
                }
                if let Some(ip) = settings.cluster_dns {
                    crate::nodedns::sync(&client, &inf, ip).await?;
                }
                Ok(())
            }
        },
    )
    .await;
}

/// Runs `pass` whenever `kick` is notified, and every `resync`, until `stop`.
async fn kicked<F, Fut>(
    name: &'static str,
    kick: std::sync::Arc<tokio::sync::Notify>,
    resync: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    pass: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let stopped = skiff_informer::stopped(stop);
    tokio::pin!(stopped);
    loop {
        tracing::debug!(pass = name, "cluster pass");
        if let Err(e) = pass().await {
            tracing::warn!(pass = name, error = %e, "cluster pass");
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = kick.notified() => {}
            _ = tokio::time::sleep(resync) => {}
        }
    }
}
