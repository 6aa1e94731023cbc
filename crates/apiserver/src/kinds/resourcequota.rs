//! ResourceQuotas.

pub(crate) struct ResourceQuota;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for ResourceQuota {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            AGE,
            ("Request", "string", "", 0),
            ("Limit", "string", "", 0),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let hard = o
            .pointer("/status/hard")
            .or(o.pointer("/spec/hard"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let (mut req, mut lim) = (Vec::new(), Vec::new());
        for (k, v) in &hard {
            let used = s(
                o,
                &format!("/status/used/{}", k.replace('~', "~0").replace('/', "~1")),
            );
            let used = if used.is_empty() { "0" } else { used };
            let entry = format!("{k}: {used}/{}", v.as_str().unwrap_or(""));
            if k.starts_with("limits.") {
                lim.push(entry);
            } else {
                req.push(entry);
            }
        }
        vec![name, age, json!(req.join(", ")), json!(lim.join(", "))]
    }
}
