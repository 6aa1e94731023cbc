//! The `kubernetes` Service's endpoints with several servers: kube-apiserver's "lease"
//! endpoint reconciler. Each server keeps a record `/masterleases/<ip>:<port>` in the
//! store, renewed every 10 s; a record not renewed for 15 s is dead and removed by
//! whichever server sees it. After each renewal a server rewrites the Endpoints and
//! EndpointSlices of `default/kubernetes` to list every live server (only when that
//! changes anything), and a server shutting down removes its own record first, so
//! clients (the agents' load balancers, in-cluster clients through the ClusterIP) move
//! to the others.

use crate::registry::Registry;
use crate::resources;
use crate::subresource::Subresource;
use serde_json::{json, Value};
use skiff_store::{RangeOptions, Store};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const PREFIX: &str = "/masterleases/";
pub const RENEW: Duration = Duration::from_secs(10);
pub const TTL: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn key(ip: IpAddr, port: u16) -> String {
    format!("{PREFIX}{ip}:{port}")
}

/// Writes (or renews) this server's record.
pub async fn renew(store: &dyn Store, ip: IpAddr, port: u16) -> Result<(), String> {
    let k = key(ip, port);
    let value =
        serde_json::to_vec(&json!({"ip": ip.to_string(), "port": port, "renewUnixMs": now_ms()}))
            .map_err(|e| e.to_string())?;
    let existing = store.get(k.as_bytes()).await.map_err(|e| e.to_string())?;
    match existing {
        Some(kv) => store
            .update(k.as_bytes(), value, Some(kv.mod_revision))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => store
            .create(k.as_bytes(), value)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// Removes every record: the embedded store serves one server, so any record there is
/// a previous run's (which may have listened on another port).
pub async fn clear(store: &dyn Store) -> Result<(), String> {
    let all = store
        .range(PREFIX.as_bytes(), RangeOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    for kv in all.kvs {
        let _ = store.delete(&kv.key, Some(kv.mod_revision)).await;
    }
    Ok(())
}

/// Removes this server's record (shutdown).
pub async fn remove(store: &dyn Store, ip: IpAddr, port: u16) {
    let _ = store.delete(key(ip, port).as_bytes(), None).await;
}

/// The live servers (address → port), deleting the records that expired.
pub async fn live(store: &dyn Store) -> Result<Vec<(IpAddr, u16)>, String> {
    let all = store
        .range(PREFIX.as_bytes(), RangeOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for kv in all.kvs {
        let v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        let ip = v
            .get("ip")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        let port = v
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        let renewed = v.get("renewUnixMs").and_then(Value::as_i64).unwrap_or(0);
        match (ip, port) {
            (Some(ip), Some(port)) if now_ms() - renewed <= TTL.as_millis() as i64 => {
                out.push((ip, port))
            }
            _ => {
                tracing::info!(server = %String::from_utf8_lossy(&kv.key[PREFIX.len()..]), "an API server's lease expired; removing it from the kubernetes endpoints");
                let _ = store.delete(&kv.key, Some(kv.mod_revision)).await;
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The Endpoints and EndpointSlices of `default/kubernetes` for `servers` (one subset and
/// one slice per port: servers on one machine differ by port).
fn desired(servers: &[(IpAddr, u16)]) -> (Value, Vec<(String, Value)>) {
    let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    for (ip, port) in servers {
        by_port.entry(*port).or_default().push(*ip);
    }
    let subsets: Vec<Value> = by_port
        .iter()
        .map(|(port, ips)| {
            json!({
                "addresses": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            })
        })
        .collect();
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    let slices = by_port
        .iter()
        .enumerate()
        .map(|(i, (port, ips))| {
            let name = if i == 0 {
                "kubernetes".to_string()
            } else {
                format!("kubernetes-{port}")
            };
            let family = if ips.first().is_some_and(|ip| ip.is_ipv6()) {
                "IPv6"
            } else {
                "IPv4"
            };
            let slice = json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": family,
                "endpoints": ips.iter().map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})).collect::<Vec<_>>(),
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            });
            (name, slice)
        })
        .collect();
    (endpoints, slices)
}

/// Creates or updates `name` to `want` (its metadata kept) unless it already says that.
async fn put(
    registry: &Registry,
    res: &crate::resource::Resource,
    name: &str,
    want: Value,
) -> Result<(), String> {
    let same = |old: &Value| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
                o.remove("apiVersion");
                o.remove("kind");
            }
            v
        };
        strip(old) == strip(&want) && old["metadata"]["labels"] == want["metadata"]["labels"]
    };
    match registry.get(res, Some("default"), name).await {
        Ok(old) if same(&old) => Ok(()),
        Ok(_) => registry
            .update(
                res,
                Some("default"),
                name,
                Subresource::Main,
                false,
                |old| {
                    let mut new = want.clone();
                    new["metadata"] = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    new["metadata"]["labels"] = want["metadata"]["labels"].clone();
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                    Ok(new)
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(_) => registry
            .create(res, Some("default"), want, false)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// Points `default/kubernetes` at the live servers.
pub async fn reconcile(registry: &Registry, store: &dyn Store) -> Result<(), String> {
    let servers = live(store).await?;
    if servers.is_empty() {
        return Ok(());
    }
    let (endpoints, slices) = desired(&servers);
    let ep = resources::lookup("", "v1", "endpoints").ok_or("endpoints not served")?;
    put(registry, ep, "kubernetes", endpoints).await?;
    let sl = resources::lookup("discovery.k8s.io", "v1", "endpointslices")
        .ok_or("endpointslices not served")?;
    let names: Vec<String> = slices.iter().map(|(n, _)| n.clone()).collect();
    for (name, slice) in slices {
        put(registry, sl, &name, slice).await?;
    }
    // Slices of ports no server has any more.
    if let Ok(list) = registry
        .list(sl, Some("default"), &crate::options::ListOptions::default())
        .await
    {
        for old in list.items {
            let name = old["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ours = old["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes";
            if ours && !names.contains(&name) {
                let _ = registry
                    .delete(sl, Some("default"), &name, &Default::default())
                    .await;
            }
        }
    }
    Ok(())
}

/// Renews this server's record and reconciles every [`RENEW`] until `stop`; then
/// removes the record and reconciles once more.
pub async fn run(
    registry: Registry,
    store: Arc<dyn Store>,
    ip: IpAddr,
    port: u16,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            remove(&*store, ip, port).await;
            if let Err(e) = reconcile(&registry, &*store).await {
                tracing::debug!(error = %e, "removing this server from the kubernetes endpoints");
            }
            return;
        }
        if let Err(e) = renew(&*store, ip, port).await {
            tracing::warn!(error = %e, "renewing this API server's lease");
            continue;
        }
        if let Err(e) = reconcile(&registry, &*store).await {
            tracing::warn!(error = %e, "reconciling the kubernetes endpoints");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_group_by_port() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let (ep, slices) = desired(&[(a, 6443), (b, 6443), (a, 7443)]);
        assert_eq!(ep["subsets"].as_array().unwrap().len(), 2);
        assert_eq!(ep["subsets"][0]["addresses"].as_array().unwrap().len(), 2);
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0].0, "kubernetes");
        assert_eq!(slices[1].0, "kubernetes-7443");
    }
}
