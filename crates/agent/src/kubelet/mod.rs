//! The node agent's loop against the API server: register the Node and keep its
//! Lease fresh, run the Pods bound to this node (level-triggered: every pass
//! compares the pods the API wants here with what runs, and closes the gap), report
//! their status, and finish their deletion.
//!
//! [`run`] owns the loop and the [`Kubelet`] its tasks share (the API client, the
//! runtime, the settings, the Events recorder and what is kept between passes);
//! [`node`] is the Node and its Lease, `sync` the pass over the pods (handing each
//! to the pod worker, [`crate::pod`]), `probes` the probe pass, `status` what is
//! reported.

use crate::cri::SharedRuntime;
use crate::events::Recorder;
use crate::eviction::Signal;
use crate::hostports::HostPorts;
use crate::imagegc::Tracker;
use crate::lookup::ApiLookup;
use crate::pod::{self, NodeSettings, RunningPod};
use crate::prober::{Prober, Verdict};
use crate::FIELD_MANAGER;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub mod node;
mod probes;
mod status;
mod sync;

use node::{conditions, register_node, remove_released_storage, renew_lease};
use probes::probe_pass;
use status::EphemeralFailure;
pub use sync::DEFAULT_START_BACKOFF;
use sync::{evict_one, refresh_volumes, sync_pods, StartFailure};

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: NodeSettings,
    /// The node's pod CIDR (spec.podCIDR).
    pub pod_cidr: String,
    /// Lease duration; the lease is renewed every quarter of it (10 s of 40 s).
    pub lease_duration: Duration,
    /// How often pods are synced when nothing else wakes the loop.
    pub sync_period: Duration,
    /// The port of this node's streaming endpoint (logs, exec, attach, port-forward),
    /// reported in the Node's `status.daemonEndpoints`.
    pub kubelet_port: u16,
    /// The node runs the control plane too (`skiff server`): labelled
    /// `node-role.kubernetes.io/control-plane` (a joining agent may not set that).
    pub control_plane: bool,
    /// How often housekeeping runs (cAdvisor's housekeeping interval, 10 s): node
    /// pressure and eviction, image garbage collection, directories of deleted volumes.
    pub housekeeping_period: Duration,
    /// How often running pods' configMap, secret, downwardAPI and projected volumes are
    /// brought up to date (the kubelet's --sync-frequency, 1 minute).
    pub volume_resync_period: Duration,
    /// The hard eviction thresholds (`--eviction-hard`).
    pub eviction_hard: crate::pressure::Thresholds,
    /// When unused images are removed (`--image-gc-high-threshold`/`-low-threshold`).
    pub image_gc: crate::imagegc::Thresholds,
    /// How many images are pulled at once (`--serialize-image-pulls`,
    /// `--max-parallel-image-pulls`).
    pub image_pulls: crate::pull::PullLimits,
    /// The back-off of a pod that could not start (image pulls included): the first
    /// delay, doubling up to the longest (the kubelet's 10 s and 300 s).
    pub start_backoff: (Duration, Duration),
}

/// Why the agent stopped, or could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A request to the API server failed (the error said here, not as a source).
    #[error("API: {0}")]
    Api(kube::Error),
    #[error(transparent)]
    Runtime(#[from] crate::cri::RuntimeError),
    /// An object the agent writes could not be built.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// A blocking task of the agent's failed (panicked).
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error("node {0} got no pod CIDR from the control plane within 2 minutes (is its controller manager running?)")]
    NoPodCidr(String),
}

impl From<kube::Error> for AgentError {
    fn from(e: kube::Error) -> Self {
        AgentError::Api(e)
    }
}

fn patch_params() -> PatchParams {
    skiff_informer::patch_params(FIELD_MANAGER)
}

fn post_params() -> PostParams {
    skiff_informer::post_params(FIELD_MANAGER)
}

/// The node agent: what it talks to, its settings, and what it keeps between its
/// passes, shared by its tasks.
pub struct Kubelet {
    client: Client,
    runtime: SharedRuntime,
    cfg: AgentConfig,
    /// Where every Event the agent records goes.
    recorder: Recorder,
    /// The objects pods refer to, read through `client`.
    lookup: ApiLookup,
    /// The tokio runtime the agent runs on (for its blocking threads' API writes).
    handle: tokio::runtime::Handle,
    /// The pods this node runs, by uid.
    running: Mutex<BTreeMap<String, RunningPod>>,
    /// The node's (MemoryPressure, DiskPressure, PIDPressure), from the last
    /// housekeeping.
    pressure: std::sync::Mutex<(bool, bool, bool)>,
    /// Ephemeral containers that could not be started, by (pod uid, name).
    ephemeral_failures: std::sync::Mutex<BTreeMap<(String, String), EphemeralFailure>>,
    /// Probe state per container id.
    prober: Prober,
    /// The latest probe verdict per container id.
    verdicts: std::sync::Mutex<BTreeMap<String, Verdict>>,
    /// The pod objects last seen for this node, by uid (for the prober).
    pods: std::sync::Mutex<BTreeMap<String, Pod>>,
    /// The hostPorts this node publishes.
    host_ports: HostPorts,
    /// Pods this node evicted (phase Failed, reason Evicted): never started or
    /// reported again while their object exists.
    evicted: std::sync::Mutex<BTreeSet<String>>,
    /// Pods whose containers are being stopped right now (their API object is
    /// deleted only once that is done).
    stopping: std::sync::Mutex<BTreeSet<String>>,
    /// Pods that failed to start: why, and when to try again.
    start_failures: std::sync::Mutex<BTreeMap<String, StartFailure>>,
    /// The last status reported per pod, so unchanged statuses are not written again.
    reported: std::sync::Mutex<BTreeMap<String, serde_json::Value>>,
    /// Pulls images for the node's pods.
    puller: crate::pull::ImagePuller,
}

impl Kubelet {
    /// A node agent on `client` and `runtime` with nothing running yet; made inside
    /// the tokio runtime it records Events on.
    fn new(
        client: Client,
        runtime: SharedRuntime,
        cfg: AgentConfig,
        services: Option<skiff_informer::Informer<Service>>,
    ) -> Kubelet {
        Kubelet {
            puller: crate::pull::ImagePuller::new(cfg.image_pulls),
            recorder: Recorder::new(client.clone(), cfg.node.node_name.clone()),
            lookup: ApiLookup::new(client.clone(), services),
            handle: tokio::runtime::Handle::current(),
            client,
            runtime,
            cfg,
            running: Mutex::default(),
            pressure: Default::default(),
            ephemeral_failures: Default::default(),
            prober: Default::default(),
            verdicts: Default::default(),
            pods: Default::default(),
            host_ports: Default::default(),
            evicted: Default::default(),
            stopping: Default::default(),
            start_failures: Default::default(),
            reported: Default::default(),
        }
    }

    /// The pods this node was last told to run, by uid.
    fn pods(&self) -> BTreeMap<String, Pod> {
        self.pods.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn evicted(&self, uid: &str) -> bool {
        self.evicted
            .lock()
            .map(|s| s.contains(uid))
            .unwrap_or(false)
    }

    fn stopping(&self, uid: &str) -> bool {
        self.stopping
            .lock()
            .map(|s| s.contains(uid))
            .unwrap_or(false)
    }
}

/// Run the agent until `shutdown` resolves.
pub async fn run(
    client: Client,
    runtime: SharedRuntime,
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    // The Services pods are told of (their environment), as the kubelet's service
    // lister keeps them; stopped with the agent.
    let (services_stop, services_stopped) = tokio::sync::watch::channel(false);
    let services = services_informer(&client, services_stopped);
    let done = run_with(client, runtime, cfg, services, shutdown).await;
    let _ = services_stop.send(true);
    done
}

/// The Services every node's pods are told of, as one watch keeps them until `stop`.
pub fn services_informer(
    client: &Client,
    stop: tokio::sync::watch::Receiver<bool>,
) -> skiff_informer::Informer<Service> {
    skiff_informer::Informer::<Service>::spawn(
        Api::all(client.clone()),
        kube::runtime::watcher::Config::default(),
        stop,
    )
}

/// [`run`] with the Services known from `services` (hollow nodes share one).
pub async fn run_with(
    client: Client,
    runtime: SharedRuntime,
    cfg: AgentConfig,
    services: skiff_informer::Informer<Service>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let k = Arc::new(Kubelet::new(client, runtime, cfg, Some(services.clone())));
    let (client, runtime, cfg) = (&k.client, &k.runtime, &k.cfg);
    let fs = runtime.image_fs_info();
    register_node(&k, &fs.container_filesystem).await?;
    tracing::info!(node = %cfg.node.node_name, "node registered");
    renew_lease(&k).await?;
    tokio::pin!(shutdown);
    // No pod starts before the Services are known (as the kubelet waits for its
    // service informer): its environment would miss them.
    let synced = services.synced();
    tokio::pin!(synced);
    loop {
        tokio::select! {
            _ = &mut synced => break,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {
                tracing::warn!("still waiting for the list of Services before starting pods");
            }
            _ = &mut shutdown => return Ok(()),
        }
    }
    // Pods a previous run started keep running: adopt them.
    let (e, n) = (runtime.clone(), cfg.node.clone());
    let adopted = tokio::task::spawn_blocking(move || pod::adopt(&*e, &n)).await?;
    *k.running.lock().await = adopted;
    let mut lease_tick = tokio::time::interval(cfg.lease_duration / 4);
    // When the node's status was last written.
    let mut status_reported = None;
    let mut probe_tick = tokio::time::interval(Duration::from_millis(250));
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What image garbage collection knows of each image (first seen, last used).
    let images = Arc::new(std::sync::Mutex::new(Tracker::default()));
    let mut housekeeping_tick = tokio::time::interval(cfg.housekeeping_period);
    housekeeping_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync_tick = tokio::time::interval(cfg.volume_resync_period);
    resync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync_tick = tokio::time::interval(cfg.sync_period);
    sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The pods bound to this node, as a watch keeps them (re-listed when the watch
    // expires, 410 Gone); every change wakes the loop.
    let (pod_store, writer) = kube::runtime::reflector::store::<Pod>();
    let pod_changed = Arc::new(tokio::sync::Notify::new());
    // Nothing is synced from the cache before its first list is in: an empty cache
    // would stop every adopted pod.
    let listed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        use futures::StreamExt;
        use kube::runtime::WatchStreamExt;
        let api: Api<Pod> = Api::all(client.clone());
        let wc = kube::runtime::watcher::Config::default().fields(&node_pods_selector(cfg));
        let (changed, listed) = (pod_changed.clone(), listed.clone());
        tokio::spawn(async move {
            let stream =
                kube::runtime::reflector(writer, kube::runtime::watcher(api, wc).default_backoff());
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => {
                        if matches!(ev, kube::runtime::watcher::Event::InitDone) {
                            listed.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        changed.notify_one()
                    }
                    Err(e) => tracing::debug!(error = %e, "watching this node's pods"),
                }
            }
        })
    };
    let cached = || {
        listed
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| pod_store.state().iter().map(|p| (**p).clone()).collect())
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                watch.abort();
                // Pods keep running across restarts of the agent; with none left, the
                // node's pod cgroups go too.
                runtime.remove_pods_cgroup(&cfg.node.pods_cgroup);
                return Ok(());
            }
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&k).await {
                    tracing::warn!(error = %e, "renewing the node lease");
                }
                let rt = runtime.clone();
                let images = tokio::task::spawn_blocking(move || node::images(&*rt))
                    .await
                    .unwrap_or_default();
                node::report_status(&k, images, &mut status_reported).await;
            }
            _ = probe_tick.tick() => {
                let events = tokio::task::spawn_blocking({
                    let (k, snapshot) = (k.clone(), k.running.lock().await.clone());
                    move || probe_pass(&k, &snapshot)
                })
                    .await
                    .unwrap_or_default();
                let pods = k.pods();
                for ev in events {
                    if let Some(p) = pods.get(&ev.uid) {
                        k.recorder.record(p, Some(&ev.container), ev.warning, ev.reason, &ev.message).await;
                    }
                }
            }
            // A hollow node has no host of its own to keep: no pressure, eviction,
            // image or volume collection.
            _ = housekeeping_tick.tick(), if !runtime.simulated() => {
                remove_released_storage(client, &cfg.node.storage_dir).await;
                let readings = crate::pressure::read(&fs.container_filesystem, &fs.image_filesystem);
                let now = crate::pressure::pressure(&readings, &cfg.eviction_hard);
                let changed = k.pressure.lock().map(|mut p| std::mem::replace(&mut *p, now) != now).unwrap_or(false);
                if changed {
                    let nodes: Api<Node> = Api::all(client.clone());
                    let _ = nodes.patch_status(&cfg.node.node_name, &patch_params(),
                        &Patch::Merge(json!({"status": {"conditions": conditions(&k)}}))).await;
                }
                let e = runtime.clone();
                let gc = cfg.image_gc;
                let tracker = images.clone();
                if let Ok(removed) = tokio::task::spawn_blocking(move || {
                    let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
                    crate::imagegc::collect(&*e, gc, &mut tracker)
                }).await {
                    for id in removed {
                        tracing::info!(image = %id, "image garbage collection removed an unused image");
                    }
                }
                let signal = match now {
                    (true, _, _) => Some(Signal::Memory),
                    (_, true, _) => Some(Signal::Disk),
                    (_, _, true) => Some(Signal::Pids),
                    _ => None,
                };
                if let Some(signal) = signal {
                    evict_one(&k, signal).await;
                }
            }
            _ = resync_tick.tick() => {
                refresh_volumes(&k).await;
                // The safety net under the watch: a pass over the pods as the API
                // lists them now.
                if let Err(e) = sync_pods(&k, None).await {
                    tracing::warn!(error = %e, "syncing pods");
                }
            }
            // A pod bound here, changed or deleted starts a pass at once; the tick
            // catches up with the containers' own changes (exits, restarts) as the
            // kubelet's relist does.
            _ = pod_changed.notified() => {
                if let Some(pods) = cached() {
                    if let Err(e) = sync_pods(&k, Some(pods)).await {
                        tracing::warn!(error = %e, "syncing pods");
                    }
                }
            }
            _ = sync_tick.tick() => {
                if let Some(pods) = cached() {
                    if let Err(e) = sync_pods(&k, Some(pods)).await {
                        tracing::warn!(error = %e, "syncing pods");
                    }
                }
            }
        }
    }
}

/// The field selector of the pods bound to this node.
fn node_pods_selector(cfg: &AgentConfig) -> String {
    format!("spec.nodeName={}", cfg.node.node_name)
}
