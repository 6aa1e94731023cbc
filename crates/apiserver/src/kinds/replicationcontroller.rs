//! ReplicationControllers.

use super::Strategy;

pub(crate) struct ReplicationController;

impl Strategy for ReplicationController {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

/// ReplicationControllers print as ReplicaSets do.
impl Columns for ReplicationController {
    fn columns(&self) -> &'static [Col] {
        super::replicaset::ReplicaSet.columns()
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        super::replicaset::ReplicaSet.cells(o)
    }
}
