//! RoleBindings (rbac.authorization.k8s.io/v1).

pub(crate) struct RoleBinding;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
