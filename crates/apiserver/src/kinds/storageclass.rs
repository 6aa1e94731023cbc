//! StorageClasses (storage.k8s.io/v1): reclaim policy and binding mode defaults.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct StorageClass;

impl Strategy for StorageClass {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::storage::v1::StorageClass,
        >())
    }

    fn defaults(&self, obj: &mut Value) {
        if obj.get("reclaimPolicy").is_none_or(Value::is_null) {
            obj["reclaimPolicy"] = json!("Delete");
        }
        if obj.get("volumeBindingMode").is_none_or(Value::is_null) {
            obj["volumeBindingMode"] = json!("Immediate");
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for StorageClass {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Provisioner", "string", "", 0),
            ("ReclaimPolicy", "string", "", 0),
            ("VolumeBindingMode", "string", "", 0),
            ("AllowVolumeExpansion", "string", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let age = age(o);
        let default = o
            .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
            .and_then(Value::as_str)
            == Some("true");
        let shown = if default {
            format!("{} (default)", s(o, "/metadata/name"))
        } else {
            s(o, "/metadata/name").to_string()
        };
        vec![
            json!(shown),
            json!(s(o, "/provisioner")),
            json!(s(o, "/reclaimPolicy")),
            json!(s(o, "/volumeBindingMode")),
            json!(o
                .get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()),
            age,
        ]
    }
}
