//! hostPort: a container port published on the node, as the CNI portmap plugin does
//! (on every host address, or on `hostIP` when given), here by a userland TCP relay
//! in the agent to the pod's address. Listeners live as long as the pod runs on
//! this node; a restarted agent opens them again for the pods it re-adopts.

use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub host: SocketAddr,
    pub container_port: u16,
    pub protocol: String,
}

/// The hostPorts a pod asks for.
pub fn mappings(pod: &Pod) -> Vec<Mapping> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    if spec.host_network.unwrap_or(false) {
        // The container listens on the host already.
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            let ip: IpAddr = p
                .host_ip
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            out.push(Mapping {
                host: SocketAddr::new(ip, hp as u16),
                container_port: p.container_port as u16,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            });
        }
    }
    out
}

/// The relays of every pod, by uid.
#[derive(Default)]
pub struct HostPorts {
    open: Mutex<BTreeMap<String, Vec<tokio::task::JoinHandle<()>>>>,
}

impl HostPorts {
    /// Whether the pod's ports are already published.
    pub fn is_open(&self, uid: &str) -> bool {
        self.open
            .lock()
            .map(|m| m.contains_key(uid))
            .unwrap_or(false)
    }

    /// Publishes `ports` of the pod `uid` at `pod_ip`; returns what could not be
    /// published and why (the rest is published all the same).
    pub async fn open(&self, uid: &str, pod_ip: Ipv4Addr, ports: &[Mapping]) -> Vec<String> {
        let mut tasks = Vec::new();
        let mut errors = Vec::new();
        for m in ports {
            if !m.protocol.eq_ignore_ascii_case("TCP") {
                errors.push(format!(
                    "hostPort {} {}: only TCP host ports are supported",
                    m.host.port(),
                    m.protocol
                ));
                continue;
            }
            let listener = match tokio::net::TcpListener::bind(m.host).await {
                Ok(l) => l,
                Err(e) => {
                    errors.push(format!("hostPort {}: {e}", m.host));
                    continue;
                }
            };
            let target = SocketAddr::new(IpAddr::V4(pod_ip), m.container_port);
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            }));
        }
        if let Ok(mut m) = self.open.lock() {
            m.insert(uid.to_string(), tasks);
        }
        errors
    }

    /// Stops publishing the pod's ports.
    pub fn close(&self, uid: &str) {
        let tasks = self.open.lock().ok().and_then(|mut m| m.remove(uid));
        for t in tasks.into_iter().flatten() {
            t.abort();
        }
    }

    /// Stops publishing for pods not in `keep`.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .open
            .lock()
            .map(|m| m.keys().filter(|u| !keep(u)).cloned().collect())
            .unwrap_or_default();
        for uid in gone {
            self.close(&uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_come_from_container_ports() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 8080, "hostPort": 8001},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                {"containerPort": 9090}
            ]}]}
        }))
        .unwrap();
        let m = mappings(&pod);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].host, "0.0.0.0:8001".parse().unwrap());
        assert_eq!(m[0].container_port, 8080);
        assert_eq!(m[1].host, "127.0.0.1:5353".parse().unwrap());
        assert_eq!(m[1].protocol, "UDP");
    }
}
