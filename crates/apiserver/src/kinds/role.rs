//! Roles (rbac.authorization.k8s.io/v1): their rules.

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{invalid_raw, required_because};

pub(crate) struct Role;

impl Strategy for Role {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::rbac::v1::Role>())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_rules(obj, true, causes);
    }
}

/// The rules of a Role or ClusterRole (`namespaced` for a Role, whose rules may not name
/// non-resource URLs).
pub(super) fn validate_rules(obj: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    for (i, rule) in obj
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let list = |k: &str| rule.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        if list("verbs") == 0 {
            causes.push(required_because(
                format!("rules[{i}].verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = list("nonResourceURLs");
        if urls > 0 {
            if namespaced {
                causes.push(invalid_raw(
                    format!("rules[{i}].nonResourceURLs"),
                    &format!(
                        "{:?}",
                        rule.get("nonResourceURLs").cloned().unwrap_or_default()
                    ),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if list("apiGroups") > 0 || list("resources") > 0 || list("resourceNames") > 0 {
                causes.push(invalid_raw(
                    format!("rules[{i}].nonResourceURLs"),
                    "[]string{}",
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if list("apiGroups") == 0 {
            causes.push(required_because(
                format!("rules[{i}].apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if list("resources") == 0 {
            causes.push(required_because(
                format!("rules[{i}].resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Role {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Created At", "date", "", 0)]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        vec![name, json!(s(o, "/metadata/creationTimestamp"))]
    }
}
