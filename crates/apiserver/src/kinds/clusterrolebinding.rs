//! ClusterRoleBindings (rbac.authorization.k8s.io/v1).

pub(crate) struct ClusterRoleBinding;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

/// ClusterRoleBindings print as RoleBindings do.
impl Columns for ClusterRoleBinding {
    fn columns(&self) -> &'static [Col] {
        super::rolebinding::RoleBinding.columns()
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        super::rolebinding::RoleBinding.cells(o)
    }
}
