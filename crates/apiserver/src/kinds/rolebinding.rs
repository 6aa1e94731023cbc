//! RoleBindings (rbac.authorization.k8s.io/v1): role reference and subjects, the role
//! reference fixed once created.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{invalid_raw, not_supported};

pub(crate) struct RoleBinding;

impl Strategy for RoleBinding {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::rbac::v1::RoleBinding>())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_binding(obj, false, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        role_ref_unchanged(old, new, causes);
    }
}

/// `cannot change roleRef`.
pub(super) fn role_ref_unchanged(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if old.get("roleRef") == new.get("roleRef") {
        return;
    }
    let field = |k: &str| {
        json!(new
            .pointer(&format!("/roleRef/{k}"))
            .and_then(Value::as_str)
            .unwrap_or(""))
        .to_string()
    };
    causes.push(invalid_raw(
        "roleRef",
        &format!(
            "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
            field("apiGroup"),
            field("kind"),
            field("name")
        ),
        "cannot change roleRef",
    ));
}

/// The role reference and subjects of a RoleBinding or ClusterRoleBinding (`cluster`:
/// which may bind only ClusterRoles, and whose ServiceAccount subjects name their
/// namespace).
pub(super) fn validate_binding(obj: &Value, cluster: bool, causes: &mut Vec<Cause>) {
    let rk = obj
        .pointer("/roleRef/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let supported: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !supported.contains(&rk) {
        causes.push(not_supported("roleRef.kind", rk, supported));
    }
    let group = obj
        .pointer("/roleRef/apiGroup")
        .and_then(Value::as_str)
        .unwrap_or("");
    if group != "rbac.authorization.k8s.io" {
        causes.push(not_supported(
            "roleRef.apiGroup",
            group,
            &["rbac.authorization.k8s.io"],
        ));
    }
    if obj
        .pointer("/roleRef/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        causes.push(Cause::required("roleRef.name"));
    }
    for (i, s) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = |f: &str| format!("subjects[{i}].{f}");
        if s.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(at("name")));
        }
        let k = s.get("kind").and_then(Value::as_str).unwrap_or("");
        match k {
            "ServiceAccount" => {
                if cluster
                    && s.get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                {
                    causes.push(Cause::required(at("namespace")));
                }
            }
            "User" | "Group" => {
                let g = s.get("apiGroup").and_then(Value::as_str).unwrap_or("");
                if g != "rbac.authorization.k8s.io" {
                    causes.push(not_supported(
                        at("apiGroup"),
                        g,
                        &["rbac.authorization.k8s.io"],
                    ));
                }
            }
            other => causes.push(not_supported(
                at("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for RoleBinding {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Role", "string", "", 0),
            AGE,
            ("Users", "string", "", 1),
            ("Groups", "string", "", 1),
            ("ServiceAccounts", "string", "", 1),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let subjects = |kind: &str| -> String {
            o.get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|x| s(x, "/kind") == kind)
                .map(|x| {
                    if kind == "ServiceAccount" {
                        format!("{}/{}", s(x, "/namespace"), s(x, "/name"))
                    } else {
                        s(x, "/name").to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            name,
            json!(format!(
                "{}/{}",
                s(o, "/roleRef/kind"),
                s(o, "/roleRef/name")
            )),
            age,
            json!(subjects("User")),
            json!(subjects("Group")),
            json!(subjects("ServiceAccount")),
        ]
    }
}
