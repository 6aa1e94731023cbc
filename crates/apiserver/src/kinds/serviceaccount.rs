//! ServiceAccounts: only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct ServiceAccount;

impl Strategy for ServiceAccount {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::ServiceAccount>())
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for ServiceAccount {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Secrets", "string", "", 0), AGE]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![
            name,
            json!(o
                .get("secrets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)),
            age,
        ]
    }
}
