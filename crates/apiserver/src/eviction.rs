//! `pods/{name}/eviction`: a delete that respects the pod's PodDisruptionBudget, as
//! kube-apiserver's eviction REST does (`kubectl drain` evicts through it).
//!
//! A pod that is already terminating, finished or still pending is deleted at once. A
//! pod covered by no budget is deleted. With one budget, the budget's status (kept by
//! the disruption controller) decides: while it has not observed the budget's latest
//! generation, or allows no disruption, the answer is 429 TooManyRequests (clients
//! retry); otherwise `disruptionsAllowed` is decremented and the pod recorded in
//! `disruptedPods` in one conditional write, then the pod is deleted. More than one
//! budget is a 500, as in Kubernetes. An unready pod may go without spending a
//! disruption when the budget is already met (`unhealthyPodEvictionPolicy`
//! IfHealthyBudget, the default) or always (AlwaysAllow).

use crate::error::{ApiError, Cause};

use crate::error::ApiResult;
use crate::registry::{DeleteOptions, ListOptions, Registry};
use crate::subresource::Subresource;
use serde_json::{json, Value};

/// Kubernetes' cap on pods recorded in `disruptedPods` awaiting confirmation.
const MAX_DISRUPTED_PODS: usize = 2000;

fn too_many_requests(cause: String) -> ApiError {
    let mut e = ApiError::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    );
    e.details = Some(Box::new(crate::error::Details {
        causes: vec![Cause {
            reason: "DisruptionBudget",
            field: String::new(),
            message: cause,
        }],
        ..Default::default()
    }));
    e
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Evicts pod `ns/name`. `eviction` is the posted Eviction; `opts` the delete options
/// from its `deleteOptions` and the query.
pub async fn evict(
    reg: &Registry,
    ns: &str,
    name: &str,
    eviction: &Value,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    if let Some(n) = eviction.pointer("/metadata/name").and_then(Value::as_str) {
        if !n.is_empty() && n != name {
            return Err(ApiError::bad_request(format!(
                "name in URL does not match name in Eviction object: {name:?} != {n:?}"
            )));
        }
    }
    let served = |group, version, resource| {
        crate::resources::lookup(group, version, resource)
            .ok_or_else(|| ApiError::internal(format!("{resource} are not served")))
    };
    let pods = served("", "v1", "pods")?;
    let pdbs = served("policy", "v1", "poddisruptionbudgets")?;
    let pod = reg.get(pods, Some(ns), name).await?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if pod.pointer("/metadata/deletionTimestamp").is_some()
        || matches!(phase, "Succeeded" | "Failed" | "Pending")
    {
        reg.delete(pods, Some(ns), name, opts).await?;
        return Ok(());
    }
    let labels = skiff_meta::selector::labels_of(&pod);
    let budgets: Vec<Value> = reg
        .list(pdbs, Some(ns), &ListOptions::any())
        .await?
        .items
        .into_iter()
        .filter(|b| {
            b.pointer("/spec/selector")
                .filter(|s| !s.is_null())
                .is_some_and(|s| skiff_meta::selector::label_selector_matches(s, &labels))
        })
        .collect();
    let budget = match budgets.as_slice() {
        [] => {
            reg.delete(pods, Some(ns), name, opts).await?;
            return Ok(());
        }
        [one] => one,
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    };
    let budget_name = budget
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let unhealthy_policy = budget
        .pointer("/spec/unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        .unwrap_or("IfHealthyBudget");
    if !ready(&pod) {
        let met = int(budget, "/status/currentHealthy") >= int(budget, "/status/desiredHealthy")
            && int(budget, "/status/desiredHealthy") > 0;
        if unhealthy_policy == "AlwaysAllow" || met {
            reg.delete(pods, Some(ns), name, opts).await?;
            return Ok(());
        }
    }
    // Check and spend one disruption in one conditional write of the budget's status.
    let now = crate::strategy::now_rfc3339();
    reg.update(
        pdbs,
        Some(ns),
        &budget_name,
        Subresource::Status,
        opts.dry_run,
        |cur| {
            let generation = int(cur, "/metadata/generation");
            if int(cur, "/status/observedGeneration") < generation {
                return Err(too_many_requests(format!(
                    "The disruption budget {budget_name} is still being processed by the server."
                )));
            }
            let allowed = int(cur, "/status/disruptionsAllowed");
            if allowed < 0 {
                return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
            }
            let disrupted = cur
                .pointer("/status/disruptedPods")
                .and_then(Value::as_object)
                .map(|m| m.len())
                .unwrap_or(0);
            if disrupted > MAX_DISRUPTED_PODS {
                return Err(ApiError::forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
            }
            if allowed == 0 {
                return Err(too_many_requests(format!(
                "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
                int(cur, "/status/desiredHealthy"),
                int(cur, "/status/currentHealthy")
            )));
            }
            let mut new = cur.clone();
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            new["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if !new["status"]["disruptedPods"].is_object() {
                new["status"]["disruptedPods"] = json!({});
            }
            new["status"]["disruptedPods"][name] = json!(now);
            Ok(new)
        },
    )
    .await?;
    reg.delete(pods, Some(ns), name, opts).await?;
    Ok(())
}
