//! PersistentVolumeClaims.

pub(crate) struct PersistentVolumeClaim;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for PersistentVolumeClaim {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Status", "string", "", 0),
            ("Volume", "string", "", 0),
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("StorageClass", "string", "", 0),
            ("VolumeAttributesClass", "string", "", 0),
            AGE,
            ("VolumeMode", "string", "", 1),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![
            name,
            json!(s(o, "/status/phase")),
            json!(s(o, "/spec/volumeName")),
            json!(s(o, "/status/capacity/storage")),
            json!(join_names_plain(o.pointer("/status/accessModes"))),
            json!(or_none(s(o, "/spec/storageClassName").into())),
            json!(or_none(s(o, "/spec/volumeAttributesClassName").into())),
            age,
            json!(s(o, "/spec/volumeMode")),
        ]
    }
}
