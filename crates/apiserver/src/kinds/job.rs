//! Jobs (batch/v1).

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, template_defaults};
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::immutable;

pub(crate) struct Job;

impl Strategy for Job {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::batch::v1::Job>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn defaults(&self, obj: &mut Value) {
        job_defaults(obj);
    }

    /// A selector left out of an update is the one the job has.
    fn prepare_update(&self, old: &Value, new: &mut Value) {
        if new.pointer("/spec/selector").is_none() {
            if let Some(sel) = old.pointer("/spec/selector") {
                obj_mut(new, "spec").insert("selector".into(), sel.clone());
            }
        }
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let spec = obj.pointer("/spec/template/spec");
        crate::validation::validate_pod_spec(spec, "spec.template.spec", causes);
        crate::validation::job_restart_policy(spec, "spec.template.spec", causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        immutable(old, new, "spec.selector", causes);
        immutable(old, new, "spec.completions", causes);
    }
}

/// `SetDefaults_Job`: counts and policies, and (unless the selector is manual) a selector
/// on the job's uid with the matching template labels.
fn job_defaults(obj: &mut Value) {
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let spec = obj_mut(obj, "spec");
    default(spec, "parallelism", json!(1));
    if spec.get("completions").is_none() && spec.get("parallelism").is_some() {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && !uid.is_null() && spec.get("selector").is_none() {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
        if let Some(t) = spec.get_mut("template").filter(|t| t.is_object()) {
            let tmeta = obj_mut(t, "metadata");
            if !tmeta.get("labels").is_some_and(Value::is_object) {
                tmeta.insert("labels".into(), json!({}));
            }
        }
        if let Some(Value::Object(labels)) = obj.pointer_mut("/spec/template/metadata/labels") {
            labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
            labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
            labels.insert("controller-uid".into(), uid);
            labels.insert("job-name".into(), name);
        }
    }
    template_defaults(obj.pointer_mut("/spec/template"));
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Job {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Status", "string", "", 0),
            ("Completions", "string", "", 0),
            ("Duration", "string", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        // kubectl's printer: the first of these that holds.
        let has = |t: &str| {
            o.pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| s(c, "/status") == "True" && s(c, "/type") == t)
        };
        let status = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if o.pointer("/metadata/deletionTimestamp").is_some() {
            "Terminating"
        } else if has("Suspended") {
            "Suspended"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else if has("SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let time = |p: &str| {
            o.pointer(p)
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        let duration = match (time("/status/startTime"), time("/status/completionTime")) {
            (None, _) => String::new(),
            (Some(st), None) => human_duration(chrono::Utc::now().signed_duration_since(st)),
            (Some(st), Some(ct)) => human_duration(ct.signed_duration_since(st)),
        };
        let completions = format!(
            "{}/{}",
            i(o, "/status/succeeded"),
            i(o, "/spec/completions").max(1)
        );
        vec![
            name,
            json!(status),
            json!(completions),
            json!(duration),
            age,
            containers(o, "/spec/template/spec/containers"),
            images(o, "/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ]
    }
}
