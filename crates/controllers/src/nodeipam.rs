//! Node IPAM (kube-controller-manager's range allocator): every Node without
//! `spec.podCIDR` gets the next free /24 of the cluster CIDR.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch};
use kube::Client;
use serde_json::json;
use std::net::Ipv4Addr;

/// Why a cluster CIDR cannot be cut into /24 blocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n` with an IPv4 address.
    #[error("invalid cluster CIDR {0:?}")]
    Invalid(String),
    /// A prefix longer than /24 holds no whole block.
    #[error("the cluster CIDR {0:?} must be /24 or larger")]
    TooSmall(String),
}

/// The /24 blocks of `cluster_cidr` (`a.b.c.d/n`, n ≤ 24), in order.
pub fn blocks(cluster_cidr: &str) -> Result<Vec<String>, CidrError> {
    let invalid = || CidrError::Invalid(cluster_cidr.to_string());
    let (addr, len) = cluster_cidr.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let len: u32 = len.parse().map_err(|_| invalid())?;
    if len > 24 {
        return Err(CidrError::TooSmall(cluster_cidr.to_string()));
    }
    let base = u32::from(addr) & (u32::MAX.checked_shl(32 - len).unwrap_or(0));
    let count = 1u32 << (24 - len);
    Ok((0..count)
        .map(|i| format!("{}/24", Ipv4Addr::from(base + (i << 8))))
        .collect())
}

/// Allocates pod CIDRs to nodes that have none.
pub async fn sync(client: &Client, cluster_cidr: &str) -> Result<(), kube::Error> {
    let Ok(all) = blocks(cluster_cidr) else {
        return Ok(());
    };
    let api: Api<Node> = Api::all(client.clone());
    let nodes = api.list(&ListParams::default()).await?.items;
    let mut used: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
        .filter(|c| !c.is_empty())
        .collect();
    for n in &nodes {
        let has = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .is_some_and(|c| !c.is_empty());
        if has {
            continue;
        }
        let Some(free) = all.iter().find(|b| !used.contains(b)).cloned() else {
            tracing::warn!(
                "no pod CIDR left in {cluster_cidr} for node {:?}",
                n.metadata.name
            );
            return Ok(());
        };
        let name = n.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &crate::patch_params(),
            &Patch::Merge(json!({"spec": {"podCIDR": free, "podCIDRs": [free]}})),
        )
        .await?;
        used.push(free);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_cidr_splits_into_24s() {
        let b = blocks("10.42.0.0/16").unwrap();
        assert_eq!(b.len(), 256);
        assert_eq!(b[0], "10.42.0.0/24");
        assert_eq!(b[1], "10.42.1.0/24");
        assert_eq!(blocks("10.201.7.0/24").unwrap(), vec!["10.201.7.0/24"]);
        assert!(blocks("10.0.0.0/25").is_err());
        assert!(blocks("nonsense").is_err());
    }
}
