//! kube-apiserver's repair controllers for Service allocations, one pass at a time:
//!
//! - every cluster IP of a Service has its IPAddress (one missing, after a crash or in
//!   a data dir written before IPAddresses existed, is created; one naming another
//!   owner that does not hold the IP is given back to the Service);
//! - an IPAddress the allocator made whose Service is gone, or no longer has that IP,
//!   is deleted;
//! - the node-port bitmap is rebuilt from the Services; a port no Service holds is
//!   released.
//!
//! A write in flight has claimed before its Service is stored, so a pass while the
//! server serves waits before it releases: an IPAddress must be older than
//! [`ORPHAN_GRACE`] (kube-apiserver: 60 s), a port must be seen unowned on
//! [`LEAK_PASSES`] passes (kube-apiserver: 3) ([`Policy::SERVING`]). The pass at start,
//! before the server serves, has nothing in flight and releases at once
//! ([`Policy::AT_START`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;
use skiff_meta::object::name_of;

use super::{held, namespace_of, parent_ref, Allocator, LABEL_MANAGED_BY, MANAGED_BY};
use crate::admit::Objects;
use crate::error::{ApiError, ApiResult};
use crate::options::ListOptions;
use crate::resource::Resource;

/// How old an IPAddress without its Service must be before a pass deletes it.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(60);
/// On how many passes in a row a port must be seen unowned before it is released.
pub const LEAK_PASSES: u32 = 3;
/// How often the server runs a pass (kube-apiserver: every 3 minutes).
pub const INTERVAL: Duration = Duration::from_secs(180);

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// IPAddresses created (or re-created) for Services.
    pub created: Vec<Ipv4Addr>,
    /// IPAddresses deleted.
    pub deleted: Vec<Ipv4Addr>,
    /// Node ports released.
    pub released_ports: Vec<u16>,
    /// Node ports that were held by Services but missing from the bitmap.
    pub restored_ports: Vec<u16>,
}

/// When a pass releases what no Service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// An IPAddress without its Service is deleted once older than this.
    pub grace: Duration,
    /// A port no Service holds is released once seen so on this many passes in a row.
    pub leak_passes: u32,
}

impl Policy {
    /// While the server serves: kube-apiserver's waits.
    pub const SERVING: Policy = Policy {
        grace: ORPHAN_GRACE,
        leak_passes: LEAK_PASSES,
    };
    /// At start, before the server serves: nothing is in flight, nothing waits.
    pub const AT_START: Policy = Policy {
        grace: Duration::ZERO,
        leak_passes: 1,
    };
}

/// What passes remember between them: how many passes in a row each port was unowned.
#[derive(Debug, Default)]
pub struct State {
    leaks: BTreeMap<u16, u32>,
}

fn lookup(group: &str, plural: &str) -> ApiResult<&'static Resource> {
    crate::resources::lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

fn key_of(svc: &Value) -> (String, String) {
    (namespace_of(svc).to_string(), name_of(svc).to_string())
}

/// The IPv4 cluster IPs a Service holds (none for ExternalName and headless ones).
fn ips_of(svc: &Value) -> Vec<Ipv4Addr> {
    held(svc).ips.into_iter().collect()
}

/// Whether the IPAddress `ipa` is older than `grace`.
fn older_than(ipa: &Value, grace: Duration) -> bool {
    let created = ipa
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    match created {
        Some(t) => chrono::Utc::now()
            .signed_duration_since(t)
            .to_std()
            .is_ok_and(|age| age >= grace),
        None => true,
    }
}

/// One pass, releasing by `policy`.
pub async fn run_once(
    objs: &dyn Objects,
    alloc: &Allocator,
    state: &mut State,
    policy: Policy,
) -> ApiResult<Report> {
    let mut report = Report::default();
    repair_ips(objs, alloc, policy, &mut report).await?;
    repair_ports(objs, alloc, state, policy, &mut report).await?;
    Ok(report)
}

async fn repair_ips(
    objs: &dyn Objects,
    alloc: &Allocator,
    policy: Policy,
    report: &mut Report,
) -> ApiResult<()> {
    let services_res = lookup("", "services")?;
    let ip_res = lookup("networking.k8s.io", "ipaddresses")?;
    let services = objs
        .list(services_res, None, &ListOptions::default())
        .await?
        .items;
    let by_key: HashMap<(String, String), &Value> =
        services.iter().map(|s| (key_of(s), s)).collect();
    let addresses = objs
        .list(ip_res, None, &ListOptions::default())
        .await?
        .items;
    let by_ip: HashMap<String, &Value> = addresses
        .iter()
        .map(|a| (name_of(a).to_string(), a))
        .collect();

    let cidrs = alloc.service_cidrs().await?;
    // Every Service's IP has its IPAddress, naming it.
    for svc in &services {
        let (ns, name) = key_of(svc);
        for ip in ips_of(svc) {
            if Allocator::check_range(&cidrs, ip).is_err() {
                tracing::warn!(%ip, service = %format!("{ns}/{name}"), ?cidrs, "the cluster IP is not within any ServiceCIDR; please recreate the Service");
                continue;
            }
            let wanted = parent_ref(&ns, &name);
            let recreate = match by_ip.get(&ip.to_string()) {
                None => true,
                Some(ipa) => {
                    let pr = ipa.pointer("/spec/parentRef");
                    let labelled = ipa
                        .pointer("/metadata/labels")
                        .and_then(|l| l.get(LABEL_MANAGED_BY))
                        .and_then(Value::as_str)
                        == Some(MANAGED_BY);
                    if pr == Some(&wanted) {
                        !labelled
                    } else {
                        // Another Service's: it keeps it if it holds the IP.
                        let other = pr.and_then(|p| {
                            let ns = p.get("namespace")?.as_str()?.to_string();
                            let name = p.get("name")?.as_str()?.to_string();
                            by_key.get(&(ns, name))
                        });
                        match other {
                            Some(o)
                                if pr.and_then(|p| p.get("resource"))
                                    == Some(&"services".into())
                                    && ips_of(o).contains(&ip) =>
                            {
                                tracing::warn!(%ip, service = %format!("{ns}/{name}"), other = %format!("{}/{}", namespace_of(o), name_of(o)), "the cluster IP was assigned to several Services; please recreate the Service");
                                false
                            }
                            _ => true,
                        }
                    }
                }
            };
            if !recreate {
                continue;
            }
            // The Service may have gone (and released) since the list: read it again.
            match objs.get(services_res, Some(&ns), &name).await {
                Ok(now) if ips_of(&now).contains(&ip) => {}
                Ok(_) => continue,
                Err(e) if e.code == 404 => continue,
                Err(e) => return Err(e),
            }
            tracing::warn!(%ip, service = %format!("{ns}/{name}"), "the cluster IP is not allocated; repairing");
            if by_ip.contains_key(&ip.to_string()) {
                alloc.delete_ipaddress(ip).await?;
            }
            if alloc.create_ipaddress(ip, &ns, &name).await? {
                report.created.push(ip);
            }
        }
    }

    // Every IPAddress the allocator made belongs to a Service that holds its IP.
    for ipa in &addresses {
        let managed = ipa
            .pointer("/metadata/labels")
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .and_then(Value::as_str)
            == Some(MANAGED_BY);
        let Ok(ip) = name_of(ipa).parse::<Ipv4Addr>() else {
            continue;
        };
        if !managed {
            continue;
        }
        let pr = ipa.pointer("/spec/parentRef");
        let is_service = pr.and_then(|p| p.get("group")).and_then(Value::as_str) == Some("")
            || pr.and_then(|p| p.get("group")).is_none();
        let is_service = is_service
            && pr.and_then(|p| p.get("resource")).and_then(Value::as_str) == Some("services");
        let owner = pr.and_then(|p| {
            Some((
                p.get("namespace")?.as_str()?.to_string(),
                p.get("name")?.as_str()?.to_string(),
            ))
        });
        let orphan = match (is_service, owner) {
            (true, Some((ns, name))) => match by_key.get(&(ns.clone(), name.clone())) {
                Some(svc) if ips_of(svc).contains(&ip) => false,
                _ => {
                    // Check again: the Service may have been written since the list.
                    match objs.get(services_res, Some(&ns), &name).await {
                        Ok(now) => !ips_of(&now).contains(&ip),
                        Err(e) if e.code == 404 => true,
                        Err(e) => return Err(e),
                    }
                }
            },
            _ => true,
        };
        if !orphan || !older_than(ipa, policy.grace) {
            continue;
        }
        tracing::warn!(%ip, parent = ?pr, "the IPAddress appears to have leaked: cleaning up");
        alloc.delete_ipaddress(ip).await?;
        report.deleted.push(ip);
    }
    Ok(())
}

async fn repair_ports(
    objs: &dyn Objects,
    alloc: &Allocator,
    state: &mut State,
    policy: Policy,
    report: &mut Report,
) -> ApiResult<()> {
    let services_res = lookup("", "services")?;
    let range = alloc.ports();
    for _ in 0..100 {
        // The snapshot first: a port claimed after it makes the write below conflict.
        let (snapshot, rev) = alloc.port_snapshot().await?;
        let services = objs
            .list(services_res, None, &ListOptions::default())
            .await?
            .items;
        let mut used = BTreeSet::new();
        for svc in &services {
            let (ns, name) = key_of(svc);
            for port in held(svc).ports {
                if !range.contains(port) {
                    tracing::warn!(port, service = %format!("{ns}/{name}"), %range, "the node port is not within the node port range; please recreate the Service");
                } else if !used.insert(port) {
                    tracing::warn!(port, service = %format!("{ns}/{name}"), "the node port was assigned to several Services; please recreate the Service");
                }
            }
        }
        let mut next = used.clone();
        let mut leaks = BTreeMap::new();
        let mut released = Vec::new();
        for &port in snapshot.difference(&used) {
            let seen = state.leaks.get(&port).copied().unwrap_or(0) + 1;
            if seen >= policy.leak_passes {
                released.push(port);
            } else {
                leaks.insert(port, seen);
                next.insert(port);
            }
        }
        let restored: Vec<u16> = used.difference(&snapshot).copied().collect();
        if (next != snapshot || rev.is_none()) && !alloc.write_ports(&next, rev).await? {
            continue;
        }
        for port in &released {
            tracing::warn!(port, "the node port appears to have leaked: cleaning up");
        }
        for port in &restored {
            tracing::warn!(port, "the node port is not allocated; repairing");
        }
        state.leaks = leaks;
        report.released_ports.extend(released);
        report.restored_ports.extend(restored);
        return Ok(());
    }
    Err(ApiError::internal(
        "repairing the node ports: the bitmap kept changing",
    ))
}

/// Runs a pass every `every` until `stop` changes.
pub async fn run(
    registry: crate::registry::Registry,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut state = State::default();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                if let Err(e) = run_once(&registry, registry.allocator(), &mut state, Policy::SERVING).await {
                    tracing::warn!(error = %e, "repairing the Service allocations");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// While serving, an orphaned IPAddress waits out the grace period and an unowned
    /// port its passes; then both are released. A Service's missing IPAddress comes back
    /// at once.
    #[tokio::test]
    async fn serving_passes_wait_then_release() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn skiff_store::Store> = Arc::new(
            skiff_store::EmbeddedStore::open(dir.path().join("db"), Default::default()).unwrap(),
        );
        let reg = crate::registry::Registry::new(store);
        let ns = lookup("", "namespaces").unwrap();
        reg.create(
            ns,
            None,
            serde_json::json!({"metadata": {"name": "default"}}),
            false,
        )
        .await
        .unwrap();
        let svc = lookup("", "services").unwrap();
        let web = reg
            .create(
                svc,
                Some("default"),
                serde_json::json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
                    "ports": [{"port": 80, "nodePort": 30100}]}}),
                false,
            )
            .await
            .unwrap();
        let ip: Ipv4Addr = web["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        let alloc = reg.allocator().clone();
        // An orphan (its Service never stored), a leaked port, a lost IPAddress.
        let orphan = Ipv4Addr::new(10, 43, 0, 77);
        assert!(alloc
            .create_ipaddress(orphan, "default", "gone")
            .await
            .unwrap());
        let (mut ports, rev) = alloc.port_snapshot().await.unwrap();
        ports.insert(30555);
        assert!(alloc.write_ports(&ports, rev).await.unwrap());
        alloc.delete_ipaddress(ip).await.unwrap();

        let mut state = State::default();
        let slow = Policy {
            grace: Duration::from_secs(3600),
            leak_passes: 3,
        };
        let r = run_once(&reg, &alloc, &mut state, slow).await.unwrap();
        assert_eq!(r.created, vec![ip]);
        assert!(r.deleted.is_empty() && r.released_ports.is_empty(), "{r:?}");
        let r = run_once(&reg, &alloc, &mut state, slow).await.unwrap();
        assert!(r.released_ports.is_empty() && r.created.is_empty(), "{r:?}");
        assert!(alloc.port_snapshot().await.unwrap().0.contains(&30555));
        let r = run_once(&reg, &alloc, &mut state, slow).await.unwrap();
        assert_eq!(r.released_ports, vec![30555]);
        assert!(r.deleted.is_empty(), "{r:?}");
        assert_eq!(alloc.port_snapshot().await.unwrap().0, [30100].into());
        // Past its grace, the orphan goes; the Service's own IPAddress stays.
        let quick = Policy {
            grace: Duration::ZERO,
            leak_passes: 3,
        };
        let r = run_once(&reg, &alloc, &mut state, quick).await.unwrap();
        assert_eq!(r.deleted, vec![orphan]);
        let r = run_once(&reg, &alloc, &mut state, quick).await.unwrap();
        assert_eq!(r, Report::default());
    }
}
