//! skiff-controllers: the control loops that make API objects true. Each is a
//! level-triggered reconcile pass over the current state; none relies on having
//! seen every event. The scheduler's binding loop; workloads (Deployments, ReplicaSets,
//! StatefulSets, Jobs, CronJobs, DaemonSets); and the cluster loops (garbage collection
//! with its orphan and foreground finalizers, namespace deletion, service accounts and
//! the root CA, endpoints, node lifecycle, persistent volumes and their claims).

pub mod cluster;
pub mod cronjobs;
pub mod endpoints;
pub mod gc;
pub mod namespaces;
pub mod nodeipam;
pub mod nodes;
pub mod persistentvolumes;
pub mod serviceaccounts;
pub mod statefulsets;

/// Ticks every `period` until `shutdown` completes: `while t.tick().await { pass }`.
pub struct Ticker<S: std::future::Future<Output = ()>> {
    tick: tokio::time::Interval,
    shutdown: std::pin::Pin<Box<S>>,
}

impl<S: std::future::Future<Output = ()>> Ticker<S> {
    pub fn new(period: std::time::Duration, shutdown: S) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker {
            tick,
            shutdown: Box::pin(shutdown),
        }
    }

    /// Waits for the next tick: true, or false once shut down.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = &mut self.shutdown => false,
            _ = self.tick.tick() => true,
        }
    }
}

/// Records an Event about `involved` (an ObjectReference: apiVersion, kind, name,
/// namespace, uid) from `component`.
pub async fn event(
    client: &kube::Client,
    involved: serde_json::Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = involved["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = involved["name"].as_str().unwrap_or("").to_string();
    let now = now();
    let ev = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": ty,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let api: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), &ns);
    if let Ok(e) = serde_json::from_value(ev) {
        let _ = api.create(&kube::api::PostParams::default(), &e).await;
    }
}

/// A Go-style duration (`40s`, `5m`, `1m30s`, `500ms`, `2h`), as Kubernetes' flags take.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let value: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// The current time as Kubernetes writes it (RFC 3339, seconds, `Z`).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false)
}

/// A controller reference to the owner `kind`/`name` (uid `uid`).
pub fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
                       "controller": true, "blockOwnerDeletion": true})
}

/// A new pod from a pod template, named `<owner name>-<random>`, in `ns`, controlled
/// by `owner` (an [`owner_ref`]).
pub fn pod_from_template(
    template: &serde_json::Value,
    ns: &str,
    owner: serde_json::Value,
) -> serde_json::Value {
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or(serde_json::json!({})),
        "spec": template.get("spec").cloned().unwrap_or(serde_json::json!({})),
    });
    pod["metadata"]["generateName"] =
        serde_json::json!(format!("{}-", owner["name"].as_str().unwrap_or("pod")));
    pod["metadata"]["namespace"] = serde_json::json!(ns);
    pod["metadata"]["ownerReferences"] = serde_json::json!([owner]);
    pod
}

/// Objects in namespace `ns` whose controlling owner has `uid`.
pub fn controlled_by<'a, K: kube::Resource>(items: &'a [K], ns: &str, uid: &str) -> Vec<&'a K> {
    items
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .filter(|o| {
            o.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}
pub mod daemonsets;
pub mod jobs;
pub mod scheduling;
pub mod workloads;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("40").is_err());
        assert!(parse_duration("4x").is_err());
    }
}
