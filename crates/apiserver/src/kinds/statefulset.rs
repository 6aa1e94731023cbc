//! StatefulSets (apps/v1).

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, template_defaults};
use crate::error::Cause;
use crate::typed::Typed;

pub(crate) struct StatefulSet;

impl Strategy for StatefulSet {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::apps::v1::StatefulSet>())
    }

    fn defaults(&self, obj: &mut Value) {
        let spec = obj_mut(obj, "spec");
        default(spec, "replicas", json!(1));
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "podManagementPolicy", json!("OrderedReady"));
        default(
            spec,
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        );
        default(
            spec,
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
        template_defaults(obj.pointer_mut("/spec/template"));
    }

    fn status_defaults(&self, obj: &mut Value) {
        crate::defaults::zero_status(obj, &["replicas", "availableReplicas"]);
    }

    /// A StatefulSet's pods get one volume per claim template (the controller adds
    /// them), so the template's mounts may name those templates.
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let mut spec = obj.pointer("/spec/template/spec").cloned();
        if let Some(s) = spec.as_mut().and_then(Value::as_object_mut) {
            let claims: Vec<Value> = obj
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str))
                .map(|n| json!({"name": n, "persistentVolumeClaim": {"claimName": n}}))
                .collect();
            let vols = s
                .entry("volumes")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(vols) = vols.as_array_mut() {
                for c in claims {
                    if !vols.iter().any(|v| v.get("name") == c.get("name")) {
                        vols.push(c);
                    }
                }
            }
        }
        crate::validation::validate_workload(obj, "statefulset", spec.as_ref(), causes);
    }

    /// The selector never changes; of the rest of the spec, only what the message names.
    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        crate::validation::selector_immutable(old, new, causes);
        let rest = |o: &Value| {
            let mut spec = o.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(m) = spec.as_object_mut() {
                for k in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                    "selector",
                ] {
                    m.remove(k);
                }
            }
            spec
        };
        if rest(old) != rest(new) {
            causes.push(Cause::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for StatefulSet {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Ready", "string", "", 0), AGE, CONTAINERS, IMAGES]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![
            name,
            json!(format!(
                "{}/{}",
                i(o, "/status/readyReplicas"),
                i(o, "/spec/replicas")
            )),
            age,
            containers(o, "/spec/template/spec/containers"),
            images(o, "/spec/template/spec/containers"),
        ]
    }
}
