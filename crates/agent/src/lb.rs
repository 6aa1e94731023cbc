//! The agent's client-side load balancer over the cluster's servers (k3s's agent
//! `loadbalancer`): a TCP proxy on `127.0.0.1:<--lb-server-port>` that the agent's
//! API client uses. Each connection goes to the server that last answered, else to the
//! others in turn; the server list starts with `--server`, is learned from the
//! `kubernetes` Service's EndpointSlices through a watch (every live server, see the
//! API server's endpoint reconciler) and is kept in `<data-dir>/lb-servers.json` for the next start.
//! TLS passes through untouched: every server's certificate is issued by the cluster's
//! CA and names 127.0.0.1, so the client checks the server it reached.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct Servers {
    /// `host:port`, in the order they are tried.
    list: Vec<String>,
    /// The one that answered last.
    preferred: Option<String>,
}

/// A running load balancer.
#[derive(Clone)]
pub struct LoadBalancer {
    local: SocketAddr,
    servers: Arc<Mutex<Servers>>,
    /// The `--server` the agent was given: always kept in the list, last.
    default: String,
    state: Option<PathBuf>,
}

/// `host:port` of an `https://host:port` URL.
pub fn host_port(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("--server {url}: not an https:// URL"))?;
    let hp = rest.trim_end_matches('/');
    if hp.contains('/') || hp.is_empty() {
        return Err(format!("--server {url}: a path is not expected"));
    }
    Ok(
        if hp
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hp.to_string()
        } else {
            format!("{hp}:6443")
        },
    )
}

impl LoadBalancer {
    /// Listens on `bind` and proxies to `server` (a `--server` URL) and the servers
    /// remembered in `state` from an earlier run.
    pub async fn start(
        bind: SocketAddr,
        server: &str,
        state: Option<PathBuf>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<LoadBalancer, String> {
        let default = host_port(server)?;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| format!("the API load balancer on {bind} (--lb-server-port): {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("the API load balancer's address: {e}"))?;
        let remembered: Vec<String> = state
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let lb = LoadBalancer {
            local,
            servers: Arc::default(),
            default,
            state,
        };
        lb.set_servers(remembered);
        let me = lb.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = stop.changed() => return,
                };
                match conn {
                    Ok((client, _)) => {
                        let me = me.clone();
                        tokio::spawn(async move { me.proxy(client).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting on the API load balancer");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tracing::info!(listen = %local, server = %lb.default, "API load balancer started");
        Ok(lb)
    }

    /// The URL the agent's clients use.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    /// The servers, in the order a connection tries them.
    pub fn servers(&self) -> Vec<String> {
        let s = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = s.preferred.iter().cloned().collect();
        out.extend(
            s.list
                .iter()
                .filter(|x| Some(*x) != s.preferred.as_ref())
                .cloned(),
        );
        out
    }

    /// Replaces the learned servers (the `--server` one stays, last).
    pub fn set_servers(&self, mut learned: Vec<String>) {
        learned.retain(|s| s != &self.default);
        learned.sort();
        learned.dedup();
        let mut list = learned.clone();
        list.push(self.default.clone());
        let mut s = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if s.preferred.as_ref().is_some_and(|p| !list.contains(p)) {
            s.preferred = None;
        }
        if s.list != list {
            tracing::info!(servers = ?list, "API servers");
            s.list = list;
            if let Some(path) = &self.state {
                if let Ok(b) = serde_json::to_vec(&learned) {
                    let _ = std::fs::write(path, b);
                }
            }
        }
    }

    async fn proxy(&self, mut client: TcpStream) {
        for server in self.servers() {
            match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&server)).await {
                Ok(Ok(mut upstream)) => {
                    {
                        let mut s = self.servers.lock().unwrap_or_else(|e| e.into_inner());
                        if s.preferred.as_ref() != Some(&server) {
                            tracing::info!(server = %server, "API load balancer: using this server");
                            s.preferred = Some(server.clone());
                        }
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(server = %server, error = %e, "API server unreachable")
                }
                Err(_) => tracing::debug!(server = %server, "API server did not answer in time"),
            }
        }
        tracing::warn!("API load balancer: no server answered");
    }
}

/// The servers an EndpointSlice of the `kubernetes` Service lists (`host:port`).
fn slice_servers(slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Vec<String> {
    let Some(port) = slice
        .ports
        .as_ref()
        .and_then(|p| p.iter().find_map(|p| p.port))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ep in &slice.endpoints {
        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        for a in &ep.addresses {
            out.push(match a.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
                _ => format!("{a}:{port}"),
            });
        }
    }
    out
}

/// Keeps the server list current from the `kubernetes` Service's EndpointSlices (a
/// watch, as k3s's agents watch the endpoints: thousands of agents cost the API
/// server no polling), until `stop`.
pub async fn follow_endpoints(
    lb: LoadBalancer,
    client: kube::Client,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures::StreamExt;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    // Every event, InitDone included: the store shows a re-list only once it is done.
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "default");
    let (store, writer) = reflector::store::<EndpointSlice>();
    let cfg = watcher::Config::default().labels("kubernetes.io/service-name=kubernetes");
    let stream = reflector(writer, watcher(api, cfg).default_backoff());
    tokio::pin!(stream);
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(_)) => {
                    let servers: Vec<String> = store.state().iter().flat_map(|s| slice_servers(s)).collect();
                    if !servers.is_empty() {
                        lb.set_servers(servers);
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "watching the kubernetes endpoints"),
                None => return,
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_host_ports() {
        assert_eq!(host_port("https://10.0.0.1:6443").unwrap(), "10.0.0.1:6443");
        assert_eq!(host_port("https://server/").unwrap(), "server:6443");
        assert!(host_port("http://10.0.0.1:6443").is_err());
        assert!(host_port("https://h:1/x").is_err());
    }

    #[tokio::test]
    async fn connections_go_to_a_live_server_and_move_when_it_dies() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Two "servers" answering their own name.
        let serve = |name: &'static str| async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let task = tokio::spawn(async move {
                while let Ok((mut c, _)) = l.accept().await {
                    let _ = c.write_all(name.as_bytes()).await;
                }
            });
            (addr, task)
        };
        let (a, a_task) = serve("a").await;
        let (b, _b_task) = serve("b").await;
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("lb.json");
        let lb = LoadBalancer::start(
            "127.0.0.1:0".parse().unwrap(),
            &format!("https://{a}"),
            Some(state.clone()),
            rx.clone(),
        )
        .await
        .unwrap();
        lb.set_servers(vec![b.to_string(), a.to_string()]);
        let read = || async {
            let mut c = TcpStream::connect(lb.local).await.unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).await.unwrap();
            s
        };
        // b is tried first (learned servers before the default), then stays preferred.
        assert_eq!(read().await, "b");
        lb.set_servers(vec![]);
        assert_eq!(lb.servers(), vec![a.to_string()]);
        assert_eq!(read().await, "a");
        lb.set_servers(vec![b.to_string()]);
        a_task.abort();
        let _ = a_task.await;
        // a is gone: the next connection moves to b.
        assert_eq!(read().await, "b");
        // What was learned is remembered for the next start.
        let again = LoadBalancer::start(
            "127.0.0.1:0".parse().unwrap(),
            &format!("https://{a}"),
            Some(state),
            rx,
        )
        .await
        .unwrap();
        assert_eq!(again.servers(), vec![b.to_string(), a.to_string()]);
    }
}
