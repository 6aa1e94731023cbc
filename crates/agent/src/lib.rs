//! skiff-agent: the node agent (the kubelet's job).
//!
//! Owns turning Pods into sandboxes and containers on the engine: the pod
//! translation rules (command/args against the image, environment, resources and
//! QoS, security context, the managed /etc/hosts), and, as it grows, pod workers,
//! volumes, probes, status, streaming, and node registration. It talks to the
//! engine only through a CRI-shaped runtime interface ([`cri`]), with skiff's engine
//! behind it; it knows nothing of how the API server stores objects.

pub mod cri;
pub mod eviction;
pub mod hostports;
pub mod imagegc;
pub mod join;
pub mod kubelet;
pub mod pod;
pub mod podspec;
pub mod pressure;
pub mod probe;
pub mod prober;
pub mod streaming;
pub mod volumes;
