//! Resources served through more than one API: the stored form and its other views.
//! Today: `events.k8s.io/v1` Events are core/v1 Events (the stored form) with renamed
//! fields, as in kube-apiserver.

use serde_json::{json, Value};

use crate::resource::Resource;

/// (core/v1 field, events.k8s.io/v1 field)
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Whether `res` is a view of another resource's stored objects.
pub fn is_view(res: &Resource) -> bool {
    res.group == "events.k8s.io"
}

fn rename(obj: &mut Value, from_core: bool) {
    let Some(m) = obj.as_object_mut() else { return };
    for (core, view) in EVENT_FIELDS {
        let (from, to) = if from_core {
            (core, view)
        } else {
            (view, core)
        };
        if let Some(v) = m.remove(*from) {
            m.insert(to.to_string(), v);
        }
    }
}

/// The fields of a core/v1 Event Go always writes (strings without `omitempty`, a
/// struct): empty when unset.
pub fn core_event_defaults(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        for (k, v) in [
            ("reportingComponent", json!("")),
            ("reportingInstance", json!("")),
            ("source", json!({})),
        ] {
            if m.get(k).is_none_or(Value::is_null) {
                m.insert(k.into(), v);
            }
        }
    }
}

/// Stored form → the form `res` serves.
pub fn from_storage(res: &Resource, mut obj: Value) -> Value {
    if is_view(res) {
        rename(&mut obj, true);
        obj["apiVersion"] = json!(res.api_version());
        // events.k8s.io/v1 leaves out empty reporting fields (`omitempty`).
        if let Some(m) = obj.as_object_mut() {
            for k in ["reportingController", "reportingInstance"] {
                if m.get(k).is_some_and(|v| v == "") {
                    m.remove(k);
                }
            }
        }
    }
    obj
}

/// The form `res` serves → stored form.
pub fn to_storage(res: &Resource, obj: &Value) -> Value {
    let mut obj = obj.clone();
    if is_view(res) {
        rename(&mut obj, false);
        obj["apiVersion"] = json!("v1");
        core_event_defaults(&mut obj);
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let view = crate::resources::lookup("events.k8s.io", "v1", "events").unwrap();
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "count": 2, "reason": "Started"});
        let v = from_storage(view, core.clone());
        assert_eq!(v["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v["regarding"]["name"], "p");
        assert_eq!(v["note"], "hi");
        assert_eq!(v["deprecatedCount"], 2);
        assert_eq!(v["reason"], "Started");
        let mut stored = core.clone();
        core_event_defaults(&mut stored);
        assert_eq!(to_storage(view, &v), stored);
        assert_eq!(stored["reportingComponent"], "");
        assert_eq!(stored["source"], json!({}));
        // Empty reporting fields are left out of the view; the source stays ({}).
        let v = from_storage(view, stored);
        assert!(v.get("reportingController").is_none() && v.get("reportingInstance").is_none());
        assert_eq!(v["deprecatedSource"], json!({}));
    }
}
