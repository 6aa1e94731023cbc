//! PersistentVolumeClaims: defaults, the Pending phase, required fields, a spec fixed
//! once created but for binding and expansion.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{canonical_quantities, default, obj_mut};
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::access_modes;

pub(crate) struct PersistentVolumeClaim;

impl Strategy for PersistentVolumeClaim {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::core::v1::PersistentVolumeClaim,
        >())
    }

    fn defaults(&self, obj: &mut Value) {
        default(obj_mut(obj, "spec"), "volumeMode", json!("Filesystem"));
        canonical_quantities(
            obj,
            &[
                "/spec/resources/requests",
                "/spec/resources/limits",
                "/status/capacity",
            ],
        )
    }

    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_claim(obj, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        // kube-apiserver's ValidatePersistentVolumeClaimUpdate: a claim's spec is fixed
        // once created, except binding (volumeName, once), a storage class on a claim
        // that had none (retroactive default class), volumeAttributesClassName, and a
        // bound claim's storage request (expansion only).
        let bound = old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
        let spec_of = |o: &Value| o.get("spec").cloned().unwrap_or(Value::Null);
        let (mut was, mut now) = (spec_of(old), spec_of(new));
        if let (Some(w), Some(n)) = (was.as_object_mut(), now.as_object_mut()) {
            w.remove("volumeAttributesClassName");
            n.remove("volumeAttributesClassName");
            if w.get("volumeName")
                .is_none_or(|v| v.as_str().unwrap_or("").is_empty())
            {
                w.remove("volumeName");
                n.remove("volumeName");
            }
            // Claims stored before volumeMode was defaulted get it on their next write.
            if w.get("volumeMode").is_none() {
                n.remove("volumeMode");
            }
            if w.get("storageClassName").is_none_or(Value::is_null) && !bound {
                w.remove("storageClassName");
                n.remove("storageClassName");
            }
            if bound {
                for m in [&mut *w, &mut *n] {
                    if let Some(r) = m
                        .get_mut("resources")
                        .and_then(|r| r.get_mut("requests"))
                        .and_then(Value::as_object_mut)
                    {
                        r.remove("storage");
                    }
                }
            }
        }
        if was != now {
            causes.push(Cause::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let storage = |o: &Value| {
            o.pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(crate::quantity::milli_value)
        };
        if let (Some(before), Some(after)) = (storage(old), storage(new)) {
            if after < before {
                causes.push(Cause::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than previous value",
                ));
            }
        }
    }
}

fn validate_claim(obj: &Value, causes: &mut Vec<Cause>) {
    access_modes(obj, causes, Some("at least 1 access mode is required"));
    if obj.pointer("/spec/resources/requests/storage").is_none() {
        causes.push(Cause::required("spec.resources[storage]"));
    }
}

// What `kubectl get` prints (`super::Columns`).
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
