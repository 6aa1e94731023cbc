//! Nodes: the status a kubelet registers with is kept, canonical quantities, the status
//! fields a typed client needs.

use serde_json::{json, Value};

use super::Strategy;
use crate::strategy::{default, obj_mut};
use crate::typed::Typed;

pub(crate) struct Node;

/// The string fields of a Node's `status.nodeInfo` (all required).
const NODE_INFO: &[&str] = &[
    "machineID",
    "systemUUID",
    "bootID",
    "kernelVersion",
    "osImage",
    "containerRuntimeVersion",
    "kubeletVersion",
    "kubeProxyVersion",
    "operatingSystem",
    "architecture",
];

impl Strategy for Node {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Node>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    /// A kubelet registers its node with its status: a new node keeps it.
    fn reset_status(&self, _obj: &mut Value) {}

    fn defaults(&self, obj: &mut Value) {
        crate::strategy::canonical_quantities(obj, &["/status/capacity", "/status/allocatable"]);
    }

    /// Structs without `omitempty`'s effect in Go: always there, if empty.
    fn status_defaults(&self, obj: &mut Value) {
        let status = obj_mut(obj, "status");
        default(status, "daemonEndpoints", json!({}));
        if let Some(Value::Object(d)) = status.get_mut("daemonEndpoints") {
            default(d, "kubeletEndpoint", json!({}));
            if let Some(Value::Object(k)) = d.get_mut("kubeletEndpoint") {
                default(k, "Port", json!(0));
            }
        }
        default(status, "nodeInfo", json!({}));
        if let Some(Value::Object(info)) = status.get_mut("nodeInfo") {
            for f in NODE_INFO {
                default(info, f, json!(""));
            }
        }
    }
}
