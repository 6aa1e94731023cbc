//! `skiff agent --hollow N`: N simulated nodes in one process (kubemark's hollow
//! nodes). Each joins with the token (its own CertificateSigningRequest and client
//! certificate), waits for its pod CIDR, registers its Node and renews its Lease, and
//! runs the real node agent loop over [`skiff_agent::hollow::HollowRuntime`]: pods are
//! reported Running with an address of the node's range, nothing runs on this host.
//! No streaming endpoint, service proxy, DNS, routes or host ports: a hollow node's
//! pod addresses are never routed. The nodes share one watch of the Services.

use crate::agent::AgentFlags;
use anyhow::{anyhow, Result};
use futures::StreamExt;
use std::sync::Arc;

/// Open files a hollow node may hold: its API connections (a pod watch, requests,
/// Events) and slack.
const FILES_PER_NODE: u64 = 4;
/// Open files the process needs besides its nodes.
const FILES_BASE: u64 = 256;
/// Memory a hollow node may take (its client, caches and tasks, with pods), measured
/// with 100 nodes of 10 pods at under a third of this.
const BYTES_PER_NODE: u64 = 3 << 20;
/// How often a hollow node passes over its pods besides when they change.
const HOLLOW_SYNC_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// Joins under way at once.
const JOINING: usize = 16;

/// Raises the soft open-files limit to the hard one; the limit now.
fn raise_open_files() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Whether this machine can hold `n` hollow nodes: open files and memory. Says what
/// is short and what to do.
pub fn check_capacity(n: u32, open_files: u64, mem_available: u64) -> Result<()> {
    let n64 = u64::from(n);
    if n == 0 {
        return Err(anyhow!(
            "--hollow 0: give the number of hollow nodes to run (1 or more)"
        ));
    }
    let files = FILES_BASE + n64 * FILES_PER_NODE;
    if files > open_files {
        return Err(anyhow!(
            "--hollow {n}: {n} hollow nodes need about {files} open files, and this process may open {open_files} (ulimit -n); raise the limit or run at most {} nodes",
            open_files.saturating_sub(FILES_BASE) / FILES_PER_NODE
        ));
    }
    let bytes = n64 * BYTES_PER_NODE;
    if bytes > mem_available {
        return Err(anyhow!(
            "--hollow {n}: {n} hollow nodes need about {} MiB of memory, and {} MiB is available; run at most {} nodes per process",
            bytes >> 20,
            mem_available >> 20,
            mem_available / BYTES_PER_NODE
        ));
    }
    Ok(())
}

/// Whether the cluster's pod range (`cluster_cidr`) has a /24 for each of `new_nodes`
/// nodes, beside the `others` nodes that hold one already.
pub fn check_pod_ranges(
    cluster_cidr: skiff_meta::netconf::Ipv4Net,
    new_nodes: u64,
    others: u64,
) -> Result<()> {
    let prefix = u32::from(cluster_cidr.prefix_len());
    let blocks = if prefix > 24 {
        0
    } else {
        1u64 << (24 - prefix)
    };
    if others + new_nodes > blocks {
        return Err(anyhow!(
            "the cluster's --cluster-cidr {cluster_cidr} holds {blocks} node ranges (/24), {others} of them taken: {new_nodes} more hollow nodes do not fit; start the server with a larger range that does not overlap the service range (e.g. --cluster-cidr 10.64.0.0/11 holds 8192)"
        ));
    }
    Ok(())
}

fn mem_available() -> u64 {
    skiff_runtime::sys::meminfo("MemAvailable:").unwrap_or(0)
}

/// `skiff agent --hollow N`.
pub fn run(f: AgentFlags) -> Result<i32> {
    let n = f.hollow.unwrap_or(0);
    check_capacity(n, raise_open_files(), mem_available())?;
    crate::logging::init_daemon(&f.log)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("starting the agent runtime: {e}"))?;
    rt.block_on(run_nodes(f, n))
}

async fn run_nodes(f: AgentFlags, n: u32) -> Result<i32> {
    let (Some(server), Some(token)) = (f.server.clone(), f.token.clone()) else {
        return Err(anyhow!("--server and --token are required to join"));
    };
    let prefix = f.node_name.clone().unwrap_or_else(|| "hollow-node".into());
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let dir = f.data_dir.join("hollow");
    // The first node proves the token and reads the cluster's network; the range is
    // checked before any other joins.
    let (_, first) =
        skiff_agent::join::join(&server, &token, &names[0], &dir.join(&names[0])).await?;
    let network = skiff_agent::join::cluster_network(&first, &server).await?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(first.clone());
    let existing = nodes
        .list_metadata(&Default::default())
        .await
        .map_err(|e| anyhow!("listing the cluster's nodes: {e}"))?;
    let ours: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let (mine, others) = existing.items.iter().fold((0u64, 0u64), |(m, o), node| {
        match node.metadata.name.as_deref() {
            Some(x) if ours.contains(x) => (m + 1, o),
            _ => (m, o + 1),
        }
    });
    check_pod_ranges(network.cluster_cidr, u64::from(n) - mine, others + mine)?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let services = skiff_agent::kubelet::services_informer(&first, stop_rx.clone());
    let network = Arc::new(network);
    let f = Arc::new(f);
    let joined = futures::stream::iter(names.clone())
        .map(|name| {
            let (f, network, services, stop_rx) = (
                f.clone(),
                network.clone(),
                services.clone(),
                stop_rx.clone(),
            );
            let (server, token, dir) = (server.clone(), token.clone(), dir.join(&name));
            async move {
                start_node(
                    &f, &server, &token, &name, &dir, &network, services, stop_rx,
                )
                .await
                .map_err(|e| anyhow!("hollow node {name}: {e}"))
            }
        })
        .buffer_unordered(JOINING)
        .collect::<Vec<_>>()
        .await;
    let mut tasks = Vec::new();
    for j in joined {
        match j {
            Ok(t) => tasks.push(t),
            Err(e) => {
                let _ = stop_tx.send(true);
                return Err(e);
            }
        }
    }
    eprintln!(
        "skiff agent: {n} hollow nodes ({} … {}) joined {server}",
        names[0],
        names[names.len() - 1]
    );
    crate::agent::wait_for_signal().await?;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(0)
}

/// Joins hollow node `name` and starts its agent loop, which ends at `stop`.
#[allow(clippy::too_many_arguments)]
async fn start_node(
    f: &AgentFlags,
    server: &str,
    token: &str,
    name: &str,
    dir: &std::path::Path,
    network: &skiff_meta::netconf::ClusterNetwork,
    services: skiff_informer::Informer<k8s_openapi::api::core::v1::Service>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let (_, client) = skiff_agent::join::join(server, token, name, dir).await?;
    let pod_cidr = skiff_agent::kubelet::node::await_pod_cidr(&client, name).await?;
    // No streaming endpoint: port 0 in the Node says so.
    let mut cfg = crate::agent::agent_config(
        name.to_string(),
        f.node_ip.clone(),
        0,
        &pod_cidr,
        network,
        dir,
    )?;
    f.node.apply(&mut cfg)?;
    // Nothing exits on its own on a hollow node: its pass over its pods runs as
    // often as the kubelet's relist (1 s), not every 100 ms as a real node's.
    cfg.sync_period = HOLLOW_SYNC_PERIOD;
    let runtime =
        skiff_agent::hollow::HollowRuntime::new(&pod_cidr, f.hollow_start_delay, dir.to_path_buf())
            .map_err(|e| anyhow!(e))?;
    let name = name.to_string();
    Ok(tokio::spawn(async move {
        let done = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) =
            skiff_agent::kubelet::run_with(client, Arc::new(runtime), cfg, services, done).await
        {
            eprintln!("skiff: hollow node {name}: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_checked_before_anything_starts() {
        assert!(check_capacity(100, 20_000, 8 << 30).is_ok());
        let e = check_capacity(0, 20_000, 8 << 30).unwrap_err().to_string();
        assert!(e.contains("1 or more"), "{e}");
        let e = check_capacity(10_000, 20_000, 64 << 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("open files") && e.contains("run at most 4936"),
            "{e}"
        );
        let e = check_capacity(1_000, 1 << 20, 1 << 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MiB of memory") && e.contains("at most 341"),
            "{e}"
        );
    }

    #[test]
    fn pod_ranges_must_hold_every_node() {
        let c = |s: &str| s.parse().unwrap();
        assert!(check_pod_ranges(c("10.42.0.0/16"), 200, 56).is_ok());
        let e = check_pod_ranges(c("10.42.0.0/16"), 200, 57)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds 256") && e.contains("57 of them taken"),
            "{e}"
        );
        assert!(check_pod_ranges(c("10.64.0.0/11"), 5_000, 1).is_ok());
        assert!(check_pod_ranges(c("10.64.0.0/25"), 1, 0).is_err());
    }
}
