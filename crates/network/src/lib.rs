//! skiff-network: the node's network work that Kubernetes leaves to kube-proxy and the
//! CNI. Today: the service proxy (kube-proxy's nftables mode, `proxy`), over our own
//! nftables transaction IR (`nft`), started by the node agent with [`run`].

pub mod conntrack;
pub mod nft;
pub mod proxy;
mod run;

pub use run::{cleanup, run, run_with, ProxyError, ProxySettings, DEFAULT_TABLE};
