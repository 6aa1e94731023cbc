//! The cluster-wide loop: each pass takes one inventory of every object (found by
//! discovery) and runs the garbage collector and the namespace controller over it,
//! then the service-account, endpoints, persistent-volume and node-lifecycle passes.

use crate::gc::{self, Resources};
use kube::Client;
use std::time::{Duration, Instant};

/// What the cluster loop needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time between passes.
    pub period: Duration,
    /// A node whose Lease is older than this is unreachable (Kubernetes: 40 s).
    pub node_monitor_grace_period: Duration,
    /// The cluster CA (PEM), published as `kube-root-ca.crt` in every namespace.
    pub ca_pem: Option<String>,
    /// The pods' address range; nodes without a pod CIDR get a /24 of it.
    pub cluster_cidr: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            period: Duration::from_millis(500),
            node_monitor_grace_period: Duration::from_secs(40),
            ca_pem: None,
            cluster_cidr: None,
        }
    }
}

/// How often discovery is run again.
const REDISCOVER: Duration = Duration::from_secs(30);

/// Run the cluster passes until `shutdown`.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut resources: Option<(Resources, Instant)> = None;
    let mut nodes = crate::nodes::NodeMonitor::default();
    let mut ticker = crate::Ticker::new(settings.period, shutdown);
    while ticker.tick().await {
        if resources
            .as_ref()
            .is_none_or(|(_, t)| t.elapsed() > REDISCOVER)
        {
            match Resources::discover(&client).await {
                Ok(r) => resources = Some((r, Instant::now())),
                Err(e) => tracing::warn!(error = %e, "discovery"),
            }
        }
        if let Some((res, _)) = resources.as_ref() {
            match gc::inventory(&client, res).await {
                Ok(items) => {
                    gc::collect(&client, res, &items).await;
                    crate::namespaces::sync_namespaces(&client, res, &items).await;
                }
                Err(e) => tracing::warn!(error = %e, "inventory"),
            }
        }
        if let Some(cidr) = &settings.cluster_cidr {
            if let Err(e) = crate::nodeipam::sync(&client, cidr).await {
                tracing::warn!(error = %e, "allocating pod CIDRs");
            }
        }
        for r in [
            crate::serviceaccounts::sync(&client, settings.ca_pem.as_deref()).await,
            crate::endpoints::sync(&client).await,
            crate::persistentvolumes::sync(&client).await,
            nodes
                .sync(&client, settings.node_monitor_grace_period)
                .await,
        ] {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cluster pass");
            }
        }
    }
}
