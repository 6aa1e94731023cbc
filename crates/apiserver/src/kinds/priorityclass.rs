//! PriorityClasses (scheduling.k8s.io/v1): the preemption policy's default.

use serde_json::{json, Value};

use super::Strategy;

pub(crate) struct PriorityClass;

impl Strategy for PriorityClass {
    fn defaults(&self, obj: &mut Value) {
        if obj.get("preemptionPolicy").is_none_or(Value::is_null) {
            obj["preemptionPolicy"] = json!("PreemptLowerPriority");
        }
    }
}
