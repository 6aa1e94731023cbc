//! What a write through a subresource may change: `status` takes only the status,
//! `finalize` only `spec.finalizers`, `binding` only `spec.nodeName`, `ephemeralcontainers`
//! only `spec.ephemeralContainers`, which may be added but never changed or removed. The
//! rest of the object is carried over from the stored one, as kube-apiserver's
//! per-subresource strategies do. Which subresources a resource serves is the router's
//! (`handler`); the kind's own rules after this step are its strategy's (`kinds`).

use serde_json::{json, Value};
use skiff_meta::object::obj_mut;

use crate::error::Cause;

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
    /// `namespaces/{name}/finalize`: only `spec.finalizers` changes.
    Finalize,
    /// `pods/{name}/binding`: only `spec.nodeName` changes.
    Binding,
    /// `pods/{name}/ephemeralcontainers`: only `spec.ephemeralContainers` changes.
    EphemeralContainers,
}

impl Subresource {
    /// The subresource a PUT, PATCH or apply on `sub` writes.
    pub fn of_update(sub: Option<&str>) -> Subresource {
        match sub {
            Some("status") => Subresource::Status,
            Some("finalize") => Subresource::Finalize,
            Some("ephemeralcontainers") => Subresource::EphemeralContainers,
            _ => Subresource::Main,
        }
    }

    /// The name managed fields record for writes through this subresource.
    pub fn managed_name(self) -> Option<&'static str> {
        match self {
            Subresource::Status => Some("status"),
            Subresource::EphemeralContainers => Some("ephemeralcontainers"),
            _ => None,
        }
    }
}

impl Subresource {
    /// Makes `new` the stored `old` with only what this subresource writes taken from
    /// `new`. The main resource carries over nothing here (its steps are the strategy's).
    pub fn carry_over(self, old: &Value, new: &mut Value) {
        let take = |new: &Value, ptr: &str| new.pointer(ptr).cloned();
        match self {
            Subresource::Main => {}
            Subresource::Status => {
                let status = new.get("status").cloned().unwrap_or(json!({}));
                *new = old.clone();
                new["status"] = status;
            }
            Subresource::Finalize => {
                let finalizers = take(new, "/spec/finalizers").unwrap_or(json!([]));
                *new = old.clone();
                obj_mut(new, "spec").insert("finalizers".into(), finalizers);
            }
            Subresource::Binding => {
                let node = take(new, "/spec/nodeName").unwrap_or(Value::Null);
                *new = old.clone();
                obj_mut(new, "spec").insert("nodeName".into(), node);
            }
            Subresource::EphemeralContainers => {
                let list = take(new, "/spec/ephemeralContainers").unwrap_or(Value::Null);
                *new = old.clone();
                let spec = obj_mut(new, "spec");
                if list.is_null() {
                    spec.remove("ephemeralContainers");
                } else {
                    spec.insert("ephemeralContainers".into(), list);
                }
            }
        }
    }

    /// The rules of an update through this subresource (after [`Self::carry_over`]):
    /// ephemeral containers may be added, never changed or removed.
    pub fn validate_update(self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        if self != Subresource::EphemeralContainers {
            return;
        }
        let list = |o: &Value| {
            o.pointer("/spec/ephemeralContainers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let now = list(new);
        for was in list(old) {
            let name = was.get("name").and_then(Value::as_str).unwrap_or_default();
            let message = match now.iter().find(|c| c.get("name") == was.get("name")) {
                None => format!("existing ephemeral containers {name:?} may not be removed"),
                Some(c) if c != &was => {
                    format!("existing ephemeral containers {name:?} may not be changed")
                }
                Some(_) => continue,
            };
            causes.push(Cause::forbidden("spec.ephemeralContainers", &message));
        }
    }
}
