//! Deployments (apps/v1).

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, template_defaults};
use crate::error::Cause;
use crate::typed::Typed;

pub(crate) struct Deployment;

impl Strategy for Deployment {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::apps::v1::Deployment>())
    }

    fn defaults(&self, obj: &mut Value) {
        let spec = obj_mut(obj, "spec");
        default(spec, "replicas", json!(1));
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "progressDeadlineSeconds", json!(600));
        default(spec, "strategy", json!({}));
        if let Some(Value::Object(strategy)) = spec.get_mut("strategy") {
            default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                default(strategy, "rollingUpdate", json!({}));
                if let Some(Value::Object(ru)) = strategy.get_mut("rollingUpdate") {
                    default(ru, "maxUnavailable", json!("25%"));
                    default(ru, "maxSurge", json!("25%"));
                }
            }
        }
        template_defaults(obj.pointer_mut("/spec/template"));
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        crate::validation::validate_workload(
            obj,
            "deployment",
            obj.pointer("/spec/template/spec"),
            causes,
        );
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        crate::validation::selector_immutable(old, new, causes);
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Deployment {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
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
            json!(i(o, "/status/updatedReplicas")),
            json!(i(o, "/status/availableReplicas")),
            age,
            containers(o, "/spec/template/spec/containers"),
            images(o, "/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ]
    }
}
