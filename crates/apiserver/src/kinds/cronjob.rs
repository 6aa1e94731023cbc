//! CronJobs (batch/v1).

use serde_json::{json, Value};

use super::Strategy;
use crate::error::Cause;
use crate::strategy::{default, obj_mut, template_defaults};
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
