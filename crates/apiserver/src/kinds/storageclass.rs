//! StorageClasses (storage.k8s.io/v1): reclaim policy and binding mode defaults.

use serde_json::{json, Value};

use super::Strategy;
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
