//! StorageClasses (storage.k8s.io/v1).

pub(crate) struct StorageClass;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
