//! Server-side printing: `meta.k8s.io/v1` Tables and their rows (`IncludeObject`: the
//! object, its PartialObjectMetadata or nothing). Which columns a kind has and what its
//! cells say live with the kind (`Columns` in `kinds`, a supertrait of its strategy), its
//! cells made with the helpers in `cells`; this module names no kind.

use serde_json::{json, Value};

use crate::kinds;
use crate::resource::Resource;

/// Whether rows carry the object, its metadata, or nothing (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// The column definitions of `res`'s table.
pub fn column_definitions(res: &Resource) -> Vec<Value> {
    kinds::of(res)
        .columns()
        .iter()
        .map(|&(name, ty, format, priority)| {
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect()
}
/// One row of `res`'s table for `obj`.
pub fn row(res: &Resource, obj: &Value, include: IncludeObject) -> Value {
    let mut row = json!({"cells": kinds::of(res).cells(obj)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = obj.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
    }
    row
}

/// A Table of `objects`; `with_columns` false for the later events of a watch.
pub fn table(
    res: &Resource,
    objects: &[Value],
    include: IncludeObject,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": objects.iter().map(|o| row(res, o, include)).collect::<Vec<_>>(),
    });
    if with_columns {
        t["columnDefinitions"] = Value::Array(column_definitions(res));
    }
    t
}
