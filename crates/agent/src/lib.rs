//! skiff-agent: the node agent (the kubelet's job).
//!
//! Owns turning Pods into sandboxes and containers on the engine. A pod's way is
//! one direction: the sync loop ([`kubelet`]) hands it to the pod worker ([`pod`]:
//! start, stop, refresh one pod), which has its spec translated ([`podspec`]: command
//! and args against the image, environment, resources and QoS, security context, the
//! managed /etc/hosts) and runs it through a CRI-shaped runtime interface ([`cri`]),
//! with skiff's engine behind it. What is read from the API goes through
//! [`lookup`], Events through [`events`]. Volumes, probes, eviction, image garbage
//! collection, streaming and joining a cluster have their own modules. It knows
//! nothing of how the API server stores objects.

pub mod cleanup;
pub mod cri;
pub mod dnsconfig;
pub mod events;
pub mod eviction;
pub mod hollow;
pub mod hostports;
pub mod imagegc;
pub mod join;
pub mod kubelet;
pub mod lb;
pub mod lookup;
pub mod pod;
pub mod podspec;
pub mod pressure;
pub mod probe;
pub mod prober;
pub mod pull;
pub mod streaming;
pub mod volumes;

/// The field manager of the agent's writes (the kubelet's own name in managedFields).
pub const FIELD_MANAGER: &str = "kubelet";
