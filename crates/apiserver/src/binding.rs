//! The pods/binding subresource: the scheduler's (or anyone's with the right) answer
//! to where a pod runs, written once into `spec.nodeName` as kube-apiserver's
//! BindingREST does: refused for a pod already bound or being deleted.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::resource::Resource;
use crate::subresource::Subresource;
use skiff_meta::object::without_rv;

/// Binds pod `name` to the node `binding.target.name` names.
pub(crate) async fn bind(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    dry: bool,
    binding: &Value,
) -> ApiResult<()> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![crate::error::Cause::required("target.name")],
        ));
    }
    reg.update(res, ns, name, Subresource::Binding, dry, |old| {
        let current = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !current.is_empty() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
                ),
            ));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let mut new = without_rv(old);
        new["spec"]["nodeName"] = json!(node);
        Ok(new)
    })
    .await?;
    Ok(())
}
