//! ClusterRoles (rbac.authorization.k8s.io/v1): their rules.

use serde_json::Value;

use super::Strategy;
use crate::error::Cause;

pub(crate) struct ClusterRole;

impl Strategy for ClusterRole {
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        super::role::validate_rules(obj, false, causes);
    }
}
