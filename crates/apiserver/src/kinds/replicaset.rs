//! ReplicaSets (apps/v1).

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, template_defaults};
use crate::error::Cause;
use crate::typed::Typed;

pub(crate) struct ReplicaSet;

impl Strategy for ReplicaSet {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::apps::v1::ReplicaSet>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn defaults(&self, obj: &mut Value) {
        default(obj_mut(obj, "spec"), "replicas", json!(1));
        template_defaults(obj.pointer_mut("/spec/template"));
    }

    fn status_defaults(&self, obj: &mut Value) {
        crate::defaults::zero_status(obj, &["replicas"]);
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        crate::validation::validate_workload(
            obj,
            "replicaset",
            obj.pointer("/spec/template/spec"),
            causes,
        );
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        crate::validation::selector_immutable(old, new, causes);
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for ReplicaSet {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![
            name,
            json!(i(o, "/spec/replicas")),
            json!(i(o, "/status/replicas")),
            json!(i(o, "/status/readyReplicas")),
            age,
            containers(o, "/spec/template/spec/containers"),
            images(o, "/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ]
    }
}
