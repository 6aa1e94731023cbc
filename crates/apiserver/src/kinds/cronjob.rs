//! CronJobs (batch/v1).

pub(crate) struct CronJob;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
