//! ConfigMaps.

pub(crate) struct ConfigMap;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for ConfigMap {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Data", "string", "", 0), AGE]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![name, json!(count(o, "data") + count(o, "binaryData")), age]
    }
}
