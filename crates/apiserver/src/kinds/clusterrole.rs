//! ClusterRoles (rbac.authorization.k8s.io/v1): their rules.

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;

pub(crate) struct ClusterRole;

impl Strategy for ClusterRole {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::rbac::v1::ClusterRole>())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        super::role::validate_rules(obj, false, causes);
    }
}

// What `kubectl get` prints (`super::Columns`).
/// ClusterRoles print as Roles do.
impl Columns for ClusterRole {
    fn columns(&self) -> &'static [Col] {
        super::role::Role.columns()
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        super::role::Role.cells(o)
    }
}
