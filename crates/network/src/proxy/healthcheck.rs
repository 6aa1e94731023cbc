//! The `healthCheckNodePort` of LoadBalancer Services with `externalTrafficPolicy:
//! Local` (kube-proxy's `healthcheck.ServiceHealthServer`): an HTTP listener per port
//! answering 200 when this node has a local endpoint for the Service and 503 when it
//! has none, so load balancers send only to nodes that keep the client's address.

use super::model::{key_of, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// One Service's health as a node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub namespace: String,
    pub name: String,
    /// Ready endpoints on this node, counted once per address and port.
    pub local_endpoints: usize,
}

impl Health {
    /// The status and JSON body kube-proxy answers with.
    pub fn response(&self) -> (u16, String) {
        let body = serde_json::json!({
            "service": {"namespace": self.namespace, "name": self.name},
            "localEndpoints": self.local_endpoints,
            "serviceProxyHealthy": true,
        });
        let status = if self.local_endpoints > 0 { 200 } else { 503 };
        (status, body.to_string())
    }
}

/// The health check ports `snap` asks for, with each Service's local endpoints.
pub fn wanted(snap: &Snapshot, node_name: &str) -> BTreeMap<u16, Health> {
    let mut out = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for svc in &snap.services {
        let Some(spec) = &svc.spec else { continue };
        let port = spec
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0);
        if spec.type_.as_deref() != Some("LoadBalancer")
            || spec.external_traffic_policy.as_deref() != Some("Local")
        {
            continue;
        }
        let (Some(port), Some(key)) = (port, key_of(svc)) else {
            continue;
        };
        keys.insert(key);
        out.insert(
            port,
            Health {
                namespace: svc.metadata.namespace.clone().unwrap_or_default(),
                name: svc.metadata.name.clone().unwrap_or_default(),
                local_endpoints: 0,
            },
        );
    }
    if out.is_empty() {
        return out;
    }
    let mut local: BTreeMap<String, BTreeSet<(std::net::Ipv4Addr, u16)>> = BTreeMap::new();
    for (key, ports) in super::model::build(snap, node_name, Some(&keys)) {
        let eps = local.entry(key).or_default();
        for sp in ports {
            eps.extend(
                sp.endpoints
                    .iter()
                    .filter(|e| e.local && e.ready)
                    .map(|e| (e.ip, e.port)),
            );
        }
    }
    for h in out.values_mut() {
        let key = super::model::service_key(&h.namespace, &h.name);
        h.local_endpoints = local.get(&key).map_or(0, BTreeSet::len);
    }
    out
}

/// Opens the listener of one port (tests open it in another network namespace).
pub type Bind = Box<dyn Fn(u16) -> std::io::Result<std::net::TcpListener> + Send + Sync>;

/// The listeners, one task each, answering from shared state.
pub struct HealthServer {
    bind: Bind,
    state: Arc<Mutex<BTreeMap<u16, Health>>>,
    tasks: BTreeMap<u16, JoinHandle<()>>,
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.abort();
        }
    }
}

/// Listens on 0.0.0.0 in the process's network namespace.
pub fn bind_any(port: u16) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(("0.0.0.0", port))
}

async fn answer(
    mut conn: tokio::net::TcpStream,
    state: Arc<Mutex<BTreeMap<u16, Health>>>,
    port: u16,
) {
    // The request does not matter (kube-proxy answers any path); read its head.
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(1), conn.read(&mut buf)).await;
    if !matches!(read, Ok(Ok(_))) {
        return;
    }
    let health = state.lock().ok().and_then(|s| s.get(&port).cloned());
    let Some(health) = health else { return };
    let (status, body) = health.response();
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}

impl HealthServer {
    pub fn new(bind: Bind) -> Self {
        HealthServer {
            bind,
            state: Arc::default(),
            tasks: BTreeMap::new(),
        }
    }

    /// Serves exactly the ports of `wanted` from now on (within a tokio runtime).
    pub fn update(&mut self, wanted: BTreeMap<u16, Health>) {
        self.tasks.retain(|port, task| {
            let keep = wanted.contains_key(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for port in wanted.keys() {
            if self.tasks.contains_key(port) {
                continue;
            }
            let listener = (self.bind)(*port).and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            });
            let listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(port, error = %e, "cannot listen on the health check node port");
                    continue;
                }
            };
            let state = self.state.clone();
            let port = *port;
            self.tasks.insert(
                port,
                tokio::spawn(async move {
                    while let Ok((conn, _)) = listener.accept().await {
                        tokio::spawn(answer(conn, state.clone(), port));
                    }
                }),
            );
        }
        if let Ok(mut s) = self.state.lock() {
            *s = wanted;
        }
    }

    /// The ports served.
    pub fn ports(&self) -> Vec<u16> {
        self.tasks.keys().copied().collect()
    }
}
