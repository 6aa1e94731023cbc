//! Deployments (apps/v1).

pub(crate) struct Deployment;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for Deployment {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
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
            json!(format!(
                "{}/{}",
                i(o, "/status/readyReplicas"),
                i(o, "/spec/replicas")
            )),
            json!(i(o, "/status/updatedReplicas")),
            json!(i(o, "/status/availableReplicas")),
            age,
            containers(o, "/spec/template/spec/containers"),
            images(o, "/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ]
    }
}
