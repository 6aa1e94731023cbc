//! Roles (rbac.authorization.k8s.io/v1).

pub(crate) struct Role;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for Role {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Created At", "date", "", 0)]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        vec![name, json!(s(o, "/metadata/creationTimestamp"))]
    }
}
