//! Pods.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::admit::Objects;
use crate::cells::prelude::*;
use crate::error::{ApiResult, Cause};
use crate::typed::Typed;

pub(crate) struct Pod;

#[async_trait]
impl Strategy for Pod {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Pod>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    /// A pod goes once its grace period is zero (the kubelet's final delete).
    fn deletion_can_finish(&self, obj: &Value) -> bool {
        obj.pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
    }

    /// A pod bound to a node waits its grace period (the request's, else its own, else
    /// 30 seconds) for the kubelet, unless that is zero.
    fn deletion_grace(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let bound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let grace = requested
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        (bound && grace > 0).then_some(grace)
    }

    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            crate::defaults::pod_spec_defaults(spec, true);
        }
    }

    /// A new pod is Pending, with its QoS class.
    fn prepare_create(&self, obj: &mut Value) {
        let qos = crate::defaults::qos_class(obj.get("spec").unwrap_or(&Value::Null));
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        crate::validation::validate_pod_spec(obj.get("spec"), "spec", causes);
    }

    /// Ephemeral containers come only through their subresource.
    fn validate_create(&self, obj: &Value, causes: &mut Vec<Cause>) {
        if obj
            .pointer("/spec/ephemeralContainers")
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
        {
            causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                "cannot be set on create",
            ));
        }
    }

    /// A pod's spec is fixed but for images, the deadline, added tolerations and the
    /// grace period.
    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        let strip = |spec: Option<&Value>| {
            let mut s = spec.cloned().unwrap_or(Value::Null);
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = s.get_mut(list) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("image");
                    }
                }
            }
            if let Some(m) = s.as_object_mut() {
                for k in [
                    "activeDeadlineSeconds",
                    "tolerations",
                    "terminationGracePeriodSeconds",
                ] {
                    m.remove(k);
                }
            }
            s
        };
        if strip(old.get("spec")) != strip(new.get("spec")) {
            causes.push(Cause::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
    }

    /// The QoS class again, from the resources admission (LimitRanger) may have set.
    async fn before_create(&self, _objs: &dyn Objects, obj: &mut Value) -> ApiResult<()> {
        let qos = crate::defaults::qos_class(obj.get("spec").unwrap_or(&Value::Null));
        obj["status"]["qosClass"] = json!(qos);
        Ok(())
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Pod {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let total = o
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let statuses = o
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array);
        let ready = statuses.map_or(0, |a| {
            a.iter()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count()
        });
        let restarts: i64 = statuses.map_or(0, |a| a.iter().map(|c| i(c, "/restartCount")).sum());
        let gates = o
            .pointer("/spec/readinessGates")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        vec![
            name,
            json!(format!("{ready}/{total}")),
            json!(pod_status(o)),
            json!(restarts.to_string()),
            age,
            json!(or_none(s(o, "/status/podIP").into())),
            json!(or_none(s(o, "/spec/nodeName").into())),
            json!(or_none(s(o, "/status/nominatedNodeName").into())),
            json!(if gates == 0 {
                "<none>".to_string()
            } else {
                format!("0/{gates}")
            }),
        ]
    }
}

/// The STATUS column, as kubectl's `printPod`.
fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "/status/phase").to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    // Init containers first, as kubectl's printPod: the first one not done says why.
    let inits = pod
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total_inits = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut initializing = false;
    for (n, c) in inits.iter().enumerate() {
        let terminated = c.pointer("/state/terminated");
        let waiting = s(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| i(t, "/exitCode") == 0) {
            continue;
        }
        reason = if let Some(t) = terminated {
            match t.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.get("signal").and_then(Value::as_i64) {
                    Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                    _ => format!("Init:ExitCode:{}", i(t, "/exitCode")),
                },
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{n}/{total_inits}")
        };
        initializing = true;
        break;
    }
    let initialized = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True")
        });
    let mut has_running = false;
    let statuses = if initializing && !initialized {
        None
    } else {
        pod.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
    };
    if let Some(statuses) = statuses {
        for c in statuses.iter().rev() {
            let waiting = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match t.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match t.get("signal").and_then(Value::as_i64) {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!("ExitCode:{}", i(t, "/exitCode")),
                    },
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
            }
        }
    }
    if reason == "Completed" && has_running {
        reason = "Running".into();
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if s(pod, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

#[cfg(test)]
mod columns_tests {
    use super::*;

    #[test]
    fn pod_row() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}, {"ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let c = Pod.cells(&pod);
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "3");
    }

    /// The STATUS of a pod with init containers, as kubectl prints it.
    #[test]
    fn pod_status_while_initializing() {
        let pod = |inits: Value, initialized: bool| {
            json!({"metadata": {"name": "p"},
                "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
                "status": {"phase": "Pending", "initContainerStatuses": inits,
                    "conditions": [{"type": "Initialized", "status": if initialized { "True" } else { "False" }}],
                    "containerStatuses": [{"ready": false, "state": {"waiting": {"reason": "PodInitializing"}}}]}})
        };
        let done = json!({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let running = json!({"state": {"running": {}}});
        let waiting = json!({"state": {"waiting": {"reason": "PodInitializing"}}});
        let failed = json!({"state": {"terminated": {"exitCode": 3, "reason": "Error"}}});
        let cases = [
            (json!([running.clone(), waiting.clone()]), false, "Init:0/2"),
            (json!([done.clone(), running.clone()]), false, "Init:1/2"),
            (json!([done.clone(), failed]), false, "Init:Error"),
            (
                json!([done.clone(), {"state": {"terminated": {"exitCode": 2}}}]),
                false,
                "Init:ExitCode:2",
            ),
            (
                json!([{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}, waiting]),
                false,
                "Init:CrashLoopBackOff",
            ),
            (json!([done.clone(), done]), true, "PodInitializing"),
        ];
        for (inits, initialized, want) in cases {
            assert_eq!(
                Pod.cells(&pod(inits.clone(), initialized))[2],
                want,
                "{inits}"
            );
        }
    }
}
