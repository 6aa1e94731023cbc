//! Checks a JSON object against the typed Kubernetes schema (k8s-openapi's structs), as the
//! real server's decoder does: wrongly typed fields are a 400, unknown fields are pruned
//! and reported (`fieldValidation`: Strict → error, Warn → warning, Ignore → silent).
//! Which struct is a kind's is its strategy's answer (`Strategy::typed` in `kinds`),
//! through the object-safe [`Typed`].

use std::marker::PhantomData;

use k8s_openapi::schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

/// The Kubernetes minor version whose API this server implements (the k8s-openapi feature).
pub fn kube_minor() -> u32 {
    #[allow(unused_mut)]
    let mut v = 33;
    k8s_openapi::k8s_if_1_34! { v = 34; }
    k8s_openapi::k8s_if_1_35! { v = 35; }
    k8s_openapi::k8s_if_1_36! { v = 36; }
    k8s_openapi::k8s_if_1_37! { v = 37; }
    v
}

/// A kind's typed schema: the k8s-openapi struct of a built-in kind (see [`of`]), which
/// the decoder round-trips objects through and OpenAPI describes. Object-safe, so that
/// a kind's strategy (`Strategy::typed` in `kinds`) can answer one.
pub(crate) trait Typed: Send + Sync {
    /// `obj` through the typed struct and back: an error if it does not decode.
    fn round_trip(&self, obj: &Value) -> Result<Value, String>;
    /// The struct's schema as `generator` references it.
    fn schema(&self, generator: &mut SchemaGenerator) -> Schema;
}

/// [`Typed`] by the k8s-openapi struct `T`.
struct As<T>(PhantomData<fn() -> T>);

impl<T> Typed for As<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + JsonSchema + 'static,
{
    fn round_trip(&self, obj: &Value) -> Result<Value, String> {
        let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(&typed).map_err(|e| e.to_string())
    }

    fn schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T>()
    }
}

impl<T> As<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + JsonSchema + 'static,
{
    const TYPED: &'static dyn Typed = &As::<T>(PhantomData);
}

/// The [`Typed`] of the k8s-openapi struct `T`.
pub(crate) fn of<T>() -> &'static dyn Typed
where
    T: serde::de::DeserializeOwned + serde::Serialize + JsonSchema + 'static,
{
    As::<T>::TYPED
}

/// Checks `obj` against its kind's typed schema (`None`: the kind has none, and it
/// passes): `Err(message)` if it does not decode; otherwise removes unknown fields from
/// it and returns their paths.
pub fn check(typed: Option<&dyn Typed>, obj: &mut Value) -> Result<Vec<String>, String> {
    let Some(typed) = typed else {
        return Ok(Vec::new());
    };
    let typed = typed.round_trip(obj)?;
    // resource.Quantity fails to decode in kube-apiserver: the whole body is refused.
    if has_bad_quantity(obj, "") {
        return Err(format!(
            "quantities must match the regular expression '{}'",
            crate::quantity::PATTERN
        ));
    }
    let mut unknown = Vec::new();
    prune(obj, &typed, String::new(), &mut unknown);
    Ok(unknown)
}

/// Fields of the built-in kinds that hold resource lists (name → Quantity).
const QUANTITY_LISTS: [&str; 12] = [
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
    "min",
    "max",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
    "overhead",
];
/// Fields that are one Quantity.
const QUANTITY_FIELDS: [&str; 2] = ["sizeLimit", "divisor"];

/// Whether a Quantity field of `v` (under key `key`) does not parse.
fn has_bad_quantity(v: &Value, key: &str) -> bool {
    let bad = |q: &Value| match q {
        Value::String(s) => crate::quantity::canonicalize(s).is_none(),
        Value::Number(_) | Value::Null => false,
        _ => true,
    };
    match v {
        Value::Object(m) if QUANTITY_LISTS.contains(&key) && m.values().all(|q| !q.is_object()) => {
            m.values().any(bad)
        }
        Value::Object(m) => m.iter().any(|(k, c)| has_bad_quantity(c, k)),
        Value::Array(a) => a.iter().any(|c| has_bad_quantity(c, "")),
        q if QUANTITY_FIELDS.contains(&key) => bad(q),
        _ => false,
    }
}

fn prune(input: &mut Value, typed: &Value, path: String, unknown: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(m), Value::Object(t)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (m.get_mut(&k), t.get(&k)) {
                    (Some(Value::Null), _) => {}
                    (Some(v), Some(tv)) => prune(v, tv, p, unknown),
                    (Some(_), None) => {
                        m.remove(&k);
                        unknown.push(p);
                    }
                    (None, _) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(t)) => {
            for (i, (v, tv)) in a.iter_mut().zip(t).enumerate() {
                prune(v, tv, format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    #[test]
    fn finds_and_prunes_unknown_fields() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicy": null, "colour": "red"}]}});
        let unknown = check(Some(of::<Pod>()), &mut pod).unwrap();
        assert_eq!(unknown, vec!["metadata.bogus", "spec.containers[0].colour"]);
        assert!(pod["spec"]["containers"][0].get("colour").is_none());
        assert_eq!(pod["spec"]["containers"][0]["image"], "x");
    }

    #[test]
    fn wrong_types_fail() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        assert!(check(Some(of::<Deployment>()), &mut d).is_err());
    }

    #[test]
    fn version_is_known() {
        assert!(kube_minor() >= 33);
    }
}
