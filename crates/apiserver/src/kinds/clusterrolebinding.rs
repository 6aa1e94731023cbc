//! ClusterRoleBindings (rbac.authorization.k8s.io/v1): role reference and subjects, the
//! role reference fixed once created.

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;

pub(crate) struct ClusterRoleBinding;

impl Strategy for ClusterRoleBinding {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::rbac::v1::ClusterRoleBinding,
        >())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        super::rolebinding::validate_binding(obj, true, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        super::rolebinding::role_ref_unchanged(old, new, causes);
    }
}

// What `kubectl get` prints (`super::Columns`).
/// ClusterRoleBindings print as RoleBindings do.
impl Columns for ClusterRoleBinding {
    fn columns(&self) -> &'static [Col] {
        super::rolebinding::RoleBinding.columns()
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        super::rolebinding::RoleBinding.cells(o)
    }
}
