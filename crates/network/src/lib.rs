//! skiff-network: the node's part of the cluster network.
//!
//! - [`routes`]: pods across nodes (flannel's job): VXLAN or host-gw routes to every
//!   other node's pod CIDR, from the annotations each node publishes.

pub mod routes;
