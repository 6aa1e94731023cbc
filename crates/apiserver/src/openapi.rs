//! A minimal OpenAPI v3 surface: the `/openapi/v3` index and one document per
//! group-version listing each resource's paths with their `x-kubernetes-group-version-kind`
//! and the query parameters the server honours (`fieldValidation`, `dryRun`, ...).
//!
//! It carries no schemas yet (`components` is absent): kubectl then computes strategic
//! merge patches from its compiled-in types, and sees that the server validates fields
//! itself (`fieldValidation`), so it needs no client-side schema. `kubectl explain` needs
//! the schemas and does not work yet. OpenAPI v2 (protobuf) is not served (404).

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
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for (g, vs) in resources::groups() {
        for v in vs {
            gvs.push((g, v));
        }
    }
    for (g, v) in gvs {
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
