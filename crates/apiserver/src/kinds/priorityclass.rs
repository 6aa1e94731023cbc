//! PriorityClasses (scheduling.k8s.io/v1): the preemption policy's default.

use serde_json::{json, Value};

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct PriorityClass;

impl Strategy for PriorityClass {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::scheduling::v1::PriorityClass,
        >())
    }

    fn defaults(&self, obj: &mut Value) {
        if obj.get("preemptionPolicy").is_none_or(Value::is_null) {
            obj["preemptionPolicy"] = json!("PreemptLowerPriority");
        }
    }
}
