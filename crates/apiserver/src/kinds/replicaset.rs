//! ReplicaSets (apps/v1).

use serde_json::{json, Value};

use super::Strategy;
use crate::error::Cause;
use crate::strategy::{default, obj_mut, template_defaults};
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
        crate::strategy::zero_status(obj, &["replicas"]);
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
        crate::strategy::selector_immutable(old, new, causes);
    }
}
