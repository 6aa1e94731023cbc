//! The node's copy of the cluster DNS zone: Services, EndpointSlices and Namespaces
//! watched in all namespaces, and a fresh [`ClusterZone`] snapshot built a moment
//! (20 ms) after each change, swapped in whole so the answerer never sees half an
//! update. The promise — answers change within a second of a Service or
//! endpoint change — is the watch latency plus that debounce.

use crate::clusterzone::ClusterZone;
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
