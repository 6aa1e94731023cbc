//! Events, core/v1 and events.k8s.io/v1 (one stored resource, two views).

use serde_json::Value;

use super::Strategy;
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
