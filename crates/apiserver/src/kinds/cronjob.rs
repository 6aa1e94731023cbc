//! CronJobs (batch/v1).

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, template_defaults};
use crate::error::Cause;
use crate::typed::Typed;

pub(crate) struct CronJob;

impl Strategy for CronJob {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::batch::v1::CronJob>())
    }

    fn defaults(&self, obj: &mut Value) {
        let spec = obj_mut(obj, "spec");
        default(spec, "concurrencyPolicy", json!("Allow"));
        default(spec, "suspend", json!(false));
        default(spec, "successfulJobsHistoryLimit", json!(3));
        default(spec, "failedJobsHistoryLimit", json!(1));
        template_defaults(obj.pointer_mut("/spec/jobTemplate/spec/template"));
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        if obj
            .pointer("/spec/schedule")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required("spec.schedule"));
        }
        let spec = obj.pointer("/spec/jobTemplate/spec/template/spec");
        let path = "spec.jobTemplate.spec.template.spec";
        crate::validation::validate_pod_spec(spec, path, causes);
        crate::validation::job_restart_policy(spec, path, causes);
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for CronJob {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Schedule", "string", "", 0),
            ("Timezone", "string", "", 0),
            ("Suspend", "boolean", "", 0),
            ("Active", "integer", "", 0),
            ("Last Schedule", "string", "", 0),
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
            json!(s(o, "/spec/schedule")),
            json!(or_none(s(o, "/spec/timeZone").into())),
            json!(o
                .pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            json!(o
                .pointer("/status/active")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)),
            json!(match o.pointer("/status/lastScheduleTime") {
                Some(t) => since(Some(t)),
                None => "<none>".into(),
            }),
            age,
            containers(o, "/spec/jobTemplate/spec/template/spec/containers"),
            images(o, "/spec/jobTemplate/spec/template/spec/containers"),
            json!(selector_string(
                o.pointer("/spec/jobTemplate/spec/selector")
            )),
        ]
    }
}
