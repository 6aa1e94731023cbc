//! The Node authorizer and NodeRestriction admission: a kubelet (`system:node:<name>` in
//! `system:nodes`) may read what it needs cluster-wide (pods, nodes, services), but may
//! modify only its own Node and Lease and the status of pods bound to it, and may read
//! only the secrets, config maps, claims and service accounts those pods use.

use serde_json::Value;

use crate::error::ApiError;
use crate::rbac::{rule_allows, Attributes, Decision};
use crate::registry::{ListOptions, Registry};
use crate::resource::Resource;
use crate::resources::lookup;
use crate::user::User;
use skiff_meta::selector::FieldSelector;

use crate::error::ApiResult;

pub const NODES_GROUP: &str = "system:nodes";

/// The node a user acts for, if it is a kubelet.
pub fn node_of(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    (!name.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

fn no_relationship(node: &str) -> Decision {
    Decision::deny(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

/// The Node authorizer's decision (no opinion for users that are not nodes).
pub async fn authorize(reg: &Registry, user: &User, a: &Attributes) -> ApiResult<Decision> {
    let Some(node) = node_of(user) else {
        return Ok(Decision::no_opinion());
    };
    if !crate::rbac::node_rules().iter().any(|r| rule_allows(r, a)) {
        return Ok(Decision::no_opinion());
    }
    let allow = || Decision::allow("");
    let write = !matches!(a.verb.as_str(), "get" | "list" | "watch");
    Ok(match (a.group.as_str(), a.resource.as_str()) {
        ("", "nodes") if write => {
            if a.name.is_empty() || a.name == node {
                allow()
            } else {
                Decision::deny(format!("node '{node}' cannot modify node '{}'", a.name))
            }
        }
        ("coordination.k8s.io", "leases") => {
            if a.namespace == "kube-node-lease" && (a.name.is_empty() || a.name == node) {
                allow()
            } else {
                no_relationship(node)
            }
        }
        // NodeRestriction: a kubelet deletes (finishes the graceful deletion of) only the
        // pods bound to it.
        ("", "pods")
            if a.subresource == "status" || (a.verb == "delete" && a.subresource.is_empty()) =>
        {
            if pod_node(reg, &a.namespace, &a.name).await?.as_deref() == Some(node) {
                allow()
            } else {
                no_relationship(node)
            }
        }
        ("", "pods") if write => no_relationship(node),
        ("", "secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts") => {
            let kind = match a.resource.as_str() {
                "secrets" => Ref::Secret,
                "configmaps" => Ref::ConfigMap,
                "persistentvolumeclaims" => Ref::Claim,
                _ => Ref::ServiceAccount,
            };
            if referenced(reg, node, &a.namespace, kind, &a.name).await? {
                allow()
            } else {
                no_relationship(node)
            }
        }
        ("", "persistentvolumes") => no_relationship(node),
        _ => allow(),
    })
}

/// NodeRestriction on create: a kubelet creates only its own Node and Lease.
pub fn admit_create(user: &User, res: &Resource, obj: &Value) -> ApiResult<()> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if matches!(res.kind, "Node" | "Lease") && name != node {
        return Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: node \"{node}\" is not allowed to modify {} \"{name}\"",
            if res.group.is_empty() {
                res.plural.to_string()
            } else {
                format!("{}.{}", res.plural, res.group)
            },
            res.singular
        )));
    }
    Ok(())
}

/// NodeRestriction on TokenRequests: a kubelet asks only for tokens bound to pods on
/// its node.
pub async fn admit_token_request(
    reg: &Registry,
    user: &User,
    ns: &str,
    account: &str,
    body: &Value,
) -> ApiResult<()> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let refused = |why: &str| {
        Err(ApiError::forbidden(format!(
            "serviceaccounts \"{account}\" is forbidden: {why}"
        )))
    };
    let bound = body.pointer("/spec/boundObjectRef");
    if bound.and_then(|b| b.get("kind")).and_then(Value::as_str) != Some("Pod") {
        return refused("node requested token not bound to a pod");
    }
    let pod = bound
        .and_then(|b| b.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if pod_node(reg, ns, pod).await?.as_deref() != Some(node) {
        return refused("node requested token bound to a pod scheduled on a different node");
    }
    Ok(())
}

async fn pod_node(reg: &Registry, ns: &str, name: &str) -> ApiResult<Option<String>> {
    let Some(res) = lookup("", "v1", "pods") else {
        return Ok(None);
    };
    match reg.get(res, Some(ns), name).await {
        Ok(p) => Ok(p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(String::from)),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ref {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// Whether a pod bound to `node` in `ns` uses the object `name` of kind `kind`.
async fn referenced(
    reg: &Registry,
    node: &str,
    ns: &str,
    kind: Ref,
    name: &str,
) -> ApiResult<bool> {
    let Some(res) = lookup("", "v1", "pods") else {
        return Ok(false);
    };
    if name.is_empty() {
        return Ok(false);
    }
    let fields = FieldSelector::parse(&format!("spec.nodeName={node}"))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let pods = reg
        .list(
            res,
            Some(ns),
            &ListOptions {
                fields,
                ..ListOptions::any()
            },
        )
        .await?
        .items;
    Ok(pods
        .iter()
        .any(|p| pod_refs(p, kind).iter().any(|n| n == name)))
}

/// The names of objects of `kind` a pod uses.
fn pod_refs(pod: &Value, kind: Ref) -> Vec<String> {
    let mut out = Vec::new();
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let mut push = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            out.push(s.to_string());
        }
    };
    if kind == Ref::ServiceAccount {
        push(spec.get("serviceAccountName"));
        return out;
    }
    let volumes = spec
        .get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in &volumes {
        match kind {
            Ref::Secret => push(v.pointer("/secret/secretName")),
            Ref::ConfigMap => push(v.pointer("/configMap/name")),
            Ref::Claim => push(v.pointer("/persistentVolumeClaim/claimName")),
            Ref::ServiceAccount => {}
        }
        for src in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match kind {
                Ref::Secret => push(src.pointer("/secret/name")),
                Ref::ConfigMap => push(src.pointer("/configMap/name")),
                _ => {}
            }
        }
    }
    if kind == Ref::Secret {
        for s in spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push(s.get("name"));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                match kind {
                    Ref::Secret => push(e.pointer("/valueFrom/secretKeyRef/name")),
                    Ref::ConfigMap => push(e.pointer("/valueFrom/configMapKeyRef/name")),
                    _ => {}
                }
            }
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match kind {
                    Ref::Secret => push(e.pointer("/secretRef/name")),
                    Ref::ConfigMap => push(e.pointer("/configMapRef/name")),
                    _ => {}
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_references() {
        let pod = json!({"spec": {
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "a", "secret": {"secretName": "s1"}}, {"name": "b", "configMap": {"name": "c1"}},
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "c2"}}]}]}});
        assert_eq!(pod_refs(&pod, Ref::Secret), vec!["s1", "pull", "s2"]);
        assert_eq!(
            pod_refs(&pod, Ref::ConfigMap),
            vec!["c1", "kube-root-ca.crt", "c2"]
        );
        assert_eq!(pod_refs(&pod, Ref::Claim), vec!["data"]);
        assert_eq!(pod_refs(&pod, Ref::ServiceAccount), vec!["sa"]);
    }

    #[test]
    fn only_nodes_are_nodes() {
        let u = |name: &str, groups: &[&str]| User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(node_of(&u("system:node:a", &[NODES_GROUP])), Some("a"));
        assert_eq!(node_of(&u("system:node:a", &[])), None);
        assert_eq!(node_of(&u("alice", &[NODES_GROUP])), None);
    }
}
