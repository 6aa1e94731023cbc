//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! into JSON. kubectl 1.32+ sends its typed requests (`kubectl create secret`, `create
//! configmap`, `create deployment`, ...) only in protobuf, with no JSON fallback.
//!
//! The wire schema is a table generated from the upstream `generated.proto` files
//! (`proto_schema.txt`: `M <message>` then `F <number> <jsonName> <o|r|m> <type>` lines).
//! A field the table does not know is an error, never silently dropped. Responses are
//! always JSON (clients accept it).

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{json, Map, Value};

const SCHEMA: &str = include_str!("proto_schema.txt");
const MAGIC: &[u8] = b"k8s\x00";

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protobuf body: {0}")]
pub struct ProtoError(pub String);

struct Field {
    name: String,
    label: u8,
    ty: String,
}

type Schema = HashMap<String, HashMap<u32, Field>>;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let mut out: Schema = HashMap::new();
        let mut current = String::new();
        for line in SCHEMA.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["M", name] => {
                    current = name.to_string();
                    out.entry(current.clone()).or_default();
                }
                ["F", num, name, label, ty] => {
                    if let (Ok(num), Some(m)) = (num.parse::<u32>(), out.get_mut(&current)) {
                        m.insert(
                            num,
                            Field {
                                name: name.to_string(),
                                label: label.as_bytes().first().copied().unwrap_or(b'o'),
                                ty: ty.to_string(),
                            },
                        );
                    }
                }
                _ => {}
            }
        }
        out
    })
}

/// Go structs embedded with `json:",inline"`: their fields are flattened into the parent.
fn inline(field: &str) -> bool {
    matches!(
        field,
        "localObjectReference"
            | "ephemeralContainerCommon"
            | "persistentVolumeSource"
            | "volumeSource"
            | "ingressRuleValue"
            | "handler"
    )
}

/// Pointer fields where an explicit zero/false differs from absent (others are omitempty).
fn keeps_zero(field: &str) -> bool {
    matches!(
        field,
        "replicas"
            | "backoffLimit"
            | "parallelism"
            | "completions"
            | "terminationGracePeriodSeconds"
            | "revisionHistoryLimit"
            | "progressDeadlineSeconds"
            | "successfulJobsHistoryLimit"
            | "failedJobsHistoryLimit"
            | "startingDeadlineSeconds"
            | "activeDeadlineSeconds"
            | "ttlSecondsAfterFinished"
            | "priority"
            | "runAsUser"
            | "runAsGroup"
            | "fsGroup"
            | "runAsNonRoot"
            | "privileged"
            | "readOnlyRootFilesystem"
            | "allowPrivilegeEscalation"
            | "hostUsers"
            | "enableServiceLinks"
            | "automountServiceAccountToken"
            | "immutable"
            | "suspend"
            | "defaultMode"
            | "optional"
            | "allocateLoadBalancerNodePorts"
            | "partition"
            | "tolerationSeconds"
            | "expirationSeconds"
            | "value"
            | "intVal"
            | "allowed"
            | "denied"
    )
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .b
                .get(self.pos)
                .ok_or_else(|| ProtoError("truncated varint".into()))?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ProtoError("varint too long".into()))
    }
    fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| ProtoError("truncated field".into()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn fixed(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| ProtoError("truncated fixed field".into()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// One raw field value.
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
}

fn fields(b: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, ProtoError> {
    let mut r = Reader { b, pos: 0 };
    let mut out = Vec::new();
    while !r.done() {
        let tag = r.varint()?;
        let num = (tag >> 3) as u32;
        let raw = match tag & 7 {
            0 => Raw::Varint(r.varint()?),
            1 => Raw::Fixed64(
                r.fixed(8)?
                    .try_into()
                    .map_err(|_| ProtoError("fixed64".into()))?,
            ),
            2 => Raw::Bytes(r.bytes()?),
            5 => Raw::Fixed32(
                r.fixed(4)?
                    .try_into()
                    .map_err(|_| ProtoError("fixed32".into()))?,
            ),
            w => return Err(ProtoError(format!("unsupported wire type {w}"))),
        };
        out.push((num, raw));
    }
    Ok(out)
}

fn scalar(ty: &str, raw: &Raw<'_>) -> Result<Value, ProtoError> {
    Ok(match (ty, raw) {
        ("string", Raw::Bytes(b)) => json!(String::from_utf8_lossy(b)),
        ("bytes", Raw::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ("bool", Raw::Varint(v)) => json!(*v != 0),
        ("int32", Raw::Varint(v)) => json!(*v as i64 as i32),
        ("int64", Raw::Varint(v)) => json!(*v as i64),
        ("uint32" | "uint64", Raw::Varint(v)) => json!(*v),
        ("double", Raw::Fixed64(b)) => json!(f64::from_le_bytes(*b)),
        ("float", Raw::Fixed32(b)) => json!(f32::from_le_bytes(*b)),
        (ty, _) => return Err(ProtoError(format!("unexpected wire encoding for {ty}"))),
    })
}

fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "string" | "bytes" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "double" | "float"
    )
}

fn value(ty: &str, raw: &Raw<'_>) -> Result<Value, ProtoError> {
    if is_scalar(ty) {
        return scalar(ty, raw);
    }
    match raw {
        Raw::Bytes(b) => message(ty, b),
        _ => Err(ProtoError(format!("expected a message for {ty}"))),
    }
}

fn message(name: &str, b: &[u8]) -> Result<Value, ProtoError> {
    const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";
    match name.strip_prefix(META) {
        Some("Time") | Some("MicroTime") => {
            let (mut secs, mut nanos) = (0i64, 0i64);
            for (num, raw) in fields(b)? {
                if let Raw::Varint(v) = raw {
                    match num {
                        1 => secs = v as i64,
                        2 => nanos = v as i64,
                        _ => {}
                    }
                }
            }
            if secs == 0 && nanos == 0 {
                return Ok(Value::Null);
            }
            let t = chrono::DateTime::from_timestamp(secs, nanos as u32)
                .ok_or_else(|| ProtoError("bad time".into()))?;
            return Ok(json!(if name.ends_with("MicroTime") {
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            }));
        }
        Some("Duration") => {
            for (num, raw) in fields(b)? {
                if let (1, Raw::Varint(v)) = (num, raw) {
                    return Ok(json!(format!("{}s", v as i64 / 1_000_000_000)));
                }
            }
            return Ok(json!("0s"));
        }
        Some("FieldsV1") => return raw_json(b),
        _ => {}
    }
    match name {
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            for (num, raw) in fields(b)? {
                if let (1, Raw::Bytes(s)) = (num, raw) {
                    return Ok(json!(String::from_utf8_lossy(s)));
                }
            }
            return Ok(json!("0"));
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            let (mut ty, mut int, mut s) = (0u64, 0i64, String::new());
            for (num, raw) in fields(b)? {
                match (num, raw) {
                    (1, Raw::Varint(v)) => ty = v,
                    (2, Raw::Varint(v)) => int = v as i64 as i32 as i64,
                    (3, Raw::Bytes(v)) => s = String::from_utf8_lossy(v).into_owned(),
                    _ => {}
                }
            }
            return Ok(if ty == 1 { json!(s) } else { json!(int) });
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => return raw_json(b),
        // `ExtraValue` is a list of strings on the wire and in JSON.
        n if n.ends_with(".ExtraValue") => {
            let mut items = Vec::new();
            for (num, raw) in fields(b)? {
                if let (1, Raw::Bytes(s)) = (num, raw) {
                    items.push(json!(String::from_utf8_lossy(s)));
                }
            }
            return Ok(Value::Array(items));
        }
        _ => {}
    }
    let schema = schema()
        .get(name)
        .ok_or_else(|| ProtoError(format!("message {name} is not known")))?;
    let mut obj = Map::new();
    for (num, raw) in fields(b)? {
        let f = schema.get(&num).ok_or_else(|| {
            ProtoError(format!(
                "field {num} of {name} is not known to this server; send JSON instead"
            ))
        })?;
        if let Some(map_ty) = f.ty.strip_prefix("map:") {
            let (kt, vt) = map_ty
                .split_once(':')
                .ok_or_else(|| ProtoError("bad map type".into()))?;
            let Raw::Bytes(entry) = raw else {
                return Err(ProtoError("bad map entry".into()));
            };
            let (mut k, mut v) = (Value::Null, Value::Null);
            for (n, r) in fields(entry)? {
                match n {
                    1 => k = value(kt, &r)?,
                    2 => v = value(vt, &r)?,
                    _ => {}
                }
            }
            if v.is_null() {
                v = if vt == "string" || vt == "bytes" {
                    json!("")
                } else {
                    json!({})
                };
            }
            let key = match k {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if let Value::Object(m) = obj.entry(f.name.clone()).or_insert_with(|| json!({})) {
                m.insert(key, v);
            }
            continue;
        }
        if f.label == b'r' {
            // Packed repeated scalars (not produced by Kubernetes, but valid protobuf).
            if let (true, Raw::Bytes(packed)) = (
                is_scalar(&f.ty) && f.ty != "string" && f.ty != "bytes",
                &raw,
            ) {
                let mut r = Reader { b: packed, pos: 0 };
                while !r.done() {
                    let v = scalar(&f.ty, &Raw::Varint(r.varint()?))?;
                    push(&mut obj, &f.name, v);
                }
                continue;
            }
            let v = value(&f.ty, &raw)?;
            push(&mut obj, &f.name, v);
            continue;
        }
        let v = value(&f.ty, &raw)?;
        if inline(&f.name) {
            if let Value::Object(m) = v {
                obj.extend(m);
            }
            continue;
        }
        let empty = match &v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b && !keeps_zero(&f.name),
            Value::Number(n) => n.as_f64() == Some(0.0) && !keeps_zero(&f.name),
            _ => false,
        };
        if !empty {
            obj.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(obj))
}

fn push(obj: &mut Map<String, Value>, name: &str, v: Value) {
    if let Value::Array(a) = obj.entry(name.to_string()).or_insert_with(|| json!([])) {
        a.push(v);
    }
}

fn raw_json(b: &[u8]) -> Result<Value, ProtoError> {
    for (num, raw) in fields(b)? {
        if let (1, Raw::Bytes(s)) = (num, raw) {
            return serde_json::from_slice(s)
                .map_err(|e| ProtoError(format!("embedded JSON: {e}")));
        }
    }
    Ok(json!({}))
}

/// The protobuf package of an API group-version.
fn package(api_version: &str) -> Option<String> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let short = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    Some(format!("k8s.io.api.{short}.{version}"))
}

/// Decodes a `k8s\0`-prefixed protobuf object into JSON (with apiVersion and kind).
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ProtoError("missing the k8s protobuf prefix".into()))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (num, r) in fields(rest)? {
        match (num, r) {
            (1, Raw::Bytes(tm)) => {
                for (n, r2) in fields(tm)? {
                    if let Raw::Bytes(s) = r2 {
                        match n {
                            1 => api_version = String::from_utf8_lossy(s).into_owned(),
                            2 => kind = String::from_utf8_lossy(s).into_owned(),
                            _ => {}
                        }
                    }
                }
            }
            (2, Raw::Bytes(r)) => raw = r,
            (3, Raw::Bytes(enc)) if !enc.is_empty() => {
                return Err(ProtoError(format!(
                    "content encoding {:?} is not supported",
                    String::from_utf8_lossy(enc)
                )))
            }
            _ => {}
        }
    }
    if kind.is_empty() {
        return Err(ProtoError("no kind in the protobuf envelope".into()));
    }
    let pkg = package(&api_version)
        .ok_or_else(|| ProtoError(format!("unknown apiVersion {api_version}")))?;
    let mut obj = message(&format!("{pkg}.{kind}"), raw)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn field_bytes(num: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(num) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
    fn field_varint(num: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(num) << 3, out);
        varint(v, out);
    }

    #[test]
    fn decodes_a_secret() {
        let mut meta = Vec::new();
        field_bytes(1, b"s1", &mut meta);
        field_bytes(3, b"", &mut meta);
        field_bytes(8, b"", &mut meta); // zero creationTimestamp
        let mut entry = Vec::new();
        field_bytes(1, b"user", &mut entry);
        field_bytes(2, b"admin", &mut entry);
        let mut secret = Vec::new();
        field_bytes(1, &meta, &mut secret);
        field_bytes(2, &entry, &mut secret);
        field_bytes(3, b"Opaque", &mut secret);
        field_varint(5, 0, &mut secret);
        let mut tm = Vec::new();
        field_bytes(1, b"v1", &mut tm);
        field_bytes(2, b"Secret", &mut tm);
        let mut unknown = Vec::new();
        field_bytes(1, &tm, &mut unknown);
        field_bytes(2, &secret, &mut unknown);
        let mut body = MAGIC.to_vec();
        body.extend(unknown);
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"user": "YWRtaW4="}, "type": "Opaque", "immutable": false})
        );
    }

    #[test]
    fn rejects_unknown_fields_and_garbage() {
        let mut secret = Vec::new();
        field_varint(99, 1, &mut secret);
        assert!(message("k8s.io.api.core.v1.Secret", &secret).is_err());
        assert!(decode(b"k8s\x00\xff\xff").is_err());
        assert!(decode(b"{}").is_err());
        assert!(schema().contains_key("k8s.io.api.apps.v1.Deployment"));
    }
}
