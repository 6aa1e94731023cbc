//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>`, and the legacy
//! `APIResourceList` of each group-version, as kubectl reads them.

use serde_json::{json, Value};

use crate::resource::Resource;
use crate::resources;

/// The `/version` document.
pub fn version() -> Value {
    let minor = crate::typed::kube_minor();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "major": "1",
        "minor": minor.to_string(),
        "emulationMajor": "1",
        "emulationMinor": minor.to_string(),
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": (minor - 1).to_string(),
        "gitVersion": format!("v1.{minor}.0"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": format!("linux/{arch}"),
    })
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, if served.
pub fn api_group(group: &str) -> Option<Value> {
    let (name, versions) = resources::groups().into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_doc(name, &versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn verbs(r: &Resource) -> Vec<&'static str> {
    r.verbs()
        .iter()
        .copied()
        .filter(|v| !(r.kind == "Namespace" && *v == "deletecollection"))
        .collect()
}

/// The legacy `APIResourceList` of one group-version, if served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources::in_group_version(group, version) {
        let mut main = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            main["categories"] = json!(r.categories);
        }
        list.push(main);
        if r.kind == "Pod" {
            list.push(json!({"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]}));
            list.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]}));
            list.push(json!({"name": "pods/ephemeralcontainers", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get", "patch", "update"]}));
            list.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
            list.push(json!({"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]}));
            list.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
            list.push(json!({"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}));
        }
        if r.kind == "Namespace" {
            list.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
        }
        if r.scale {
            list.push(json!({
                "name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
            }));
        }
        if r.status {
            list.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

/// The content type of aggregated discovery (`/api`, `/apis` with the matching Accept).
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList): the core group
/// for `/api` (`core`), every other group for `/apis`.
pub fn aggregated(core: bool) -> Value {
    let groups: Vec<(&str, Vec<&str>)> = if core {
        vec![("", vec!["v1"])]
    } else {
        resources::groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = resources::in_group_version(g, v)
                        .map(|r| {
                            let mut subs = Vec::new();
                            if r.status {
                                subs.push(json!({"subresource": "status", "responseKind": gvk(r.group, r.version, r.kind), "verbs": ["get", "patch", "update"]}));
                            }
                            if r.scale {
                                subs.push(json!({"subresource": "scale", "responseKind": gvk("autoscaling", "v1", "Scale"), "verbs": ["get", "patch", "update"]}));
                            }
                            if r.kind == "Pod" {
                                subs.push(json!({"subresource": "attach", "responseKind": gvk("", "v1", "PodAttachOptions"), "verbs": ["create", "get"]}));
                                subs.push(json!({"subresource": "binding", "responseKind": gvk("", "v1", "Binding"), "verbs": ["create"]}));
                                subs.push(json!({"subresource": "ephemeralcontainers", "responseKind": gvk("", "v1", "Pod"), "verbs": ["get", "patch", "update"]}));
                                subs.push(json!({"subresource": "eviction", "responseKind": gvk("policy", "v1", "Eviction"), "verbs": ["create"]}));
                                subs.push(json!({"subresource": "exec", "responseKind": gvk("", "v1", "PodExecOptions"), "verbs": ["create", "get"]}));
                                subs.push(json!({"subresource": "log", "responseKind": gvk("", "v1", "Pod"), "verbs": ["get"]}));
                                subs.push(json!({"subresource": "portforward", "responseKind": gvk("", "v1", "PodPortForwardOptions"), "verbs": ["create", "get"]}));
                            }
                            if r.kind == "Namespace" {
                                subs.push(json!({"subresource": "finalize", "responseKind": gvk("", "v1", "Namespace"), "verbs": ["update"]}));
                            }
                            let mut doc = json!({
                                "resource": r.plural,
                                "responseKind": gvk(r.group, r.version, r.kind),
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular,
                                "verbs": verbs(r),
                            });
                            if !r.short_names.is_empty() {
                                doc["shortNames"] = json!(r.short_names);
                            }
                            if !r.categories.is_empty() {
                                doc["categories"] = json!(r.categories);
                            }
                            if !subs.is_empty() {
                                doc["subresources"] = Value::Array(subs);
                            }
                            doc
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resources_have_short_names() {
        let list = api_resource_list("", "v1").unwrap();
        let pods = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(api_resource_list("apps", "v1").unwrap()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments/scale"));
        assert!(api_resource_list("nope", "v1").is_none());
        let agg = aggregated(false);
        let apps = agg["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert!(deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "scale" && s["responseKind"]["kind"] == "Scale"));
        assert_eq!(aggregated(true)["items"][0]["metadata"]["name"], "");
        assert_eq!(
            version()["gitVersion"],
            format!("v1.{}.0", crate::typed::kube_minor())
        );
    }
}
