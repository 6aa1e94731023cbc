//! PriorityClasses (scheduling.k8s.io/v1).

pub(crate) struct PriorityClass;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
