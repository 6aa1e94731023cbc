//! The OpenAPI surface: the `/openapi/v3` index and one v3 document per group-version, and
//! the v2 document (`/openapi/v2`, protobuf as kubectl 1.27 and 1.28 ask for it, or JSON).
//! They list each resource's paths with their `x-kubernetes-group-version-kind` and the
//! query parameters the server honours (`fieldValidation`, `dryRun`, ...), and the schemas
//! of the served kinds (`components.schemas` / `definitions`, what `kubectl explain` reads),
//! generated from k8s-openapi's schema definitions with the Kubernetes extensions:
//! `x-kubernetes-group-version-kind` on the kinds, and `x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type` and
//! `x-kubernetes-list-map-keys` from the patch engine's table ([`crate::patch::LIST_RULES`]),
//! so kubectl's client-side strategic merge patches match the server's.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::resource::Resource;
use crate::resources;

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
    let defs = definitions(true);
    let roots = resources::in_group_version(group, version)
        .filter_map(|r| kind_definition(r, defs))
        .collect::<Vec<_>>();
    let schemas: Map<String, Value> = reachable(defs, &roots)
        .into_iter()
        .filter_map(|n| defs.get(&n).map(|d| (n, d.clone())))
        .collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::typed::kube_minor())},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The name of the definition of `res`'s kind (the one carrying its group-version-kind).
fn kind_definition(res: &Resource, defs: &Map<String, Value>) -> Option<String> {
    defs.iter()
        .find(|(_, d)| {
            d.get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .is_some_and(|gvks| {
                    gvks.iter().any(|g| {
                        g["group"] == res.group
                            && g["version"] == res.version
                            && g["kind"] == res.kind
                    })
                })
        })
        .map(|(n, _)| n.clone())
}

/// The names of the definitions `roots` reference, transitively, with the roots.
fn reachable(defs: &Map<String, Value>, roots: &[String]) -> BTreeSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    match (k.as_str(), c) {
                        ("$ref", Value::String(r)) => {
                            out.push(r.rsplit('/').next().unwrap_or_default().to_string())
                        }
                        _ => refs(c, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(d) = defs.get(&n) {
            refs(d, &mut todo);
        }
    }
    seen
}

/// The definitions of the served kinds and of everything they reference, in the OpenAPI v3
/// style (`allOf` references to `#/components/schemas/…`) or the v2 one (`$ref` to
/// `#/definitions/…`). Built once.
pub fn definitions(v3: bool) -> &'static Map<String, Value> {
    static V2: OnceLock<Map<String, Value>> = OnceLock::new();
    static V3: OnceLock<Map<String, Value>> = OnceLock::new();
    if v3 {
        V3.get_or_init(|| build_definitions(true))
    } else {
        V2.get_or_init(|| build_definitions(false))
    }
}

fn build_definitions(v3: bool) -> Map<String, Value> {
    use k8s_openapi::schemars::generate::SchemaSettings;
    let settings = if v3 {
        SchemaSettings::openapi3()
    } else {
        let mut s = SchemaSettings::draft07();
        s.definitions_path = "/definitions".into();
        s.meta_schema = None;
        s.transforms.clear();
        s
    };
    let mut gen = settings.into_generator();
    let mut kinds: Vec<(String, &Resource)> = Vec::new();
    for r in resources::RESOURCES {
        let Some(typed) = crate::kinds::of(r).typed() else {
            continue;
        };
        let schema = typed.schema(&mut gen);
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
        {
            kinds.push((name.to_string(), r));
        }
    }
    let mut defs = gen.take_definitions(true);
    for (name, r) in kinds {
        if let Some(Value::Object(d)) = defs.get_mut(&name) {
            let gvks = d
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            if let Value::Array(list) = gvks {
                list.push(json!({"group": r.group, "kind": r.kind, "version": r.version}));
            }
        }
    }
    let names: Vec<String> = defs.keys().cloned().collect();
    for name in names {
        let Some(props) = defs
            .get(&name)
            .and_then(|d| d.get("properties"))
            .and_then(Value::as_object)
            .cloned()
        else {
            continue;
        };
        let mut annotated = props.clone();
        for (field, schema) in annotated.iter_mut() {
            annotate(field, schema, &defs);
        }
        if annotated != props {
            defs[&name]["properties"] = Value::Object(annotated);
        }
    }
    defs
}

/// The definition a property schema refers to (`$ref`, or `allOf: [{$ref}]`).
fn referenced<'a>(schema: &Value, defs: &'a Map<String, Value>) -> Option<&'a Value> {
    let r = schema
        .get("$ref")
        .or_else(|| schema.pointer("/allOf/0/$ref"))
        .and_then(Value::as_str)?;
    defs.get(r.rsplit('/').next()?)
}

/// Adds the patch and list extensions the patch engine's table gives property `field`.
fn annotate(field: &str, schema: &mut Value, defs: &Map<String, Value>) {
    use crate::patch::{list_rule, merges_primitives, retains_keys};
    let Some(m) = schema.as_object_mut() else {
        return;
    };
    let is_array = m.get("type").and_then(Value::as_str) == Some("array");
    let item_props: Vec<String> = m
        .get("items")
        .and_then(|i| referenced(i, defs))
        .and_then(|d| d.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let item_type = m
        .get("items")
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut strategy = Vec::new();
    if is_array && merges_primitives(field) && item_type == "string" {
        strategy.push("merge");
        m.entry("x-kubernetes-list-type").or_insert(json!("set"));
    } else if is_array {
        let has = |k: &str| item_props.iter().any(|p| p == k);
        if let Some(rule) = list_rule(field, has).filter(|r| has(r.merge_key)) {
            strategy.push("merge");
            m.insert("x-kubernetes-patch-merge-key".into(), json!(rule.merge_key));
            if !m.contains_key("x-kubernetes-list-type") {
                let keys: Vec<&str> = rule.keys().iter().map(|(k, _)| *k).collect();
                m.insert("x-kubernetes-list-type".into(), json!("map"));
                m.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
        }
    }
    let is_struct = m.contains_key("allOf") || m.contains_key("$ref");
    if retains_keys(field) && (!strategy.is_empty() || is_struct) {
        strategy.push("retainKeys");
    }
    if !strategy.is_empty() {
        m.insert(
            "x-kubernetes-patch-strategy".into(),
            json!(strategy.join(",")),
        );
    }
}

/// The served documents, serialized once: (each group-version's v3 document by its path,
/// the v3 index, the v2 document as JSON and as protobuf).
struct Served {
    docs: std::collections::BTreeMap<String, Vec<u8>>,
    index: Vec<u8>,
    v2_json: Vec<u8>,
    v2_protobuf: Vec<u8>,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let mut docs = std::collections::BTreeMap::new();
        for (g, v) in group_versions() {
            if let Some(doc) = group_version_doc(g, v) {
                docs.insert(gv_path(g, v), serde_json::to_vec(&doc).unwrap_or_default());
            }
        }
        let mut paths = Map::new();
        for (p, doc) in &docs {
            let hash = hex::encode(Sha256::digest(doc)).to_uppercase();
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
        Served {
            index: serde_json::to_vec(&json!({"paths": paths})).unwrap_or_default(),
            docs,
            v2_json: serde_json::to_vec(&v2_json()).unwrap_or_default(),
            v2_protobuf: v2_protobuf(),
        }
    })
}

/// The `/openapi/v3` index (JSON): each group-version's document with a content hash.
pub fn index_bytes() -> &'static [u8] {
    &served().index
}

/// The v3 document (JSON) of a group-version, if served.
pub fn group_version_bytes(group: &str, version: &str) -> Option<&'static [u8]> {
    served()
        .docs
        .get(&gv_path(group, version))
        .map(Vec::as_slice)
}

/// The v2 document, as protobuf or JSON.
pub fn v2_bytes(protobuf: bool) -> &'static [u8] {
    if protobuf {
        &served().v2_protobuf
    } else {
        &served().v2_json
    }
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
        "definitions": definitions(false),
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

/// A JSON value as gnostic's `Any` (its YAML text; JSON is YAML).
fn pb_any(v: &Value) -> Vec<u8> {
    let mut any = Vec::new();
    pb::bytes(2, format!("{v}\n").as_bytes(), &mut any);
    any
}

/// A list of named schemas (`Properties`, `Definitions`).
fn pb_named_schemas(m: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, schema) in m {
        let mut named = Vec::new();
        pb::bytes(1, name.as_bytes(), &mut named);
        pb::bytes(2, &pb_schema(schema), &mut named);
        pb::bytes(1, &named, &mut out);
    }
    out
}

/// A schema as gnostic's `openapi_v2.Schema`.
fn pb_schema(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(m) = v.as_object() else {
        return out;
    };
    for (field, num) in [("$ref", 1), ("format", 2), ("title", 3), ("description", 4)] {
        if let Some(s) = m.get(field).and_then(Value::as_str) {
            pb::bytes(num, s.as_bytes(), &mut out);
        }
    }
    if let Some(d) = m.get("default") {
        pb::bytes(5, &pb_any(d), &mut out);
    }
    for r in m
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        pb::bytes(19, r.as_str().unwrap_or_default().as_bytes(), &mut out);
    }
    for e in m
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        pb::bytes(20, &pb_any(e), &mut out);
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Vec::new();
            pb::boolean(2, *b, &mut item);
            pb::bytes(21, &item, &mut out);
        }
        Some(schema @ Value::Object(_)) => {
            let mut item = Vec::new();
            pb::bytes(1, &pb_schema(schema), &mut item);
            pb::bytes(21, &item, &mut out);
        }
        _ => {}
    }
    let types: Vec<&str> = match m.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let mut item = Vec::new();
        for t in types {
            pb::bytes(1, t.as_bytes(), &mut item);
        }
        pb::bytes(22, &item, &mut out);
    }
    let items: Vec<&Value> = match m.get("items") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
        None => vec![],
    };
    if !items.is_empty() {
        let mut item = Vec::new();
        for i in items {
            pb::bytes(1, &pb_schema(i), &mut item);
        }
        pb::bytes(23, &item, &mut out);
    }
    for a in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        pb::bytes(24, &pb_schema(a), &mut out);
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        pb::bytes(25, &pb_named_schemas(props), &mut out);
    }
    for (k, ext) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Vec::new();
        pb::bytes(1, k.as_bytes(), &mut named);
        pb::bytes(2, &pb_any(ext), &mut named);
        pb::bytes(31, &named, &mut out);
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
    pb::bytes(9, &pb_named_schemas(definitions(false)), &mut out);
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
        let index: Value = serde_json::from_slice(index_bytes()).unwrap();
        assert!(index["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
    }

    #[test]
    fn schemas_carry_kinds_and_patch_extensions() {
        let doc = group_version_doc("", "v1").unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let spec = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"];
        let containers = &spec["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(
            spec["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let svc_ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(svc_ports["x-kubernetes-patch-merge-key"], "port");
        let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        // Lists without a merge key are replaced; references are v3-style.
        assert!(
            schemas["io.k8s.api.core.v1.Container"]["properties"]["args"]
                .get("x-kubernetes-patch-strategy")
                .is_none()
        );
        assert!(spec["securityContext"]["allOf"][0]["$ref"]
            .as_str()
            .unwrap()
            .starts_with("#/components/schemas/"));
        // Only what this group-version's kinds reach.
        assert!(schemas.get("io.k8s.api.apps.v1.Deployment").is_none());
        let apps = group_version_doc("apps", "v1").unwrap();
        let strategy = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
            ["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        // v2: `$ref` to definitions.
        let v2 = definitions(false);
        assert!(
            v2["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["items"]["$ref"]
                .as_str()
                .unwrap()
                .starts_with("#/definitions/")
        );
    }
}
