//! Secrets.

use super::Strategy;

pub(crate) struct Secret;

impl Strategy for Secret {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["type"]
    }
}

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for Secret {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Type", "string", "", 0),
            ("Data", "string", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![name, json!(s(o, "/type")), json!(count(o, "data")), age]
    }
}
