//! Jobs (batch/v1).

use super::Strategy;

pub(crate) struct Job;

impl Strategy for Job {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
