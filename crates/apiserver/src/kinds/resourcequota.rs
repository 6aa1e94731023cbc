//! ResourceQuotas: canonical quantities, the names, quantities, scopes and scope
//! selector of a quota, scopes fixed once set.

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{
    go_list, go_rendered_list, invalid_raw, is_quota_hugepages, required_because,
    validate_resource_name,
};

pub(crate) struct ResourceQuota;

impl Strategy for ResourceQuota {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::ResourceQuota>())
    }

    fn defaults(&self, obj: &mut Value) {
        crate::defaults::canonical_quantities(obj, &["/spec/hard", "/status/hard", "/status/used"])
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_resource_quota(obj, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        let scopes = |o: &Value| -> std::collections::BTreeSet<String> {
            o.pointer("/spec/scopes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        };
        if scopes(old) != scopes(new) {
            let list: Vec<String> = new
                .pointer("/spec/scopes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            let value = go_rendered_list("core.ResourceQuotaScope", &list);
            causes.push(invalid_raw("spec.scopes", &value, "field is immutable"));
        }
    }
}

fn validate_resource_quota(obj: &Value, causes: &mut Vec<Cause>) {
    let hard: Vec<String> = obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for (k, v) in obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let path = format!("spec.hard[{k}]");
        validate_quota_resource_name(k, &path, causes);
        validate_quantity_value(k, v, &path, causes);
    }
    let conflicting = |set: &std::collections::BTreeSet<String>| {
        (set.contains("BestEffort") && set.contains("NotBestEffort"))
            || (set.contains("Terminating") && set.contains("NotTerminating"))
    };
    let scopes: Vec<String> = obj
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    if !scopes.is_empty() {
        let value = go_list("core.ResourceQuotaScope", &scopes);
        let mut set = std::collections::BTreeSet::new();
        for scope in &scopes {
            if !QUOTA_SCOPES.contains(&scope.as_str()) {
                causes.push(invalid_raw("spec.scopes", &value, "unsupported scope"));
            }
            for k in &hard {
                if standard_quota_name(k) && !scope_valid_for(scope, k) {
                    causes.push(invalid_raw(
                        "spec.scopes",
                        &value,
                        "unsupported scope applied to resource",
                    ));
                }
            }
            set.insert(scope.clone());
        }
        if conflicting(&set) {
            causes.push(invalid_raw("spec.scopes", &value, "conflicting scopes"));
        }
    }
    let Some(selector) = obj.pointer("/spec/scopeSelector").filter(|s| !s.is_null()) else {
        return;
    };
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let path = "spec.scopeSelector.matchExpressions";
    let mut set = std::collections::BTreeSet::new();
    let go_selector = || {
        let reqs: Vec<String> = exprs
            .iter()
            .map(|e| {
                let s = |k: &str| {
                    serde_json::json!(e.get(k).and_then(Value::as_str).unwrap_or("")).to_string()
                };
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
                format!(
                    "core.ScopedResourceSelectorRequirement{{ScopeName:{}, Operator:{}, Values:{}}}",
                    s("scopeName"),
                    s("operator"),
                    go_list("string", &values)
                )
            })
            .collect();
        format!(
            "core.ScopeSelector{{MatchExpressions:[]core.ScopedResourceSelectorRequirement{{{}}}}}",
            reqs.join(", ")
        )
    };
    for e in &exprs {
        let scope = e.get("scopeName").and_then(Value::as_str).unwrap_or("");
        let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !QUOTA_SCOPES.contains(&scope) {
            causes.push(Cause::invalid(
                format!("{path}.scopeName"),
                scope,
                "unsupported scope",
            ));
        }
        for k in &hard {
            if standard_quota_name(k) && !scope_valid_for(scope, k) {
                causes.push(invalid_raw(
                    path,
                    &go_selector(),
                    "unsupported scope applied to resource",
                ));
            }
        }
        if matches!(
            scope,
            "BestEffort"
                | "NotBestEffort"
                | "Terminating"
                | "NotTerminating"
                | "CrossNamespacePodAffinity"
        ) && op != "Exists"
        {
            causes.push(Cause::invalid(format!("{path}.operator"), op, "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"));
        }
        match op {
            "In" | "NotIn" if values.is_empty() => causes.push(required_because(
                format!("{path}.values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                let v: Vec<String> = values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
                causes.push(invalid_raw(
                    format!("{path}.values"),
                    &go_list("string", &v),
                    "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => causes.push(Cause::invalid(
                format!("{path}.operator"),
                op,
                "not a valid selector operator",
            )),
        }
        set.insert(scope.to_string());
    }
    if conflicting(&set) {
        causes.push(invalid_raw(
            path,
            &go_list("core.ResourceQuotaScope", &scopes),
            "conflicting scopes",
        ));
    }
}

/// Resource names that a quota can name (`ValidateResourceQuotaResourceName`).
fn validate_quota_resource_name(name: &str, path: &str, causes: &mut Vec<Cause>) {
    validate_resource_name(name, path, causes);
    let standard_quota = matches!(
        name,
        "cpu"
            | "memory"
            | "ephemeral-storage"
            | "requests.cpu"
            | "requests.memory"
            | "requests.storage"
            | "requests.ephemeral-storage"
            | "limits.cpu"
            | "limits.memory"
            | "limits.ephemeral-storage"
            | "pods"
            | "resourcequotas"
            | "services"
            | "replicationcontrollers"
            | "secrets"
            | "persistentvolumeclaims"
            | "configmaps"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || is_quota_hugepages(name);
    if !name.contains('/') && !standard_quota {
        causes.push(Cause::invalid(
            path,
            name,
            "must be a standard resource for quota",
        ));
    }
}

/// Resources counted in whole numbers (`helper.IsIntegerResourceName`).
fn is_integer_resource(name: &str) -> bool {
    matches!(
        name,
        "pods"
            | "resourcequotas"
            | "services"
            | "replicationcontrollers"
            | "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || (!name.contains("kubernetes.io/") && name.contains('/') && !name.starts_with("requests."))
}

/// `ValidateResourceQuantityValue`: not negative, whole where it must be.
fn validate_quantity_value(name: &str, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let Some(milli) = crate::quantity::milli_value(&text) else {
        causes.push(Cause::invalid(
            path,
            &text,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ));
        return;
    };
    let canonical = crate::quantity::canonicalize(&text).unwrap_or(text);
    if milli < 0 {
        causes.push(Cause::invalid(
            path,
            &canonical,
            "must be greater than or equal to 0",
        ));
    }
    if is_integer_resource(name) && milli % 1000 != 0 {
        causes.push(Cause::invalid(path, &canonical, "must be an integer"));
    }
}

const QUOTA_SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// `helper.IsResourceQuotaScopeValidForResource` for the standard quota names.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    let count = resource == "pods";
    let compute = matches!(
        resource,
        "cpu" | "memory" | "limits.cpu" | "limits.memory" | "requests.cpu" | "requests.memory"
    );
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => count || compute,
        "BestEffort" => count,
        _ => true,
    }
}

fn standard_quota_name(name: &str) -> bool {
    let mut scratch = Vec::new();
    validate_quota_resource_name(name, "", &mut scratch);
    scratch.is_empty() && !name.contains('/')
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for ResourceQuota {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            AGE,
            ("Request", "string", "", 0),
            ("Limit", "string", "", 0),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let hard = o
            .pointer("/status/hard")
            .or(o.pointer("/spec/hard"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let (mut req, mut lim) = (Vec::new(), Vec::new());
        for (k, v) in &hard {
            let used = s(
                o,
                &format!("/status/used/{}", k.replace('~', "~0").replace('/', "~1")),
            );
            let used = if used.is_empty() { "0" } else { used };
            let entry = format!("{k}: {used}/{}", v.as_str().unwrap_or(""));
            if k.starts_with("limits.") {
                lim.push(entry);
            } else {
                req.push(entry);
            }
        }
        vec![name, age, json!(req.join(", ")), json!(lim.join(", "))]
    }
}
