//! StatefulSets (apps/v1).

pub(crate) struct StatefulSet;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for StatefulSet {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Ready", "string", "", 0), AGE, CONTAINERS, IMAGES]
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
            age,
            containers(o, "/spec/template/spec/containers"),
            images(o, "/spec/template/spec/containers"),
        ]
    }
}
