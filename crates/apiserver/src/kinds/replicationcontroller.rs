//! ReplicationControllers.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, template_defaults};
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{go_string_map, invalid_raw, validate_replicas_and_template};

pub(crate) struct ReplicationController;

impl Strategy for ReplicationController {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::core::v1::ReplicationController,
        >())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn defaults(&self, obj: &mut Value) {
        // An empty selector, and empty labels, are the template's labels
        // (SetDefaults_ReplicationController).
        let labels = obj
            .pointer("/spec/template/metadata/labels")
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
            .cloned();
        if let Some(labels) = labels {
            let empty =
                |v: Option<&Value>| v.is_none_or(|v| v.as_object().is_none_or(|m| m.is_empty()));
            if empty(obj.pointer("/spec/selector")) {
                obj_mut(obj, "spec").insert("selector".into(), labels.clone());
            }
            if empty(obj.pointer("/metadata/labels")) {
                obj_mut(obj, "metadata").insert("labels".into(), labels);
            }
        }
        default(obj_mut(obj, "spec"), "replicas", json!(1));
        template_defaults(obj.pointer_mut("/spec/template"));
    }

    fn status_defaults(&self, obj: &mut Value) {
        crate::defaults::zero_status(obj, &["replicas"]);
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_replication_controller(obj, causes);
    }
}

/// A ReplicationController: an equality-based selector (a plain map), required and
/// matching the template's labels, as ValidateReplicationControllerSpec.
fn validate_replication_controller(obj: &Value, causes: &mut Vec<Cause>) {
    let selector: std::collections::BTreeMap<String, String> = obj
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if selector.is_empty() {
        causes.push(Cause::required("spec.selector"));
    }
    match obj.pointer("/spec/template").filter(|t| !t.is_null()) {
        None => causes.push(Cause::required("spec.template")),
        Some(t) => {
            let labels = skiff_meta::selector::labels_of(t);
            if !selector.is_empty() && !skiff_meta::selector::set_matches(&selector, &labels) {
                causes.push(invalid_raw(
                    "spec.template.metadata.labels",
                    &go_string_map(&labels),
                    "selector does not match template labels",
                ));
            }
        }
    }
    validate_replicas_and_template(obj, obj.pointer("/spec/template/spec"), causes);
}

// What `kubectl get` prints (`super::Columns`).
/// ReplicationControllers print as ReplicaSets do.
impl Columns for ReplicationController {
    fn columns(&self) -> &'static [Col] {
        super::replicaset::ReplicaSet.columns()
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        super::replicaset::ReplicaSet.cells(o)
    }
}
