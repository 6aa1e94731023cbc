//! Events, as client-go's recorder writes them.

/// Records an Event about `involved` (an ObjectReference: apiVersion, kind, name,
/// namespace, uid) from `component`, written with `field_manager`. Repeats of the same
/// event (same object, type, reason, message and source) are one Event whose `count`
/// and `lastTimestamp` grow, as client-go's event correlator aggregates them.
pub async fn event(
    client: &kube::Client,
    involved: serde_json::Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
    field_manager: &str,
) {
    use std::hash::{Hash, Hasher};
    let ns = involved["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = involved["name"].as_str().unwrap_or("").to_string();
    // The aggregation key names the Event.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        involved["kind"].as_str(),
        involved["uid"].as_str(),
        ty,
        reason,
        message,
        component,
    )
        .hash(&mut h);
    let event_name = format!("{name}.{:016x}", h.finish());
    let now = skiff_meta::time::now();
    let ev = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": ty,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let api: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), &ns);
    let pp = crate::post_params(field_manager);
    let Ok(e) = serde_json::from_value(ev) else {
        return;
    };
    match api.create(&pp, &e).await {
        Err(kube::Error::Api(err)) if err.code == 409 => {
            // Seen before: one more occurrence.
            if let Ok(old) = api.get(&event_name).await {
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": old.metadata.resource_version},
                    "count": old.count.unwrap_or(1) + 1,
                    "lastTimestamp": now,
                });
                let pp = crate::patch_params(field_manager);
                let _ = api
                    .patch(&event_name, &pp, &kube::api::Patch::Merge(patch))
                    .await;
            }
        }
        _ => {}
    }
}
