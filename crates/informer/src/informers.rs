//! The shared informers: one watch per kind, started once and read by every controller
//! and by the scheduler.

use crate::{CachedPod, Informer};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim,
    ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::watcher;

/// The shared informers: one watch per kind, read by every controller.
#[derive(Clone)]
pub struct Informers {
    /// Pods, as much of them as the readers read ([`CachedPod`]), also found by their
    /// node and the unbound ones under [`UNBOUND`].
    pub pods: Informer<CachedPod>,
    pub nodes: Informer<Node>,
    pub namespaces: Informer<Namespace>,
    pub replicasets: Informer<ReplicaSet>,
    pub replication_controllers: Informer<ReplicationController>,
    pub deployments: Informer<Deployment>,
    pub statefulsets: Informer<StatefulSet>,
    pub revisions: Informer<ControllerRevision>,
    pub daemonsets: Informer<DaemonSet>,
    pub jobs: Informer<Job>,
    pub cronjobs: Informer<CronJob>,
    pub claims: Informer<PersistentVolumeClaim>,
    pub volumes: Informer<PersistentVolume>,
    pub classes: Informer<StorageClass>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub endpoint_slices: Informer<EndpointSlice>,
    pub service_accounts: Informer<ServiceAccount>,
    /// Only the `kube-root-ca.crt` ConfigMaps (a field selector, as kube's root-CA
    /// publisher watches them): no controller reads any other, so none is cached.
    pub root_ca_config_maps: Informer<ConfigMap>,
    /// The nodes' Leases (namespace kube-node-lease).
    pub node_leases: Informer<Lease>,
    pub pdbs: Informer<PodDisruptionBudget>,
}

/// Where the pods informer's index files the pods bound to no node: the scheduler's
/// queue (no node is named "").
pub const UNBOUND: &str = "";

/// The node a pod is bound to, or [`UNBOUND`] (the pods informer's index).
pub fn pod_node(p: &CachedPod) -> Option<String> {
    Some(
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
    )
}

/// Copies of every object an informer holds.
pub fn cached<K: kube::Resource<DynamicType = ()> + Clone + 'static>(i: &Informer<K>) -> Vec<K> {
    i.state().iter().map(|o| (**o).clone()).collect()
}

impl Informers {
    /// Starts every watch; they run until `stop`.
    pub fn spawn(client: &kube::Client, stop: &tokio::sync::watch::Receiver<bool>) -> Informers {
        // One watch of every object of kind K, cluster-wide.
        fn start<K>(client: &kube::Client, stop: &tokio::sync::watch::Receiver<bool>) -> Informer<K>
        where
            K: kube::Resource<DynamicType = ()>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
        {
            Informer::spawn(
                Api::all(client.clone()),
                watcher::Config::default(),
                stop.clone(),
            )
        }
        Informers {
            // Pods are also found by their node (the node lifecycle's evictions, the
            // scheduler's per-node view and its queue of unbound pods).
            pods: Informer::spawn_indexed(
                Api::all(client.clone()),
                watcher::Config::default(),
                stop.clone(),
                Some(pod_node),
            ),
            nodes: start(client, stop),
            namespaces: start(client, stop),
            replicasets: start(client, stop),
            replication_controllers: start(client, stop),
            deployments: start(client, stop),
            statefulsets: start(client, stop),
            revisions: start(client, stop),
            daemonsets: start(client, stop),
            jobs: start(client, stop),
            cronjobs: start(client, stop),
            claims: start(client, stop),
            volumes: start(client, stop),
            classes: start(client, stop),
            services: start(client, stop),
            endpoints: start(client, stop),
            endpoint_slices: start(client, stop),
            service_accounts: start(client, stop),
            root_ca_config_maps: Informer::spawn(
                Api::all(client.clone()),
                watcher::Config::default().fields("metadata.name=kube-root-ca.crt"),
                stop.clone(),
            ),
            pdbs: start(client, stop),
            node_leases: Informer::spawn(
                Api::namespaced(client.clone(), "kube-node-lease"),
                watcher::Config::default(),
                stop.clone(),
            ),
        }
    }

    /// Waits until every cache holds its first complete list.
    pub async fn synced(&self) {
        self.pods.synced().await;
        self.nodes.synced().await;
        self.namespaces.synced().await;
        self.replicasets.synced().await;
        self.replication_controllers.synced().await;
        self.deployments.synced().await;
        self.statefulsets.synced().await;
        self.revisions.synced().await;
        self.daemonsets.synced().await;
        self.jobs.synced().await;
        self.cronjobs.synced().await;
        self.claims.synced().await;
        self.volumes.synced().await;
        self.classes.synced().await;
        self.services.synced().await;
        self.endpoints.synced().await;
        self.endpoint_slices.synced().await;
        self.service_accounts.synced().await;
        self.root_ca_config_maps.synced().await;
        self.node_leases.synced().await;
        self.pdbs.synced().await;
    }
}
