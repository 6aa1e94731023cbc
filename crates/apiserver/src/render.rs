//! How one object is answered: as itself, as a Table row or as PartialObjectMetadata,
//! and what a delete answers.

use serde_json::{json, Value};

use crate::http::{Accept, Query};
use crate::registry;
use crate::resource::Resource;
use crate::table::{self, IncludeObject};

pub(crate) fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

pub(crate) fn render_one(res: &Resource, obj: &Value, accept: Accept, q: &Query) -> Value {
    if accept.table {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(json!(""));
        table::table(
            res,
            std::slice::from_ref(obj),
            IncludeObject::parse(q.get("includeObject").map(String::as_str)),
            json!({"resourceVersion": rv}),
            true,
        )
    } else if accept.partial {
        partial(obj)
    } else {
        obj.clone()
    }
}

pub(crate) fn delete_result(res: &Resource, d: &registry::Deleted) -> Value {
    if d.removed && !matches!(res.kind, "Pod" | "Service" | "Namespace") {
        let mut details = json!({
            "name": d.object.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "kind": res.plural,
            "uid": d.object.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        });
        if !res.group.is_empty() {
            details["group"] = json!(res.group);
        }
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
    } else {
        d.object.clone()
    }
}
