//! PersistentVolumes: defaults, the Pending phase, required fields.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{canonical_quantities, default, obj_mut};
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{access_modes, required_because};

pub(crate) struct PersistentVolume;

impl Strategy for PersistentVolume {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::core::v1::PersistentVolume,
        >())
    }

    fn defaults(&self, obj: &mut Value) {
        let spec = obj_mut(obj, "spec");
        default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        default(spec, "volumeMode", json!("Filesystem"));
        canonical_quantities(obj, &["/spec/capacity"])
    }

    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_volume(obj, causes);
    }
}

fn validate_volume(obj: &Value, causes: &mut Vec<Cause>) {
    access_modes(obj, causes, None);
    let capacity = obj.pointer("/spec/capacity").and_then(Value::as_object);
    if capacity.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required("spec.capacity"));
    }
    const SOURCES: [&str; 23] = [
        "hostPath",
        "local",
        "nfs",
        "csi",
        "iscsi",
        "fc",
        "rbd",
        "cephfs",
        "cinder",
        "glusterfs",
        "flexVolume",
        "flocker",
        "azureFile",
        "azureDisk",
        "vsphereVolume",
        "quobyte",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "persistentVolumeSource",
    ];
    let spec = obj.get("spec");
    if !SOURCES
        .iter()
        .any(|s| spec.and_then(|sp| sp.get(*s)).is_some_and(|v| !v.is_null()))
    {
        causes.push(required_because("spec", "must specify a volume type"));
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for PersistentVolume {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("Reclaim Policy", "string", "", 0),
            ("Status", "string", "", 0),
            ("Claim", "string", "", 0),
            ("StorageClass", "string", "", 0),
            ("VolumeAttributesClass", "string", "", 0),
            ("Reason", "string", "", 0),
            AGE,
            ("VolumeMode", "string", "", 1),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let modes: Vec<&str> = o
            .pointer("/spec/accessModes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|m| match m {
                "ReadWriteOnce" => "RWO",
                "ReadOnlyMany" => "ROX",
                "ReadWriteMany" => "RWX",
                "ReadWriteOncePod" => "RWOP",
                other => other,
            })
            .collect();
        let claim = match o.pointer("/spec/claimRef") {
            Some(c) => format!("{}/{}", s(c, "/namespace"), s(c, "/name")),
            None => String::new(),
        };
        vec![
            name,
            json!(s(o, "/spec/capacity/storage")),
            json!(modes.join(",")),
            json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
            json!(s(o, "/status/phase")),
            json!(claim),
            json!(s(o, "/spec/storageClassName")),
            json!(or_none(s(o, "/spec/volumeAttributesClassName").into())),
            json!(s(o, "/status/reason")),
            age,
            json!(s(o, "/spec/volumeMode")),
        ]
    }
}
