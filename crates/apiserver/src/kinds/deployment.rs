//! Deployments (apps/v1).

use serde_json::{json, Value};

use super::Strategy;
use crate::error::Cause;
use crate::strategy::{default, obj_mut, template_defaults};
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
        crate::strategy::selector_immutable(old, new, causes);
    }
}
