//! A minimal OpenAPI v3 surface: the `/openapi/v3` index and one document per
//! group-version listing each resource's paths with their `x-kubernetes-group-version-kind`
//! and the query parameters the server honours (`fieldValidation`, `dryRun`, ...).
//!
//! It carries no schemas yet (`components` is absent): kubectl then computes strategic
//! merge patches from its compiled-in types, and sees that the server validates fields
//! itself (`fieldValidation`), so it needs no client-side schema. `kubectl explain` needs
//! the schemas and does not work yet. OpenAPI v2 (`/openapi/v2`, protobuf as kubectl 1.27
//! and 1.28 ask for it, or JSON) carries the same paths and extensions, no definitions.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::resources::{self, Resource};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn op(r: &Resource, action: &str, params: &[&str]) -> Value {
    json!({
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": params.iter().map(|p| param(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}},
    })
}

/// The OpenAPI v3 document of one group-version, if served.
pub fn group_version_doc(group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in resources::in_group_version(group, version) {
        let base = format!("/{}", gv_path(group, version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
        paths.insert(
            collection.clone(),
            json!({
                "get": op(r, "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "watch", "allowWatchBookmarks", "timeoutSeconds", "sendInitialEvents"]),
                "post": op(r, "post", &write),
                "delete": op(r, "deletecollection", &["labelSelector", "fieldSelector", "dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": op(r, "get", &["pretty"]),
                "put": op(r, "put", &write),
                "patch": op(r, "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
                "delete": op(r, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::typed::kube_minor())},
        "paths": paths,
    }))
}

/// The `/openapi/v3` index: each group-version's document with a content hash.
pub fn index() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        if let Some(doc) = group_version_doc(g, v) {
            let hash = hex::encode(Sha256::digest(doc.to_string().as_bytes())).to_uppercase();
            let p = gv_path(g, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// Every served group-version, core first.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for (g, vs) in resources::groups() {
        for v in vs {
            gvs.push((g, v));
        }
    }
    gvs
}

/// The OpenAPI v2 document as JSON (paths only).
pub fn v2_json() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        if let Some(doc) = group_version_doc(g, v) {
            if let Some(p) = doc.get("paths").and_then(Value::as_object) {
                for (path, item) in p {
                    let mut item = item.clone();
                    if let Some(ops) = item.as_object_mut() {
                        for op in ops.values_mut() {
                            if let Some(params) =
                                op.get_mut("parameters").and_then(Value::as_array_mut)
                            {
                                for p in params.iter_mut() {
                                    *p = json!({"name": p["name"], "in": "query", "type": "string", "uniqueItems": true});
                                }
                            }
                        }
                    }
                    paths.insert(path.clone(), item);
                }
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::typed::kube_minor())},
        "paths": paths,
    })
}

/// Minimal protobuf writer for gnostic's `openapi_v2.Document`.
mod pb {
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
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
    pub fn bytes(num: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(num) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
    pub fn boolean(num: u32, v: bool, out: &mut Vec<u8>) {
        varint(u64::from(num) << 3, out);
        varint(u64::from(v), out);
    }
}

fn pb_named_any(name: &str, yaml: &str) -> Vec<u8> {
    let mut any = Vec::new();
    pb::bytes(2, yaml.as_bytes(), &mut any);
    let mut named = Vec::new();
    pb::bytes(1, name.as_bytes(), &mut named);
    pb::bytes(2, &any, &mut named);
    named
}

fn pb_operation(op: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let mut q = Vec::new();
        pb::bytes(2, b"query", &mut q);
        pb::bytes(4, name.as_bytes(), &mut q);
        pb::bytes(6, b"string", &mut q);
        pb::boolean(20, true, &mut q);
        let mut non_body = Vec::new();
        pb::bytes(3, &q, &mut non_body);
        let mut param = Vec::new();
        pb::bytes(2, &non_body, &mut param);
        let mut item = Vec::new();
        pb::bytes(1, &param, &mut item);
        pb::bytes(8, &item, &mut out);
    }
    let mut response = Vec::new();
    pb::bytes(1, b"OK", &mut response);
    let mut rv = Vec::new();
    pb::bytes(1, &response, &mut rv);
    let mut named = Vec::new();
    pb::bytes(1, b"200", &mut named);
    pb::bytes(2, &rv, &mut named);
    let mut responses = Vec::new();
    pb::bytes(1, &named, &mut responses);
    pb::bytes(9, &responses, &mut out);
    if let Some(a) = op.get("x-kubernetes-action").and_then(Value::as_str) {
        pb::bytes(
            13,
            &pb_named_any("x-kubernetes-action", &format!("{a}\n")),
            &mut out,
        );
    }
    if let Some(gvk) = op.get("x-kubernetes-group-version-kind") {
        let field = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let yaml = format!(
            "group: {}\nkind: {}\nversion: {}\n",
            json!(field("group")),
            json!(field("kind")),
            json!(field("version"))
        );
        pb::bytes(
            13,
            &pb_named_any("x-kubernetes-group-version-kind", &yaml),
            &mut out,
        );
    }
    out
}

/// The OpenAPI v2 document in gnostic's protobuf encoding (what kubectl asks for).
pub fn v2_protobuf() -> Vec<u8> {
    let doc = v2_json();
    let mut out = Vec::new();
    pb::bytes(1, b"2.0", &mut out);
    let mut info = Vec::new();
    pb::bytes(1, b"Kubernetes", &mut info);
    let version = doc
        .pointer("/info/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    pb::bytes(2, version.as_bytes(), &mut info);
    pb::bytes(2, &info, &mut out);
    let mut paths = Vec::new();
    for (path, item) in doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut pi = Vec::new();
        for (verb, num) in [
            ("get", 2),
            ("put", 3),
            ("post", 4),
            ("delete", 5),
            ("patch", 8),
        ] {
            if let Some(op) = item.get(verb) {
                pb::bytes(num, &pb_operation(op), &mut pi);
            }
        }
        let mut named = Vec::new();
        pb::bytes(1, path.as_bytes(), &mut named);
        pb::bytes(2, &pi, &mut named);
        pb::bytes(2, &named, &mut paths);
    }
    pb::bytes(8, &paths, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_advertise_field_validation() {
        let doc = group_version_doc("apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(index()["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
    }
}
