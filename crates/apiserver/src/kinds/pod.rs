//! Pods.

use serde_json::Value;

use super::Strategy;

pub(crate) struct Pod;

impl Strategy for Pod {
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
}
