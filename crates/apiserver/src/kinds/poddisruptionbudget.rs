//! PodDisruptionBudgets (policy/v1): the status fields a typed client needs.

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct PodDisruptionBudget;

impl Strategy for PodDisruptionBudget {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::policy::v1::PodDisruptionBudget,
        >())
    }

    fn status_defaults(&self, obj: &mut Value) {
        crate::defaults::zero_status(
            obj,
            &[
                "disruptionsAllowed",
                "currentHealthy",
                "desiredHealthy",
                "expectedPods",
            ],
        );
    }
}

// What `kubectl get` prints (`super::Columns`).
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
