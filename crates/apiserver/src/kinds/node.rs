//! Nodes: the status a kubelet registers with is kept, canonical quantities, the status
//! fields a typed client needs.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut};
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
        crate::defaults::canonical_quantities(obj, &["/status/capacity", "/status/allocatable"]);
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

// What `kubectl get` prints (`super::Columns`).
impl Columns for Node {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE,
            ("Version", "string", "", 0),
            ("Internal-IP", "string", "", 1),
            ("External-IP", "string", "", 1),
            ("OS-Image", "string", "", 1),
            ("Kernel-Version", "string", "", 1),
            ("Container-Runtime", "string", "", 1),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let ready = o
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, "/type") == "Ready"))
            .map(|c| {
                if s(c, "/status") == "True" {
                    "Ready"
                } else {
                    "NotReady"
                }
            })
            .unwrap_or("Unknown");
        let mut status = ready.to_string();
        if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }
        let roles: Vec<&str> = o
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
            .collect();
        let addr = |t: &str| {
            o.pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| s(x, "/type") == t))
                .map(|x| s(x, "/address").to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        vec![
            name,
            json!(status),
            json!(or_none(roles.join(","))),
            age,
            json!(s(o, "/status/nodeInfo/kubeletVersion")),
            json!(addr("InternalIP")),
            json!(addr("ExternalIP")),
            json!(or_none(s(o, "/status/nodeInfo/osImage").into())),
            json!(or_none(s(o, "/status/nodeInfo/kernelVersion").into())),
            json!(or_none(
                s(o, "/status/nodeInfo/containerRuntimeVersion").into()
            )),
        ]
    }
}
