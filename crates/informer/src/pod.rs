//! The pod as the shared pods informer keeps it: what the controllers and the scheduler
//! read, decoded straight from the watch's JSON and nothing more.
//!
//! k8s-openapi's `Pod` keeps every optional field inline (a `Container` is 2.1 KB with
//! its probes, lifecycle and security context empty, the `Pod` 2.2 KB, a `Volume` 3.2 KB
//! with every volume source), so a decoded pending pod of a Deployment costs ~8 KB
//! however little of it is set; at 150,000 pods that was most of the server's memory.
//! [`CachedPod`] has the same field names and types as `Pod` for the fields it keeps,
//! so a reader's `pod.spec.as_ref().and_then(|s| s.node_name…)` reads alike; what it
//! does not keep is not there to read (the compiler says so), and fields the JSON has
//! that it does not know are skipped by the decoder without being allocated.

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, EphemeralVolumeSource, PersistentVolumeClaimVolumeSource, Pod,
    PodCondition, PodSchedulingGate, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The pod annotations a reader of the cache reads (the Job controller: which index a
/// pod of an Indexed Job runs); a cached pod keeps no other.
pub const KEPT_ANNOTATIONS: &[&str] = &["batch.kubernetes.io/job-completion-index"];

/// A pod as the shared pods informer caches it (see the module's doc).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CachedPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<CachedPodSpec>,
    #[serde(default)]
    pub status: Option<CachedPodStatus>,
}

/// Of a pod's spec, what scheduling, the workload controllers, endpoints, disruption
/// budgets, volumes and the node lifecycle read.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodSpec {
    #[serde(default)]
    pub affinity: Option<Box<Affinity>>,
    #[serde(default)]
    pub containers: Vec<CachedContainer>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub init_containers: Option<Vec<CachedContainer>>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub overhead: Option<BTreeMap<String, Quantity>>,
    #[serde(default)]
    pub preemption_policy: Option<String>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub restart_policy: Option<String>,
    #[serde(default)]
    pub scheduler_name: Option<String>,
    #[serde(default)]
    pub scheduling_gates: Option<Vec<PodSchedulingGate>>,
    #[serde(default)]
    pub subdomain: Option<String>,
    #[serde(default)]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default)]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Only the claims (persistentVolumeClaim, ephemeral): no reader looks at any other
    /// volume source.
    #[serde(default, deserialize_with = "claim_volumes")]
    pub volumes: Option<Vec<CachedVolume>>,
}

/// Of a container: its name, image, ports, resources and restart policy (a sidecar's
/// `Always` counts in the pod's requests).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedContainer {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default)]
    pub resources: Option<CachedResources>,
    #[serde(default)]
    pub restart_policy: Option<String>,
}

/// A container's resource requests (the API server defaults missing requests from the
/// limits, so no reader needs the limits), as a list: a `BTreeMap` allocates a 0.5 KB
/// node for its first entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CachedResources {
    #[serde(default, deserialize_with = "resource_list")]
    pub requests: Option<ResourceList>,
}

/// Resource names and quantities, in name order.
pub type ResourceList = Vec<(String, Quantity)>;

fn resource_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ResourceList>, D::Error> {
    let map: Option<BTreeMap<String, Quantity>> = Option::deserialize(d)?;
    Ok(map.map(|m| m.into_iter().collect()))
}

/// A volume that claims storage.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedVolume {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    #[serde(default)]
    pub ephemeral: Option<Box<EphemeralVolumeSource>>,
}

/// Of a pod's status: its phase, conditions, first pod and host IP, start time, reason
/// and message. Container statuses are read by no controller.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodStatus {
    #[serde(default)]
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub nominated_node_name: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub start_time: Option<Time>,
}

fn claim_volumes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<CachedVolume>>, D::Error> {
    let all: Option<Vec<CachedVolume>> = Option::deserialize(d)?;
    Ok(all
        .map(|mut v| {
            v.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
            v.shrink_to_fit();
            v
        })
        .filter(|v| !v.is_empty()))
}

impl k8s_openapi::Resource for CachedPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for CachedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<&Pod> for CachedPod {
    /// What the cache would hold of `pod` (for a pod built in memory, such as a
    /// DaemonSet's template pod, and for tests).
    fn from(pod: &Pod) -> CachedPod {
        let mut c: CachedPod = serde_json::to_value(pod)
            .and_then(serde_json::from_value)
            .unwrap_or_default();
        c.shrink();
        c
    }
}

impl From<Pod> for CachedPod {
    fn from(pod: Pod) -> CachedPod {
        CachedPod::from(&pod)
    }
}

impl CachedPod {
    /// Drops what the decoder kept but no reader needs: managedFields (as every cached
    /// object), the annotations but [`KEPT_ANNOTATIONS`], and spare capacity.
    pub(crate) fn shrink(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(a) = self.metadata.annotations.as_mut() {
            a.retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
            if a.is_empty() {
                self.metadata.annotations = None;
            }
        }
        if let Some(status) = self.status.as_mut() {
            if let Some(c) = status.conditions.as_mut() {
                c.shrink_to_fit();
            }
        }
        if let Some(spec) = self.spec.as_mut() {
            spec.containers.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached pod keeps what the controllers and the scheduler read, and no more.
    #[test]
    fn a_cached_pod_keeps_what_its_readers_read() {
        let json = serde_json::json!({
            "metadata": {"name": "p", "namespace": "a", "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": "u1", "controller": true}]},
            "spec": {
                "nodeName": "n1", "priority": 5, "hostname": "h", "subdomain": "s",
                "nodeSelector": {"disk": "ssd"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}]}}},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "containers": [{"name": "web", "image": "nginx",
                    "env": [{"name": "A", "value": "1"}],
                    "command": ["nginx"],
                    "ports": [{"name": "http", "containerPort": 80}],
                    "resources": {"requests": {"cpu": "100m"}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/x"}]}],
                "initContainers": [{"name": "sidecar", "image": "envoy", "restartPolicy": "Always",
                    "args": ["-c"], "resources": {"requests": {"memory": "64Mi"}}}],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "c"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "token", "projected": {"sources": []}}
                ]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.5", "hostIP": "192.168.1.2",
                "podIPs": [{"ip": "10.0.0.5"}], "qosClass": "Burstable",
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "image": "nginx", "imageID": "sha256:1",
                    "ready": true, "restartCount": 2, "state": {"running": {}}}]}
        });
        let pod: Pod = serde_json::from_value(json.clone()).expect("pod");
        let cached: CachedPod = serde_json::from_value(json).expect("cached pod");
        // Decoded from the watch's JSON or converted from a Pod, the same.
        assert_eq!(CachedPod::from(&pod), cached);
        assert_eq!(cached.metadata, pod.metadata);
        // Of the annotations only those a reader reads.
        assert_eq!(
            CachedPod::from(
                &serde_json::from_value::<Pod>(serde_json::json!({"metadata": {
                "name": "x", "annotations": {"a": "1", KEPT_ANNOTATIONS[0]: "3"}}}))
                .expect("pod")
            )
            .metadata
            .annotations
            .expect("kept")
            .into_keys()
            .collect::<Vec<_>>(),
            [KEPT_ANNOTATIONS[0]]
        );
        let (status, was) = (
            cached.status.expect("status"),
            pod.status.clone().expect("status"),
        );
        assert_eq!(
            (
                &status.phase,
                &status.pod_ip,
                &status.host_ip,
                &status.start_time,
                &status.conditions
            ),
            (
                &was.phase,
                &was.pod_ip,
                &was.host_ip,
                &was.start_time,
                &was.conditions
            )
        );
        let (spec, was) = (cached.spec.expect("spec"), pod.spec.expect("spec"));
        assert_eq!(
            (&spec.node_name, &spec.tolerations, &spec.priority),
            (&was.node_name, &was.tolerations, &was.priority)
        );
        assert_eq!(
            (&spec.hostname, &spec.subdomain, &spec.node_selector),
            (&was.hostname, &was.subdomain, &was.node_selector)
        );
        assert_eq!(spec.affinity.as_deref(), was.affinity.as_ref());
        let volumes: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data", "scratch"]);
        let c = &spec.containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_deref()),
            ("web", Some("nginx"))
        );
        assert_eq!(c.ports, was.containers[0].ports);
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        assert_eq!(
            requests.expect("requests"),
            &[("cpu".to_string(), Quantity("100m".into()))]
        );
        let init = &spec.init_containers.expect("init")[0];
        assert_eq!(init.restart_policy.as_deref(), Some("Always"));
        assert!(init.resources.is_some());
        // A pod without claims keeps no volumes at all.
        let bare: CachedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "q"},
            "spec": {"containers": [], "volumes": [{"name": "cfg", "configMap": {"name": "c"}}]}
        }))
        .expect("pod");
        assert_eq!(bare.spec.expect("spec").volumes, None);
    }
}
