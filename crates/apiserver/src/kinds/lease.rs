//! Leases (coordination.k8s.io/v1).

pub(crate) struct Lease;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for Lease {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Holder", "string", "", 0), AGE]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![name, json!(s(o, "/spec/holderIdentity")), age]
    }
}
