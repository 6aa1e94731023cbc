//! ConfigMaps: size, keys, immutability.

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{config_keys, config_size, config_values, decoded_len};

pub(crate) struct ConfigMap;

impl Strategy for ConfigMap {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::ConfigMap>())
    }

    /// Its data and binaryData (decoded) at most [`crate::validation::MAX_CONFIG_SIZE`]
    /// bytes together (else TooLong on the whole object, `[]`), its keys.
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let total = config_values(obj, "data").map(str::len).sum::<usize>()
            + config_values(obj, "binaryData")
                .map(decoded_len)
                .sum::<usize>();
        config_size(total, "[]", causes);
        config_keys(obj, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        immutable_data(old, new, causes);
    }
}

/// An object (ConfigMap or Secret) marked `immutable` keeps its data and the mark.
pub(super) fn immutable_data(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if old.get("immutable").and_then(Value::as_bool) == Some(true) {
        for f in ["data", "binaryData", "immutable"] {
            if old.get(f) != new.get(f) {
                causes.push(Cause::forbidden(
                    f,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
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
