//! Endpoints and EndpointSlices: for each Service with a selector, an Endpoints object
//! of the same name (ready pods in `addresses`, the others in `notReadyAddresses`) and
//! EndpointSlices labelled `kubernetes.io/service-name` and managed by
//! `endpointslice-controller.k8s.io` (ready or not in `conditions`), one per set of
//! resolved ports, with each pod's target port resolved (numbers, or container port
//! names), its node and a reference to it. (The `kubernetes` service's are the API
//! server's own.)
//!
//! Terminating pods, as kube's controllers: the slices keep them with
//! `terminating: true`, `serving` = the pod's readiness and `ready: false` (so proxies
//! drain to them only when nothing else serves); the Endpoints object leaves them
//! out. `publishNotReadyAddresses` makes every selected pod ready in both.

use crate::pods::template_hash;
use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams};
use kube::Client;
use serde_json::{json, Value};
use skiff_informer::CachedPod;
use std::collections::BTreeMap;

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const SLICE_MANAGER: &str = "endpointslice.kubernetes.io/managed-by";
const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
const EP_MANAGER: &str = "endpoints.kubernetes.io/managed-by";
const EP_CONTROLLER: &str = "endpoint-controller";

/// The pod's port for a service port: a number as is, a name looked up among the
/// pod's container ports; None if the pod has no such named port.
pub fn resolve_port(sp: &ServicePort, pod: &CachedPod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        },
    }
}

fn selects(selector: &BTreeMap<String, String>, pod: &CachedPod) -> bool {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    skiff_meta::selector::set_matches(selector, pod.metadata.labels.as_ref().unwrap_or(&NONE))
}

/// Starts the controller: one Service per key, queued when the Service changes, when
/// a pod of its namespace that it selects (before or after the change) changes, and
/// when its Endpoints or slices change (a hand edit is put back); every Service again
/// every [`crate::wiring::RESYNC`]. A change costs the Services of the pod's namespace
/// that select it, and a reconcile reads only its namespace's pods.
pub fn spawn(
    client: &Client,
    inf: &skiff_informer::Informers,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let q = skiff_informer::Queue::new();
    crate::wiring::enqueue_changed(&inf.services, &q);
    let (services, pq) = (inf.services.clone(), q.clone());
    inf.pods.on_update(move |old, new| {
        let ns = new.metadata.namespace.clone().unwrap_or_default();
        for svc in services.in_namespace(&ns) {
            let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
            let Some(selector) = selector.filter(|s| !s.is_empty()) else {
                continue;
            };
            if selects(selector, new) || old.is_some_and(|o| selects(selector, o)) {
                pq.add(skiff_informer::Key::of(svc.as_ref()));
            }
        }
    });
    let eq = q.clone();
    inf.endpoints.on_change(move |e| {
        if managed(e.metadata.labels.as_ref(), EP_MANAGER, EP_CONTROLLER) {
            eq.add(skiff_informer::Key::of(e));
        }
    });
    let sq = q.clone();
    inf.endpoint_slices.on_change(move |sl| {
        if managed(sl.metadata.labels.as_ref(), SLICE_MANAGER, SLICE_CONTROLLER) {
            if let Some(svc) = sl
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME))
            {
                sq.add(skiff_informer::Key {
                    namespace: sl.metadata.namespace.clone().unwrap_or_default(),
                    name: svc.clone(),
                });
            }
        }
    });
    // Endpoints of Services deleted while no controller ran (kube's
    // checkLeftoverEndpoints): looked at once, when the caches are in.
    {
        let (inf, q) = (inf.clone(), q.clone());
        tokio::spawn(async move {
            inf.synced().await;
            for e in inf.endpoints.state() {
                if managed(e.metadata.labels.as_ref(), EP_MANAGER, EP_CONTROLLER) {
                    q.add(skiff_informer::Key::of(e.as_ref()));
                }
            }
        });
    }
    let c = std::sync::Arc::new((client.clone(), inf.clone()));
    crate::wiring::spawn_controller(
        "endpoints",
        4,
        q,
        inf.services.clone(),
        inf.clone(),
        stop.clone(),
        move |key| {
            let c = c.clone();
            async move {
                sync_service(&c.0, &c.1, &key).await?;
                Ok(None)
            }
        },
    )
}

fn managed(labels: Option<&BTreeMap<String, String>>, key: &str, value: &str) -> bool {
    labels.and_then(|l| l.get(key)).map(String::as_str) == Some(value)
}

/// The Endpoints and slices of the Service at `key`: written from the pods it selects,
/// or (the Service gone, or selecting nothing) this controller's Endpoints deleted.
/// Its slices go with the Service, by their owner reference.
pub async fn sync_service(
    client: &Client,
    inf: &skiff_informer::Informers,
    key: &skiff_informer::Key,
) -> Result<(), kube::Error> {
    let svc = inf.services.get(key);
    let selector = svc
        .as_ref()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty());
    let (Some(svc), Some(selector)) = (svc, selector) else {
        if let Some(e) = inf.endpoints.get(key) {
            if managed(e.metadata.labels.as_ref(), EP_MANAGER, EP_CONTROLLER) {
                let api: Api<Endpoints> = Api::namespaced(client.clone(), &key.namespace);
                let _ = api.delete(&key.name, &DeleteParams::default()).await;
            }
        }
        return Ok(());
    };
    let (ns, name) = (&key.namespace, &key.name);
    let Some(spec) = &svc.spec else {
        return Ok(());
    };
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let sports = spec.ports.clone().unwrap_or_default();
    // Pods grouped by their resolved port set.
    let mut groups: BTreeMap<String, (Value, Vec<(Value, Conditions)>)> = BTreeMap::new();
    let pods = inf.pods.in_namespace(ns);
    let mut selected: Vec<&CachedPod> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| selects(&selector, p))
        .filter(|p| {
            let st = p.status.as_ref();
            !matches!(
                st.and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            ) && st
                .and_then(|s| s.pod_ip.as_deref())
                .is_some_and(|ip| !ip.is_empty())
        })
        .collect();
    selected.sort_by_key(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()));
    for p in selected {
        let ports: Vec<Value> = sports
            .iter()
            .filter_map(|sp| {
                resolve_port(sp, p).map(|port| {
                    json!({"name": sp.name.clone().unwrap_or_default(), "port": port,
                           "protocol": sp.protocol.clone().unwrap_or("TCP".into())})
                })
            })
            .collect();
        if ports.is_empty() && !sports.is_empty() {
            continue;
        }
        let pspec = p.spec.as_ref();
        let mut addr = json!({
            "ip": p.status.as_ref().and_then(|s| s.pod_ip.clone()),
            "nodeName": pspec.and_then(|s| s.node_name.clone()),
            "targetRef": {"kind": "Pod", "namespace": ns, "name": p.metadata.name, "uid": p.metadata.uid},
        });
        if let (Some(h), Some(sub)) = (
            pspec.and_then(|s| s.hostname.as_ref()),
            pspec.and_then(|s| s.subdomain.as_ref()),
        ) {
            if sub == name {
                addr["hostname"] = json!(h);
            }
        }
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (json!(ports), vec![]))
            .1
            .push((addr, Conditions::of(p, publish)));
    }
    let groups: Vec<(Value, Vec<(Value, Conditions)>)> = groups.into_values().collect();
    let have = inf.endpoints.get(key);
    let slices: Vec<std::sync::Arc<EndpointSlice>> = inf
        .endpoint_slices
        .in_namespace(ns)
        .into_iter()
        .filter(|s| s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) == Some(name))
        .collect();
    write(client, &svc, have.as_deref(), &slices, groups).await
}

/// An endpoint's conditions, as kube's `podToEndpoint` sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conditions {
    ready: bool,
    serving: bool,
    terminating: bool,
}

impl Conditions {
    fn of(pod: &CachedPod, publish_not_ready: bool) -> Conditions {
        let serving = publish_not_ready || crate::pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        Conditions {
            ready: publish_not_ready || (serving && !terminating),
            serving,
            terminating,
        }
    }

    /// Whether the Endpoints object lists the address (terminating pods only with
    /// publishNotReadyAddresses, which makes them ready), and under `addresses`.
    fn in_endpoints(self) -> Option<bool> {
        (!self.terminating || self.ready).then_some(self.ready)
    }
}

/// Writes the Endpoints and EndpointSlices of `svc` for `groups` (ports, addresses
/// with their conditions); slices of other port sets are deleted.
async fn write(
    client: &Client,
    svc: &Service,
    have: Option<&Endpoints>,
    slices: &[std::sync::Arc<EndpointSlice>],
    groups: Vec<(Value, Vec<(Value, Conditions)>)>,
) -> Result<(), kube::Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(EP_MANAGER.into(), EP_CONTROLLER.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let subsets: Vec<Value> = groups
        .iter()
        .filter(|(_, a)| a.iter().any(|(_, c)| c.in_endpoints().is_some()))
        .map(|(ports, addrs)| {
            let pick = |ready: bool| -> Vec<Value> {
                addrs
                    .iter()
                    .filter(|(_, c)| c.in_endpoints() == Some(ready))
                    .map(|(a, _)| a.clone())
                    .collect()
            };
            let mut s = json!({"ports": ports});
            let (r, nr) = (pick(true), pick(false));
            if !r.is_empty() {
                s["addresses"] = json!(r);
            }
            if !nr.is_empty() {
                s["notReadyAddresses"] = json!(nr);
            }
            s
        })
        .collect();
    let want: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "subsets": subsets,
    }))
    .map_err(kube::Error::SerdeError)?;
    let ep_api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    upsert(&ep_api, have, want, |e| {
        serde_json::to_value((&e.subsets, &e.metadata.labels)).unwrap_or_default()
    })
    .await?;
    // Slices.
    let sl_api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let mut wanted_names = Vec::new();
    for (ports, addrs) in &groups {
        let slice_name = format!("{name}-{}", template_hash(ports));
        wanted_names.push(slice_name.clone());
        let mut sl_labels = labels.clone();
        sl_labels.remove(EP_MANAGER);
        sl_labels.insert(SERVICE_NAME.into(), name.clone());
        sl_labels.insert(SLICE_MANAGER.into(), SLICE_CONTROLLER.into());
        let endpoints: Vec<Value> = addrs
            .iter()
            .map(|(a, c)| {
                let mut e = json!({"addresses": [a["ip"]],
                    "conditions": {"ready": c.ready, "serving": c.serving,
                                   "terminating": c.terminating}});
                for k in ["nodeName", "targetRef", "hostname"] {
                    if !a[k].is_null() {
                        e[k] = a[k].clone();
                    }
                }
                e
            })
            .collect();
        let want = json!({
            "metadata": {"name": slice_name, "namespace": ns, "labels": sl_labels,
                         "ownerReferences": [crate::owner_ref("v1", "Service", &name, &uid)]},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        let want: EndpointSlice = serde_json::from_value(want).map_err(kube::Error::SerdeError)?;
        let have = slices
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(slice_name.as_str()));
        upsert(&sl_api, have.map(|s| s.as_ref()), want, |s| {
            serde_json::to_value((&s.endpoints, &s.ports, &s.metadata.labels)).unwrap_or_default()
        })
        .await?;
    }
    for s in slices.iter().filter(|s| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SLICE_MANAGER))
            .map(String::as_str)
            == Some(SLICE_CONTROLLER)
            && !wanted_names
                .iter()
                .any(|n| Some(n.as_str()) == s.metadata.name.as_deref())
    }) {
        let _ = sl_api
            .delete(
                s.metadata.name.as_deref().unwrap_or(""),
                &DeleteParams::default(),
            )
            .await;
    }
    Ok(())
}

/// Creates `want`, or replaces `have` when `key` of the two differs.
pub(crate) async fn upsert<K>(
    api: &Api<K>,
    have: Option<&K>,
    mut want: K,
    key: impl Fn(&K) -> Value,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match have {
        None => match api.create(&crate::post_params(), &want).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => Ok(()),
            Err(e) => Err(e),
        },
        Some(h) if key(h) != key(&want) => {
            want.meta_mut().resource_version = h.meta().resource_version.clone();
            let name = h.meta().name.clone().unwrap_or_default();
            match api.replace(&name, &crate::post_params(), &want).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ports_resolve_by_number_or_name() {
        let pod: CachedPod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}))
        .unwrap();
        let sp = |t: Value| -> ServicePort {
            serde_json::from_value(json!({"port": 80, "targetPort": t})).unwrap()
        };
        assert_eq!(resolve_port(&sp(json!(9090)), &pod), Some(9090));
        assert_eq!(resolve_port(&sp(json!("http")), &pod), Some(8080));
        assert_eq!(resolve_port(&sp(json!("grpc")), &pod), None);
        let plain: ServicePort = serde_json::from_value(json!({"port": 80})).unwrap();
        assert_eq!(resolve_port(&plain, &pod), Some(80));
    }

    fn pod(ready: bool, terminating: bool) -> CachedPod {
        let mut p = json!({"metadata": {"name": "p"}, "status": {"conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn terminating_pods_stay_in_slices_but_leave_the_rotation() {
        let c = |ready, terminating, publish| Conditions::of(&pod(ready, terminating), publish);
        let cond = |ready, serving, terminating| Conditions {
            ready,
            serving,
            terminating,
        };
        assert_eq!(c(true, false, false), cond(true, true, false));
        assert_eq!(c(false, false, false), cond(false, false, false));
        // A ready pod being deleted still serves, but is not ready.
        assert_eq!(c(true, true, false), cond(false, true, true));
        assert_eq!(c(false, true, false), cond(false, false, true));
        // publishNotReadyAddresses: everything selected is ready.
        assert_eq!(c(false, true, true), cond(true, true, true));
        // The Endpoints object: terminating pods out unless published.
        assert_eq!(c(true, false, false).in_endpoints(), Some(true));
        assert_eq!(c(false, false, false).in_endpoints(), Some(false));
        assert_eq!(c(true, true, false).in_endpoints(), None);
        assert_eq!(c(false, true, true).in_endpoints(), Some(true));
    }
}
