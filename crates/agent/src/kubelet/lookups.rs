//! What the agent reads from the API (configMaps, secrets, services… through one
//! [`ApiLookup`], usable from blocking threads) and the one place it records Events
//! ([`pod_event`]).

use super::*;

/// ConfigMaps and Secrets read from the API, and events recorded to it (from a
/// blocking thread).
pub(super) struct ApiLookup {
    client: Client,
    handle: tokio::runtime::Handle,
    node: String,
}

pub(super) fn api_lookup(client: &Client, cfg: &AgentConfig) -> ApiLookup {
    ApiLookup {
        client: client.clone(),
        handle: tokio::runtime::Handle::current(),
        node: cfg.node.node_name.clone(),
    }
}

/// Records an Event about a pod (and one of its containers) as the kubelet does.
pub async fn pod_event(
    client: &Client,
    node: &str,
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = chrono::Utc::now();
    let field_path = container.map(|c| {
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
    });
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
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    if let Ok(e) = serde_json::from_value(ev) {
        if let Err(err) = api.create(&post_params(), &e).await {
            tracing::debug!(error = %err, "recording an event");
        }
    }
}

impl ObjectLookup for ApiLookup {
    fn init_progress(&self, pod: &Pod, statuses: Vec<serde_json::Value>) {
        // In order, before the next step of the pod's start.
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = initializing_status(pod, statuses);
        let _ = self.handle.block_on(async move {
            api.patch_status(
                &name,
                &patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        });
    }

    fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let cm = self.handle.block_on(api.get_opt(name)).ok().flatten()?;
        Some(cm.data.unwrap_or_default())
    }
    fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = self.handle.block_on(api.get_opt(name)).ok().flatten()?;
        let mut out: BTreeMap<String, String> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).to_string()))
            .collect();
        out.extend(s.string_data.unwrap_or_default());
        Some(out)
    }
    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        // Recorded beside the pod's start, not in its way.
        let (client, node, pod) = (self.client.clone(), self.node.clone(), pod.clone());
        let (container, reason, message) = (
            container.map(String::from),
            reason.to_string(),
            message.to_string(),
        );
        self.handle.spawn(async move {
            pod_event(
                &client,
                &node,
                &pod,
                container.as_deref(),
                warning,
                &reason,
                &message,
            )
            .await
        });
    }
    fn service_account_token(
        &self,
        ns: &str,
        account: &str,
        pod: (&str, &str),
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Option<String> {
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), ns);
        let req: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(json!({
                "spec": {
                    "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
                    "expirationSeconds": expiration_seconds,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.0, "uid": pod.1},
                }
            }))
            .ok()?;
        let out = self
            .handle
            .block_on(api.create_token_request(account, &post_params(), &req))
            .ok()?;
        out.status.map(|s| s.token)
    }
    fn persistent_volume(
        &self,
        ns: &str,
        claim: &str,
    ) -> Result<k8s_openapi::api::core::v1::PersistentVolume, String> {
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), ns);
        let c = self
            .handle
            .block_on(claims.get_opt(claim))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
        let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let name = c
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| bound && !v.is_empty())
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
        let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(self.client.clone());
        self.handle
            .block_on(pvs.get_opt(&name))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolume \"{name}\" not found"))
    }
}
