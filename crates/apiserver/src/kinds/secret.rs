//! Secrets: the Opaque type, `stringData` merged into `data`, the keys each built-in
//! type needs, size, immutability.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::obj_mut;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{config_keys, config_size, config_values, decoded_len};

pub(crate) struct Secret;

impl Strategy for Secret {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Secret>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn defaults(&self, obj: &mut Value) {
        if obj.get("type").is_none_or(Value::is_null) {
            obj["type"] = json!("Opaque");
        }
        // stringData is write-only: merged into data (base64) and dropped.
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            use base64::Engine;
            let data = obj_mut(obj, "data");
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }

    /// The keys of its type, its data (decoded, stringData included) at most
    /// [`crate::validation::MAX_CONFIG_SIZE`] bytes, its keys.
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_secret_type(obj, causes);
        let total = config_values(obj, "data").map(decoded_len).sum::<usize>()
            + config_values(obj, "stringData")
                .map(str::len)
                .sum::<usize>();
        config_size(total, "data", causes);
        config_keys(obj, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        super::configmap::immutable_data(old, new, causes);
        crate::validation::immutable(old, new, "type", causes);
    }
}

/// The keys a Secret of a built-in type must carry.
fn validate_secret_type(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let data = obj.get("data").and_then(Value::as_object);
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let need = |k: &str, causes: &mut Vec<Cause>| {
        if !has(k) {
            causes.push(Cause::required(format!("data[{k}]")));
        }
    };
    match ty {
        "kubernetes.io/tls" => {
            need("tls.crt", causes);
            need("tls.key", causes);
        }
        "kubernetes.io/dockerconfigjson" => need(".dockerconfigjson", causes),
        "kubernetes.io/dockercfg" => need(".dockercfg", causes),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            need("username", causes);
            need("password", causes);
        }
        "kubernetes.io/ssh-auth" => {
            let empty = data
                .and_then(|d| d.get("ssh-privatekey"))
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                causes.push(Cause::required("data[ssh-privatekey]"));
            }
        }
        "kubernetes.io/service-account-token" => {
            let name = obj
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.is_empty() {
                causes.push(Cause::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                ));
            }
        }
        _ => {}
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Secret {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Type", "string", "", 0),
            ("Data", "string", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![name, json!(s(o, "/type")), json!(count(o, "data")), age]
    }
}
