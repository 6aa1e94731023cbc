//! The one place the node agent records Events. [`Recorder`] writes them to the API
//! as the kubelet does (source `kubelet`, the node as reporting instance): awaited
//! from the agent's loop, or sent off without waiting from the blocking threads pods
//! are started on. [`PodEvents`] is all the pod worker sees of it.

use crate::FIELD_MANAGER;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::Api;
use kube::Client;
use serde_json::json;

/// Where the pod worker's Events go (Pulled, Created, Started, Failed,
/// FailedPostStartHook, …).
pub trait PodEvents {
    /// Records an Event about `pod` (and one of its containers) without waiting for it.
    fn event(&self, pod: &Pod, container: Option<&str>, warning: bool, reason: &str, message: &str);
}

/// Records the agent's Events about pods to the API.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    /// This node's name (the Event's source host and reporting instance).
    node: String,
    /// The runtime Events sent off from blocking threads are written on.
    handle: tokio::runtime::Handle,
}

impl Recorder {
    /// A recorder for node `node`; made inside the agent's tokio runtime, which its
    /// Events sent off from blocking threads are written on.
    pub fn new(client: Client, node: String) -> Recorder {
        Recorder {
            client,
            node,
            handle: tokio::runtime::Handle::current(),
        }
    }

    /// Records an Event about a pod (and one of its containers) as the kubelet does.
    pub async fn record(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        let node = &self.node;
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = chrono::Utc::now();
        let field_path = container.map(|c| field_path(pod, c));
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or_default()), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                               "uid": pod.metadata.uid, "fieldPath": field_path},
            "reason": reason, "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet", "reportingInstance": node,
            "firstTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "lastTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "count": 1,
        });
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Ok(e) = serde_json::from_value(ev) {
            let pp = skiff_informer::post_params(FIELD_MANAGER);
            if let Err(err) = api.create(&pp, &e).await {
                tracing::debug!(error = %err, "recording an event");
            }
        }
    }
}

impl PodEvents for Recorder {
    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        // Recorded beside the pod's start, not in its way.
        let (recorder, pod) = (self.clone(), pod.clone());
        let (container, reason, message) = (
            container.map(String::from),
            reason.to_string(),
            message.to_string(),
        );
        self.handle.spawn(async move {
            recorder
                .record(&pod, container.as_deref(), warning, &reason, &message)
                .await
        });
    }
}

/// The field path of container `c` in the pod's spec (an Event's
/// `involvedObject.fieldPath`).
fn field_path(pod: &Pod, c: &str) -> String {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|ics| ics.iter().any(|i| i.name == c));
    let ephemeral = spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|ecs| ecs.iter().any(|i| i.name == c));
    if init {
        format!("spec.initContainers{{{c}}}")
    } else if ephemeral {
        format!("spec.ephemeralContainers{{{c}}}")
    } else {
        format!("spec.containers{{{c}}}")
    }
}
