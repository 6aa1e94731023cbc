//! PodDisruptionBudgets (policy/v1).

pub(crate) struct PodDisruptionBudget;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for PodDisruptionBudget {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Min Available", "string", "", 0),
            ("Max Unavailable", "string", "", 0),
            ("Allowed Disruptions", "integer", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let v = |p: &str| match o.pointer(p) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "N/A".into(),
        };
        vec![
            name,
            json!(v("/spec/minAvailable")),
            json!(v("/spec/maxUnavailable")),
            json!(i(o, "/status/disruptionsAllowed")),
            age,
        ]
    }
}
