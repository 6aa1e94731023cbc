//! PriorityClasses (scheduling.k8s.io/v1): the preemption policy's default.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
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

// What `kubectl get` prints (`super::Columns`).
impl Columns for PriorityClass {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Value", "integer", "", 0),
            ("Global-Default", "boolean", "", 0),
            AGE,
            ("PreemptionPolicy", "string", "", 0),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![
            name,
            json!(i(o, "/value")),
            json!(o
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age,
            json!(s(o, "/preemptionPolicy")),
        ]
    }
}
