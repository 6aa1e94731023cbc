//! How objects are stored: their keys (`/registry/<group>/<plural>/[<ns>/]<name>`) and their
//! encoding (JSON without `metadata.resourceVersion`; views stored in their storage form).

use serde_json::Value;
use skiff_meta::object::set_rv;
use skiff_store::KeyValue;

use crate::error::ApiError;
use crate::resource::Resource;

use crate::error::ApiResult;

pub fn key(res: &Resource, ns: Option<&str>, name: &str) -> String {
    match (res.namespaced, ns) {
        (true, Some(ns)) => format!(
            "/registry/{}/{}/{ns}/{name}",
            res.storage_group(),
            res.plural
        ),
        _ => format!("/registry/{}/{}/{name}", res.storage_group(), res.plural),
    }
}

/// The key prefix of all objects of `res` (in `ns` when given).
pub fn prefix(res: &Resource, ns: Option<&str>) -> String {
    match (res.namespaced, ns) {
        (true, Some(ns)) => format!("/registry/{}/{}/{ns}/", res.storage_group(), res.plural),
        _ => format!("/registry/{}/{}/", res.storage_group(), res.plural),
    }
}

/// Decodes a stored object and sets its resourceVersion.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!(
            "corrupt object at {}: {e}",
            skiff_store::DisplayKey(&kv.key)
        ))
    })?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

/// Decodes a stored object into the form `res` serves.
pub fn decode_as(res: &Resource, kv: &KeyValue) -> ApiResult<Value> {
    Ok(crate::convert::from_storage(res, decode(kv)?))
}

pub(crate) fn encode_as(res: &Resource, v: &Value) -> ApiResult<Vec<u8>> {
    if crate::convert::is_view(res) {
        encode(&crate::convert::to_storage(res, v))
    } else {
        encode(v)
    }
}

/// The stored form of an object: its JSON without `metadata.resourceVersion` (the
/// store's revision is the version), written without copying the object.
pub(crate) fn encode(v: &Value) -> ApiResult<Vec<u8>> {
    use serde::ser::{SerializeMap, Serializer};
    struct Without<'a>(&'a serde_json::Map<String, Value>, &'static str);
    impl serde::Serialize for Without<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            for (k, v) in self.0 {
                if k != self.1 {
                    m.serialize_entry(k, v)?;
                }
            }
            m.end()
        }
    }
    struct Stored<'a>(&'a serde_json::Map<String, Value>);
    impl serde::Serialize for Stored<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                match v {
                    Value::Object(meta) if k == "metadata" => {
                        m.serialize_entry(k, &Without(meta, "resourceVersion"))?
                    }
                    _ => m.serialize_entry(k, v)?,
                }
            }
            m.end()
        }
    }
    let out = match v {
        Value::Object(m) => serde_json::to_vec(&Stored(m)),
        other => serde_json::to_vec(other),
    };
    out.map_err(|e| ApiError::internal(e.to_string()))
}
