//! skiff-network: the node's network work that Kubernetes leaves to kube-proxy, the
//! CNI and CoreDNS:
//!
//! - the service proxy (kube-proxy's nftables mode, `proxy`), over our own nftables
//!   transaction IR (`nft`), started by the node agent with [`run`];
//! - [`routes`]: pods across nodes (flannel's job): VXLAN or host-gw routes to every
//!   other node's pod CIDR, from the annotations each node publishes;
//! - [`clusterzone`]: the cluster's DNS records (the Kubernetes DNS specification,
//!   as CoreDNS answers it), a snapshot built from Services and EndpointSlices;
//! - [`clusterdns`]: the node's live copy of that zone, from watches.

pub mod clusterdns;
pub mod clusterzone;
pub mod conntrack;
pub mod nft;
pub mod proxy;
pub mod routes;
mod run;

pub use run::{cleanup, run, run_with, ProxyError, ProxySettings, DEFAULT_TABLE};
