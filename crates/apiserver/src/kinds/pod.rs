//! Pods.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::Strategy;
use crate::admit::Objects;
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
            crate::strategy::pod_spec_defaults(spec, true);
        }
    }

    /// A new pod is Pending, with its QoS class.
    fn prepare_create(&self, obj: &mut Value) {
        let qos = crate::strategy::qos_class(obj.get("spec").unwrap_or(&Value::Null));
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
        let qos = crate::strategy::qos_class(obj.get("spec").unwrap_or(&Value::Null));
        obj["status"]["qosClass"] = json!(qos);
        Ok(())
    }
}
