//! skiff-network: the node's part of the cluster network.
//!
//! - [`clusterzone`]: the cluster's DNS records (the Kubernetes DNS specification,
//!   as CoreDNS answers it), a snapshot built from Services and EndpointSlices;
//! - [`clusterdns`]: the node's live copy of that zone, from watches;
//! - [`routes`]: pods across nodes (flannel's job): VXLAN or host-gw routes to every
//!   other node's pod CIDR, from the annotations each node publishes.

pub mod clusterdns;
pub mod clusterzone;
pub mod routes;
