//! ReplicaSets (apps/v1).

use super::Strategy;

pub(crate) struct ReplicaSet;

impl Strategy for ReplicaSet {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
