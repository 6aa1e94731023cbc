//! Leases (coordination.k8s.io/v1): only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct Lease;

impl Strategy for Lease {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::coordination::v1::Lease>())
    }
}

// What `kubectl get` prints (`super::Columns`).
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
