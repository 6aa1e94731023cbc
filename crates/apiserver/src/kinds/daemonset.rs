//! DaemonSets (apps/v1).

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, template_defaults};
use crate::error::Cause;
use crate::typed::Typed;

pub(crate) struct DaemonSet;

impl Strategy for DaemonSet {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::apps::v1::DaemonSet>())
    }

    fn defaults(&self, obj: &mut Value) {
        let spec = obj_mut(obj, "spec");
        default(spec, "revisionHistoryLimit", json!(10));
        default(
            spec,
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        );
        template_defaults(obj.pointer_mut("/spec/template"));
    }

    fn status_defaults(&self, obj: &mut Value) {
        crate::defaults::zero_status(
            obj,
            &[
                "currentNumberScheduled",
                "numberMisscheduled",
                "desiredNumberScheduled",
                "numberReady",
            ],
        );
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        crate::validation::validate_workload(
            obj,
            "daemonset",
            obj.pointer("/spec/template/spec"),
            causes,
        );
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        crate::validation::selector_immutable(old, new, causes);
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for DaemonSet {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Node Selector", "string", "", 0),
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
            json!(i(o, "/status/desiredNumberScheduled")),
            json!(i(o, "/status/currentNumberScheduled")),
            json!(i(o, "/status/numberReady")),
            json!(i(o, "/status/updatedNumberScheduled")),
            json!(i(o, "/status/numberAvailable")),
            json!(selector_string(
                o.pointer("/spec/template/spec/nodeSelector")
            )),
            age,
            containers(o, "/spec/template/spec/containers"),
            images(o, "/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ]
    }
}
