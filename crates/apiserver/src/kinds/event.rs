//! Events, core/v1 and events.k8s.io/v1 (one stored resource, two views).

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

/// core/v1 Events.
pub(crate) struct Event;

/// events.k8s.io/v1 Events, the view: core/v1's field selectors, none of its defaults.
pub(crate) struct EventsView;

/// The fields a field selector on Events may name.
const FIELD_SELECTORS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

impl Strategy for Event {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Event>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        FIELD_SELECTORS
    }

    fn defaults(&self, obj: &mut Value) {
        crate::convert::core_event_defaults(obj);
    }
}

impl Strategy for EventsView {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::events::v1::Event>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        FIELD_SELECTORS
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Event {
    fn columns(&self) -> &'static [Col] {
        &[
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Subobject", "string", "", 1),
            ("Source", "string", "", 1),
            ("Message", "string", "", 0),
            ("First Seen", "string", "", 1),
            ("Count", "string", "", 1),
            ("Name", "string", "", 1),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        // Core/v1 field names, or the events.k8s.io/v1 ones.
        let field = |core: &str, view: &str| o.get(core).filter(|v| !v.is_null()).or(o.get(view));
        let last = field("lastTimestamp", "deprecatedLastTimestamp")
            .filter(|v| !v.is_null())
            .or(o.get("eventTime").filter(|v| !v.is_null()))
            .or(o.pointer("/metadata/creationTimestamp"));
        let regarding = field("involvedObject", "regarding")
            .cloned()
            .unwrap_or(Value::Null);
        let object = format!(
            "{}/{}",
            s(&regarding, "/kind").to_lowercase(),
            s(&regarding, "/name")
        );
        let source = field("source", "deprecatedSource")
            .cloned()
            .unwrap_or(Value::Null);
        let count = field("count", "deprecatedCount")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        vec![
            json!(since(last)),
            json!(s(o, "/type")),
            json!(s(o, "/reason")),
            json!(object),
            json!(s(&regarding, "/fieldPath")),
            json!(s(&source, "/component")),
            json!(field("message", "note")
                .and_then(Value::as_str)
                .unwrap_or("")),
            json!(since(field("firstTimestamp", "deprecatedFirstTimestamp"))),
            json!(count.max(1).to_string()),
            name,
        ]
    }
}

/// events.k8s.io/v1 Events print as core/v1 Events do.
impl Columns for EventsView {
    fn columns(&self) -> &'static [crate::cells::Col] {
        Event.columns()
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        Event.cells(obj)
    }
}
