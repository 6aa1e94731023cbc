//! ClusterRoles (rbac.authorization.k8s.io/v1).

pub(crate) struct ClusterRole;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

/// ClusterRoles print as Roles do.
impl Columns for ClusterRole {
    fn columns(&self) -> &'static [Col] {
        super::role::Role.columns()
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        super::role::Role.cells(o)
    }
}
