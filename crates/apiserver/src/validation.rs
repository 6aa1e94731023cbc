//! Validation as kube-apiserver does it: names (DNS-1123 and friends), object metadata and
//! the required fields of the built-in kinds. Returns [`Cause`]s with field paths.

use serde_json::Value;

use crate::error::Cause;
use crate::resources::{NameRule, Resource};

use skiff_meta::names::{is_dns1123_label, is_dns1123_subdomain, label_format, subdomain_format};

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// apimachinery's MaxLenError.
fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// What is wrong with `name` under `rule`, each as kube-apiserver words it (its length
/// first, then its characters, as IsDNS1123Subdomain and friends); empty when valid.
pub fn check_name(rule: NameRule, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                out.push(max_len(253));
            }
            if !subdomain_format(name) {
                out.push(SUBDOMAIN_MSG.into());
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                out.push(max_len(63));
            }
            if !label_format(name) {
                out.push(if subdomain_format(name) {
                    "must not contain dots".into()
                } else {
                    LABEL_MSG.into()
                });
            }
        }
        NameRule::Label1035 => {
            if name.len() > 63 {
                out.push(max_len(63));
            }
            if !(label_format(name) && name.as_bytes()[0].is_ascii_lowercase()) {
                out.push(LABEL1035_MSG.into());
            }
        }
        NameRule::PathSegment => {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']) {
                out.push("may not be '.' or '..' and may not contain '/' or '%'".into());
            }
        }
    }
    out
}

/// The most data a ConfigMap or Secret holds (core.MaxSecretSize).
pub const MAX_CONFIG_SIZE: usize = 1024 * 1024;

/// The bytes a base64 value decodes to.
fn decoded_len(s: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.len())
        .unwrap_or(s.len())
}

/// A ConfigMap's data and binaryData, or a Secret's data (its stringData already
/// merged in), together at most [`MAX_CONFIG_SIZE`] bytes: over it, TooLong on the
/// whole object (`[]`) for a ConfigMap, on `data` for a Secret, as ValidateConfigMap
/// and ValidateSecret.
fn config_size(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let values = |field: &str| {
        obj.get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_str())
    };
    let total: usize = if kind == "Secret" {
        values("data").map(decoded_len).sum::<usize>()
            + values("stringData").map(str::len).sum::<usize>()
    } else {
        values("data").map(str::len).sum::<usize>()
            + values("binaryData").map(decoded_len).sum::<usize>()
    };
    if total > MAX_CONFIG_SIZE {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: if kind == "Secret" { "data" } else { "[]" }.into(),
            message: format!("Too long: must have at most {MAX_CONFIG_SIZE} bytes"),
        });
    }
}

/// A DNS-1123 label field's problems as causes (ValidateDNS1123Label).
fn label_causes(field: &str, value: &str) -> Vec<Cause> {
    check_name(NameRule::Label, value)
        .iter()
        .map(|m| Cause::invalid(field, value, m))
        .collect()
}

/// Validates metadata and the kind's required fields.
pub fn validate(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else {
        for msg in check_name(res.name_rule, name) {
            causes.push(Cause::invalid("metadata.name", name, &msg));
        }
    }
    for (field, what) in [("labels", true), ("annotations", false)] {
        if let Some(map) = obj.pointer(&format!("/metadata/{field}")) {
            let Some(map) = map.as_object() else {
                causes.push(Cause::invalid(
                    format!("metadata.{field}"),
                    "",
                    "must be a map of strings",
                ));
                continue;
            };
            for (k, v) in map {
                let path = format!("metadata.{field}");
                if !skiff_meta::selector::valid_label_key(k) {
                    causes.push(Cause::invalid(path.clone(), k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
                }
                match v.as_str() {
                    Some(s) if what && !skiff_meta::selector::valid_label_value(s) => {
                        if s.len() > 63 {
                            causes.push(Cause::invalid(path.clone(), s, &max_len(63)));
                        }
                        if !skiff_meta::selector::label_value_format(s) {
                            causes.push(Cause::invalid(path.clone(), s, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
                        }
                    }
                    Some(_) => {}
                    None => causes.push(Cause::invalid(
                        format!("{path}.{k}"),
                        "",
                        "must be a string",
                    )),
                }
            }
        }
    }
    match res.kind {
        "Pod" => validate_pod_spec(obj.get("spec"), "spec", &mut causes),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            validate_workload(obj, &mut causes)
        }
        "ReplicationController" => validate_replication_controller(obj, &mut causes),
        "Job" => {
            validate_pod_spec(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
            job_restart_policy(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
        }
        "CronJob" => {
            if obj
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                causes.push(Cause::required("spec.schedule"));
            }
            validate_pod_spec(
                obj.pointer("/spec/jobTemplate/spec/template/spec"),
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
            job_restart_policy(
                obj.pointer("/spec/jobTemplate/spec/template/spec"),
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
        }
        "ConfigMap" | "Secret" => {
            if res.kind == "Secret" {
                validate_secret_type(obj, &mut causes);
            }
            config_size(res.kind, obj, &mut causes);
            for field in ["data", "binaryData", "stringData"] {
                if let Some(map) = obj.get(field).and_then(Value::as_object) {
                    for k in map.keys() {
                        if !is_config_key(k) {
                            causes.push(Cause::invalid(
                                format!("{field}[{k}]"),
                                k,
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
        }
        "Service" => validate_service(obj, &mut causes),
        "Ingress" => validate_ingress(obj, &mut causes),
        "PersistentVolumeClaim" => validate_claim(obj, &mut causes),
        "PersistentVolume" => validate_volume(obj, &mut causes),
        "Role" | "ClusterRole" => validate_rules(obj, &mut causes),
        "RoleBinding" | "ClusterRoleBinding" => validate_binding(res.kind, obj, &mut causes),
        "ResourceQuota" => validate_resource_quota(obj, &mut causes),
        "LimitRange" => validate_limit_range(obj, &mut causes),
        _ => {}
    }
    causes
}

/// `Required value: <detail>`.
pub fn required_because(field: impl Into<String>, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field: field.into(),
        message: format!("Required value: {detail}"),
    }
}

/// `Invalid value: <value as Go's %#v prints it>: <detail>`.
pub fn invalid_raw(field: impl Into<String>, value: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {value}: {detail}"),
    }
}

/// `Duplicate value: "<value>"`.
pub fn duplicate(field: impl Into<String>, value: &str) -> Cause {
    Cause {
        reason: "FieldValueDuplicate",
        field: field.into(),
        message: format!("Duplicate value: {}", serde_json::json!(value)),
    }
}

/// `Unsupported value: "<value>": supported values: "a", "b"`.
pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported
        .iter()
        .map(|s| serde_json::json!(s).to_string())
        .collect();
    Cause {
        reason: "FieldValueNotSupported",
        field: field.into(),
        message: format!(
            "Unsupported value: {}: supported values: {}",
            serde_json::json!(value),
            list.join(", ")
        ),
    }
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Resource names the system knows (`helper.IsStandardResourceName`).
fn is_standard_resource(name: &str) -> bool {
    matches!(
        name,
        "cpu"
            | "memory"
            | "ephemeral-storage"
            | "requests.cpu"
            | "requests.memory"
            | "requests.ephemeral-storage"
            | "limits.cpu"
            | "limits.memory"
            | "limits.ephemeral-storage"
            | "pods"
            | "resourcequotas"
            | "services"
            | "replicationcontrollers"
            | "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "storage"
            | "requests.storage"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || is_quota_hugepages(name)
}

fn is_quota_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

/// `validateResourceName`: a qualified name, standard unless it has a domain.
fn validate_resource_name(name: &str, path: &str, causes: &mut Vec<Cause>) -> bool {
    if !skiff_meta::selector::valid_label_key(name) {
        causes.push(Cause::invalid(path, name, QUALIFIED_NAME_MSG));
        return false;
    }
    if !name.contains('/') && !is_standard_resource(name) {
        causes.push(Cause::invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
        return false;
    }
    true
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

/// Go's `%#v` of a list of strings of type `ty` (`[]core.ResourceQuotaScope{"BestEffort"}`).
fn go_list(ty: &str, items: &[String]) -> String {
    if items.is_empty() {
        return format!("[]{ty}(nil)");
    }
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::json!(s).to_string())
        .collect();
    format!("[]{ty}{{{}}}", quoted.join(", "))
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

fn validate_limit_range(obj: &Value, causes: &mut Vec<Cause>) {
    let mut types = std::collections::BTreeSet::new();
    let limits = obj
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, item) in limits.iter().enumerate() {
        let idx = format!("spec.limits[{i}]");
        let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
        if !skiff_meta::selector::valid_label_key(ty) {
            causes.push(Cause::invalid(
                format!("{idx}.type"),
                ty,
                QUALIFIED_NAME_MSG,
            ));
        } else if !ty.contains('/') && !matches!(ty, "Pod" | "Container" | "PersistentVolumeClaim")
        {
            causes.push(Cause::invalid(
                format!("{idx}.type"),
                ty,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(ty.to_string()) {
            causes.push(duplicate(format!("{idx}.type"), ty));
        }
        let map = |field: &str| -> std::collections::BTreeMap<String, (i128, String)> {
            item.get(field)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            let t = v.as_str()?;
                            Some((
                                k.clone(),
                                (
                                    crate::quantity::milli_value(t)?,
                                    crate::quantity::canonicalize(t)?,
                                ),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let container_like = matches!(ty, "Pod" | "Container");
        let check_names = |field: &str, causes: &mut Vec<Cause>| {
            for k in item
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.keys())
            {
                let path = format!("{idx}.{field}[{k}]");
                if validate_resource_name(k, &path, causes)
                    && container_like
                    && !k.contains('/')
                    && !matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    && !k.starts_with("hugepages-")
                {
                    causes.push(Cause::invalid(
                        path,
                        k,
                        "must be a standard resource for containers",
                    ));
                }
            }
        };
        check_names("max", causes);
        check_names("min", causes);
        let (max, min) = (map("max"), map("min"));
        let (mut default, mut default_request) = (Default::default(), Default::default());
        let nonempty = |f: &str| {
            item.get(f)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        };
        if ty == "Pod" {
            for f in ["default", "defaultRequest"] {
                if nonempty(f) {
                    causes.push(Cause::forbidden(
                        format!("{idx}.{f}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        } else {
            check_names("default", causes);
            check_names("defaultRequest", causes);
            default = map("default");
            default_request = map("defaultRequest");
        }
        if ty == "PersistentVolumeClaim"
            && !min.contains_key("storage")
            && !max.contains_key("storage")
        {
            causes.push(required_because(
                format!("{idx}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        check_names("maxLimitRequestRatio", causes);
        let ratio = map("maxLimitRequestRatio");
        let keys: std::collections::BTreeSet<&String> = max
            .keys()
            .chain(min.keys())
            .chain(default.keys())
            .chain(default_request.keys())
            .chain(ratio.keys())
            .collect();
        for k in keys {
            let (mn, mx, df, dr, ra) = (
                min.get(k),
                max.get(k),
                default.get(k),
                default_request.get(k),
                ratio.get(k),
            );
            let at = |f: &str| format!("{idx}.{f}[{k}]");
            if let (Some(mn), Some(mx)) = (mn, mx) {
                if mn.0 > mx.0 {
                    causes.push(Cause::invalid(
                        at("min"),
                        &mn.1,
                        &format!("min value {} is greater than max value {}", mn.1, mx.1),
                    ));
                }
            }
            if let (Some(dr), Some(mn)) = (dr, mn) {
                if mn.0 > dr.0 {
                    causes.push(Cause::invalid(
                        at("defaultRequest"),
                        &dr.1,
                        &format!(
                            "min value {} is greater than default request value {}",
                            mn.1, dr.1
                        ),
                    ));
                }
            }
            if let (Some(dr), Some(mx)) = (dr, mx) {
                if dr.0 > mx.0 {
                    causes.push(Cause::invalid(
                        at("defaultRequest"),
                        &dr.1,
                        &format!(
                            "default request value {} is greater than max value {}",
                            dr.1, mx.1
                        ),
                    ));
                }
            }
            if let (Some(dr), Some(df)) = (dr, df) {
                if dr.0 > df.0 {
                    causes.push(Cause::invalid(
                        at("defaultRequest"),
                        &dr.1,
                        &format!(
                            "default request value {} is greater than default limit value {}",
                            dr.1, df.1
                        ),
                    ));
                }
            }
            if let (Some(df), Some(mn)) = (df, mn) {
                if mn.0 > df.0 {
                    causes.push(Cause::invalid(
                        at("default"),
                        &mn.1,
                        &format!("min value {} is greater than default value {}", mn.1, df.1),
                    ));
                }
            }
            if let (Some(df), Some(mx)) = (df, mx) {
                if df.0 > mx.0 {
                    causes.push(Cause::invalid(
                        at("default"),
                        &mx.1,
                        &format!("default value {} is greater than max value {}", df.1, mx.1),
                    ));
                }
            }
            if let Some(ra) = ra {
                if ra.0 < 1000 {
                    causes.push(Cause::invalid(
                        at("maxLimitRequestRatio"),
                        &ra.1,
                        &format!("ratio {} is less than 1", ra.1),
                    ));
                }
                if let (Some(mn), Some(mx)) = (mn, mx) {
                    if mn.0 > 0 {
                        let limit = mx.0 as f64 / mn.0 as f64;
                        if ra.0 as f64 / 1000.0 > limit {
                            causes.push(Cause::invalid(
                                at("maxLimitRequestRatio"),
                                &ra.1,
                                &format!("ratio {} is greater than max/min = {limit:.6}", ra.1),
                            ));
                        }
                    }
                }
            }
        }
    }
}

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Go's `%#v` of a `map[string]string` (`map[string]string{"app":"web"}`).
pub fn go_string_map(m: &std::collections::BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "map[string]string(nil)".into();
    }
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::json!(k), serde_json::json!(v)))
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// A ReplicationController: an equality-based selector (a plain map), required and
/// matching the template's labels, as ValidateReplicationControllerSpec.
fn validate_replication_controller(obj: &Value, causes: &mut Vec<Cause>) {
    let selector: std::collections::BTreeMap<String, String> = obj
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if selector.is_empty() {
        causes.push(Cause::required("spec.selector"));
    }
    match obj.pointer("/spec/template").filter(|t| !t.is_null()) {
        None => causes.push(Cause::required("spec.template")),
        Some(t) => {
            let labels = skiff_meta::selector::labels_of(t);
            if !selector.is_empty() && !skiff_meta::selector::set_matches(&selector, &labels) {
                causes.push(invalid_raw(
                    "spec.template.metadata.labels",
                    &go_string_map(&labels),
                    "selector does not match template labels",
                ));
            }
        }
    }
    validate_replicas_and_template(obj, causes);
}

fn validate_workload(obj: &Value, causes: &mut Vec<Cause>) {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let selector = obj.pointer("/spec/selector").filter(|s| !s.is_null());
    let template_labels =
        skiff_meta::selector::labels_of(obj.pointer("/spec/template").unwrap_or(&Value::Null));
    match selector {
        None => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let empty = ["matchLabels", "matchExpressions"].iter().all(|k| {
                sel.get(*k).is_none_or(|v| {
                    v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty())
                        || v.is_null()
                })
            });
            if empty {
                causes.push(invalid_raw(
                    "spec.selector",
                    "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}",
                    &format!("empty selector is invalid for {}", kind.to_lowercase()),
                ));
            }
        }
    }
    let matches = selector
        .is_some_and(|sel| skiff_meta::selector::label_selector_matches(sel, &template_labels));
    if !matches && obj.pointer("/spec/template").is_some() {
        causes.push(invalid_raw(
            "spec.template.metadata.labels",
            &go_string_map(&template_labels),
            "`selector` does not match template `labels`",
        ));
    }
    validate_replicas_and_template(obj, causes);
}

/// `spec.replicas` and the pod template of a workload (its restart policy Always).
fn validate_replicas_and_template(obj: &Value, causes: &mut Vec<Cause>) {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if let Some(r) = obj.pointer("/spec/replicas") {
        match r.as_i64() {
            Some(n) if n < 0 => causes.push(invalid_raw(
                "spec.replicas",
                &n.to_string(),
                "must be greater than or equal to 0",
            )),
            Some(_) => {}
            None => causes.push(Cause::invalid(
                "spec.replicas",
                &r.to_string(),
                "must be greater than or equal to 0",
            )),
        }
    }
    // A StatefulSet's pods get one volume per claim template (the controller
    // adds them), so mounts may name those templates.
    let mut spec = obj.pointer("/spec/template/spec").cloned();
    if kind == "StatefulSet" {
        if let Some(s) = spec.as_mut().and_then(Value::as_object_mut) {
            let claims: Vec<Value> = obj
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str))
                .map(|n| serde_json::json!({"name": n, "persistentVolumeClaim": {"claimName": n}}))
                .collect();
            let vols = s
                .entry("volumes")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(vols) = vols.as_array_mut() {
                for c in claims {
                    if !vols.iter().any(|v| v.get("name") == c.get("name")) {
                        vols.push(c);
                    }
                }
            }
        }
    }
    validate_pod_spec(spec.as_ref(), "spec.template.spec", causes);
    let rp = obj
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if rp != "Always" && matches!(rp, "OnFailure" | "Never") {
        causes.push(not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
}

/// A Job's pods must not restart in place forever.
fn job_restart_policy(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let rp = spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(rp, "OnFailure" | "Never") {
        causes.push(not_supported(
            format!("{path}.restartPolicy"),
            rp,
            &["OnFailure", "Never"],
        ));
    }
}

/// `must be between 1 and 65535, inclusive` for a port number.
fn port_cause(path: String, n: i64) -> Cause {
    invalid_raw(
        path,
        &n.to_string(),
        "must be between 1 and 65535, inclusive",
    )
}

fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort"
    ) {
        causes.push(not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if ty == "ExternalName" {
        let name = obj
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required("spec.externalName"));
        } else if !is_dns1123_subdomain(name.trim_end_matches('.')) {
            causes.push(Cause::invalid("spec.externalName", name, SUBDOMAIN_MSG));
        }
    } else if ports.is_none_or(|p| p.is_empty()) && !headless {
        causes.push(Cause::required("spec.ports"));
    }
    let many = ports.is_some_and(|p| p.len() > 1);
    let mut names = std::collections::HashSet::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            if many {
                causes.push(Cause::required(at("name")));
            }
        } else if !is_dns1123_label(name) {
            causes.extend(label_causes(&at("name"), name));
        } else if !names.insert(name) {
            causes.push(duplicate(at("name"), name));
        }
        match p.get("port").and_then(Value::as_i64) {
            Some(1..=65535) => {}
            Some(n) => causes.push(port_cause(at("port"), n)),
            None => causes.push(Cause::required(at("port"))),
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            causes.push(not_supported(
                at("protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        match p.get("targetPort") {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1..=65535) => {}
                Some(n) => causes.push(port_cause(at("targetPort"), n)),
                None => {}
            },
            Some(Value::String(s)) if !is_port_name(s) => causes.push(Cause::invalid(
                at("targetPort"),
                s,
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            )),
            _ => {}
        }
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
            if np != 0 && ty != "NodePort" && ty != "LoadBalancer" {
                causes.push(Cause::forbidden(
                    at("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
}

/// An IANA service name: at most 15 of `[a-z0-9-]` with a letter, no `--`.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.bytes().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
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

fn validate_ingress(obj: &Value, causes: &mut Vec<Cause>) {
    for (i, rule) in obj
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, path) in rule
            .pointer("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            let ty = path.get("pathType").and_then(Value::as_str).unwrap_or("");
            match ty {
                "" => causes.push(required_because(
                    format!("{at}.pathType"),
                    "pathType must be specified",
                )),
                "Exact" | "Prefix" | "ImplementationSpecific" => {}
                other => causes.push(not_supported(
                    format!("{at}.pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            let p = path.get("path").and_then(Value::as_str).unwrap_or("");
            if matches!(ty, "Exact" | "Prefix") && !p.starts_with('/') {
                causes.push(Cause::invalid(
                    format!("{at}.path"),
                    p,
                    "must be an absolute path",
                ));
            }
            let backend = path.get("backend");
            let service = backend.and_then(|b| b.get("service"));
            let resource = backend.and_then(|b| b.get("resource"));
            if service.is_none() && resource.is_none() {
                causes.push(invalid_raw(
                    format!("{at}.backend"),
                    "\"\"",
                    "resource or service backend is required",
                ));
            }
            if let Some(svc) = service {
                let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    causes.push(Cause::required(format!("{at}.backend.service.name")));
                }
                let port = svc.get("port");
                let number = port.and_then(|p| p.get("number")).and_then(Value::as_i64);
                let pname = port.and_then(|p| p.get("name")).and_then(Value::as_str);
                if number.is_none() && pname.is_none() {
                    causes.push(required_because(
                        format!("{at}.backend.service.port"),
                        "port name or number is required",
                    ));
                }
            }
        }
    }
}

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(obj: &Value, causes: &mut Vec<Cause>, required_detail: Option<&str>) {
    let modes: Vec<&str> = obj
        .pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if modes.is_empty() {
        causes.push(match required_detail {
            Some(d) => required_because("spec.accessModes", d),
            None => Cause::required("spec.accessModes"),
        });
    }
    for m in modes {
        if !ACCESS_MODES.contains(&m) {
            causes.push(not_supported("spec.accessModes", m, &ACCESS_MODES));
        }
    }
}

fn validate_claim(obj: &Value, causes: &mut Vec<Cause>) {
    access_modes(obj, causes, Some("at least 1 access mode is required"));
    if obj.pointer("/spec/resources/requests/storage").is_none() {
        causes.push(Cause::required("spec.resources[storage]"));
    }
}

fn validate_volume(obj: &Value, causes: &mut Vec<Cause>) {
    access_modes(obj, causes, None);
    let capacity = obj.pointer("/spec/capacity").and_then(Value::as_object);
    if capacity.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required("spec.capacity"));
    }
    const SOURCES: [&str; 23] = [
        "hostPath",
        "local",
        "nfs",
        "csi",
        "iscsi",
        "fc",
        "rbd",
        "cephfs",
        "cinder",
        "glusterfs",
        "flexVolume",
        "flocker",
        "azureFile",
        "azureDisk",
        "vsphereVolume",
        "quobyte",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "persistentVolumeSource",
    ];
    let spec = obj.get("spec");
    if !SOURCES
        .iter()
        .any(|s| spec.and_then(|sp| sp.get(*s)).is_some_and(|v| !v.is_null()))
    {
        causes.push(required_because("spec", "must specify a volume type"));
    }
}

fn validate_rules(obj: &Value, causes: &mut Vec<Cause>) {
    for (i, rule) in obj
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let list = |k: &str| rule.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        if list("verbs") == 0 {
            causes.push(required_because(
                format!("rules[{i}].verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = list("nonResourceURLs");
        if urls > 0 {
            if obj.get("kind").and_then(Value::as_str) == Some("Role") {
                causes.push(invalid_raw(
                    format!("rules[{i}].nonResourceURLs"),
                    &format!(
                        "{:?}",
                        rule.get("nonResourceURLs").cloned().unwrap_or_default()
                    ),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if list("apiGroups") > 0 || list("resources") > 0 || list("resourceNames") > 0 {
                causes.push(invalid_raw(
                    format!("rules[{i}].nonResourceURLs"),
                    "[]string{}",
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if list("apiGroups") == 0 {
            causes.push(required_because(
                format!("rules[{i}].apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if list("resources") == 0 {
            causes.push(required_because(
                format!("rules[{i}].resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn validate_binding(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let rk = obj
        .pointer("/roleRef/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let supported: &[&str] = if kind == "RoleBinding" {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !supported.contains(&rk) {
        causes.push(not_supported("roleRef.kind", rk, supported));
    }
    let group = obj
        .pointer("/roleRef/apiGroup")
        .and_then(Value::as_str)
        .unwrap_or("");
    if group != "rbac.authorization.k8s.io" {
        causes.push(not_supported(
            "roleRef.apiGroup",
            group,
            &["rbac.authorization.k8s.io"],
        ));
    }
    if obj
        .pointer("/roleRef/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        causes.push(Cause::required("roleRef.name"));
    }
    for (i, s) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = |f: &str| format!("subjects[{i}].{f}");
        if s.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(at("name")));
        }
        let k = s.get("kind").and_then(Value::as_str).unwrap_or("");
        match k {
            "ServiceAccount" => {
                if kind == "ClusterRoleBinding"
                    && s.get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                {
                    causes.push(Cause::required(at("namespace")));
                }
            }
            "User" | "Group" => {
                let g = s.get("apiGroup").and_then(Value::as_str).unwrap_or("");
                if g != "rbac.authorization.k8s.io" {
                    causes.push(not_supported(
                        at("apiGroup"),
                        g,
                        &["rbac.authorization.k8s.io"],
                    ));
                }
            }
            other => causes.push(not_supported(
                at("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

/// Required fields of a pod spec: containers with a name and an image.
/// A container's resources as kube-apiserver's ValidateResourceRequirements checks them:
/// quantities that parse and are not negative, a request no larger than its limit.
fn validate_resources(c: &Value, at: &str, causes: &mut Vec<Cause>) {
    let quantities = |part: &str| -> Vec<(String, String, Option<i128>)> {
        c.pointer(&format!("/resources/{part}"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let milli = crate::quantity::milli_value(&text);
                (k.clone(), text, milli)
            })
            .collect()
    };
    let limits = quantities("limits");
    for part in ["limits", "requests"] {
        for (k, text, milli) in quantities(part) {
            let field = format!("{at}.{part}[{k}]");
            let shown = crate::quantity::canonicalize(&text).unwrap_or_else(|| text.clone());
            match milli {
                None => causes.push(Cause::invalid(
                    field,
                    &text,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
                Some(m) if m < 0 => causes.push(Cause::invalid(
                    field,
                    &shown,
                    "must be greater than or equal to 0",
                )),
                Some(m) if part == "requests" => {
                    let limit = limits.iter().find(|(lk, _, _)| *lk == k);
                    if let Some((_, ltext, Some(l))) = limit {
                        if m > *l {
                            let lshown = crate::quantity::canonicalize(ltext)
                                .unwrap_or_else(|| ltext.clone());
                            causes.push(Cause::invalid(
                                format!("{at}.requests"),
                                &shown,
                                &format!("must be less than or equal to {k} limit of {lshown}"),
                            ));
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// The shortest lifetime a ServiceAccount token may be asked for, in seconds:
/// Kubernetes' 10 minutes, unless the server was started with a shorter one (a hidden
/// flag for tests of token rotation).
static MIN_TOKEN_EXPIRATION: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(DEFAULT_MIN_TOKEN_EXPIRATION);

/// Kubernetes' minimum token lifetime: 10 minutes.
pub const DEFAULT_MIN_TOKEN_EXPIRATION: i64 = 600;

pub fn set_min_token_expiration(seconds: i64) {
    MIN_TOKEN_EXPIRATION.store(seconds, std::sync::atomic::Ordering::Relaxed);
}

/// A token lifetime's problem, as kube-apiserver words it.
pub fn token_expiration_error(seconds: i64) -> Option<&'static str> {
    let min = MIN_TOKEN_EXPIRATION.load(std::sync::atomic::Ordering::Relaxed);
    if seconds < min {
        Some(if min == DEFAULT_MIN_TOKEN_EXPIRATION {
            "may not specify a duration less than 10 minutes"
        } else {
            "may not specify a duration less than the server's minimum token expiration"
        })
    } else if seconds > 1 << 32 {
        Some("may not specify a duration larger than 2^32 seconds")
    } else {
        None
    }
}

/// A projected volume's serviceAccountToken sources: a path, a lifetime in range.
fn validate_token_projections(volume: &Value, at: &str, causes: &mut Vec<Cause>) {
    for (j, src) in volume
        .pointer("/projected/sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(t) = src.get("serviceAccountToken").filter(|t| !t.is_null()) else {
            continue;
        };
        let at = format!("{at}.projected.sources[{j}].serviceAccountToken");
        if t.get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(format!("{at}.path")));
        }
        if let Some(secs) = t.get("expirationSeconds").and_then(Value::as_i64) {
            if let Some(msg) = token_expiration_error(secs) {
                causes.push(invalid_raw(
                    format!("{at}.expirationSeconds"),
                    &secs.to_string(),
                    msg,
                ));
            }
        }
    }
}

pub fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(Cause::required(format!("{path}.containers")));
        return;
    };
    let mut volumes = std::collections::HashSet::new();
    for (i, v) in spec
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let at = format!("{path}.volumes[{i}].name");
        if name.is_empty() {
            causes.push(Cause::required(at));
        } else if !is_dns1123_label(name) {
            causes.extend(label_causes(&at, name));
        } else if !volumes.insert(name) {
            causes.push(duplicate(at, name));
        }
        validate_token_projections(v, &format!("{path}.volumes[{i}]"), causes);
    }
    for (i, c) in spec
        .and_then(|s| s.get("initContainers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{path}.initContainers[{i}]");
        if c.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(format!("{at}.name")));
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(format!("{at}.image")));
        }
        validate_container_extras(c, &at, &volumes, causes);
        validate_resources(c, &format!("{at}.resources"), causes);
    }
    let mut names = std::collections::HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(format!("{path}.containers[{i}].name")));
        } else if !is_dns1123_label(name) {
            causes.extend(label_causes(&format!("{path}.containers[{i}].name"), name));
        } else if !names.insert(name) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("{path}.containers[{i}].name"),
                message: format!("Duplicate value: {}", serde_json::json!(name)),
            });
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(format!("{path}.containers[{i}].image")));
        }
        validate_container_extras(c, &format!("{path}.containers[{i}]"), &volumes, causes);
        validate_resources(c, &format!("{path}.containers[{i}].resources"), causes);
    }
    validate_ephemeral_containers(spec, path, &names, &volumes, causes);
    if let Some(rp) = spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
    {
        if !matches!(rp, "Always" | "OnFailure" | "Never") {
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: format!("{path}.restartPolicy"),
                message: format!(
                    "Unsupported value: {}: supported values: \"Always\", \"OnFailure\", \"Never\"",
                    serde_json::json!(rp)
                ),
            });
        }
    }
}

/// `spec.ephemeralContainers` as kube-apiserver checks them: named uniquely across all
/// the pod's containers, with an image, targeting an existing container, and without
/// what only a regular container may have (ports, probes, lifecycle, resources).
fn validate_ephemeral_containers(
    spec: Option<&Value>,
    path: &str,
    app_names: &std::collections::HashSet<&str>,
    volumes: &std::collections::HashSet<&str>,
    causes: &mut Vec<Cause>,
) {
    let list = |k: &str| {
        spec.and_then(|s| s.get(k))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let mut others: std::collections::HashSet<&str> = app_names.clone();
    others.extend(list("initContainers").filter_map(|c| c.get("name").and_then(Value::as_str)));
    let mut taken = others.clone();
    for (i, c) in list("ephemeralContainers").enumerate() {
        let at = format!("{path}.ephemeralContainers[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        } else if !is_dns1123_label(name) {
            causes.extend(label_causes(&format!("{at}.name"), name));
        } else if !taken.insert(name) {
            causes.push(duplicate(format!("{at}.name"), name));
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(format!("{at}.image")));
        }
        for field in [
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "resources",
            "resizePolicy",
            "restartPolicy",
        ] {
            let set = match c.get(field) {
                None | Some(Value::Null) => false,
                Some(Value::Object(m)) => m.values().any(|v| !is_empty_value(v)),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::String(s)) => !s.is_empty(),
                Some(_) => true,
            };
            if set {
                causes.push(Cause::forbidden(
                    format!("{at}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(target) = c
            .get("targetContainerName")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if !others.contains(target) {
                causes.push(Cause {
                    reason: "FieldValueNotFound",
                    field: format!("{at}.targetContainerName"),
                    message: format!("Not found: {}", serde_json::json!(target)),
                });
            }
        }
        for (j, m) in c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if m.get("subPath")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty())
            {
                causes.push(Cause::forbidden(
                    format!("{at}.volumeMounts[{j}].subPath"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        validate_container_extras(c, &at, volumes, causes);
    }
}

/// Whether a JSON value is Go's zero value (absent in the object it came from).
fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty_value),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Ports, volume mounts and the pull policy of one container.
fn validate_container_extras(
    c: &Value,
    at: &str,
    volumes: &std::collections::HashSet<&str>,
    causes: &mut Vec<Cause>,
) {
    for (j, p) in c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let pat = format!("{at}.ports[{j}]");
        match p.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => causes.push(Cause::required(format!("{pat}.containerPort"))),
            Some(1..=65535) => {}
            Some(n) => causes.push(port_cause(format!("{pat}.containerPort"), n)),
        }
        if let Some(n) = p.get("hostPort").and_then(Value::as_i64) {
            if !(0..=65535).contains(&n) {
                causes.push(port_cause(format!("{pat}.hostPort"), n));
            }
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            causes.push(not_supported(
                format!("{pat}.protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    for (j, m) in c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mat = format!("{at}.volumeMounts[{j}]");
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(format!("{mat}.name")));
        } else if !volumes.contains(name) {
            causes.push(Cause {
                reason: "FieldValueNotFound",
                field: format!("{mat}.name"),
                message: format!("Not found: {}", serde_json::json!(name)),
            });
        }
        if m.get("mountPath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(format!("{mat}.mountPath")));
        }
    }
    if let Some(policy) = c.get("imagePullPolicy").and_then(Value::as_str) {
        if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
            causes.push(not_supported(
                format!("{at}.imagePullPolicy"),
                policy,
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(check_name(NameRule::PathSegment, "system:controller:x").is_empty());
        assert!(!check_name(NameRule::PathSegment, "..").is_empty());
        // A subdomain's segments have no length of their own; the whole is 253.
        let long_segment = "a".repeat(100);
        assert!(check_name(NameRule::Subdomain, &format!("{long_segment}.b")).is_empty());
        assert!(check_name(NameRule::Subdomain, &"a".repeat(253)).is_empty());
        assert_eq!(
            check_name(NameRule::Subdomain, &"a".repeat(254)),
            vec!["must be no more than 253 characters".to_string()]
        );
        assert_eq!(check_name(NameRule::Subdomain, "A").len(), 1);
        assert!(check_name(NameRule::Subdomain, "A")[0]
            .starts_with("a lowercase RFC 1123 subdomain must consist of"));
        assert_eq!(
            check_name(NameRule::Subdomain, &format!("{}-", "a".repeat(253))).len(),
            2
        );
        // Labels: 63, and no dots.
        assert_eq!(
            check_name(NameRule::Label, &"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert_eq!(
            check_name(NameRule::Label, "a.b"),
            vec!["must not contain dots".to_string()]
        );
        assert!(check_name(NameRule::Label, "A")[0].starts_with("a lowercase RFC 1123 label"));
        assert_eq!(
            check_name(NameRule::Label1035, &"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert!(check_name(NameRule::Label1035, "1a")[0].starts_with("a DNS-1035 label"));
    }

    #[test]
    fn statefulset_mounts_may_name_claim_templates() {
        let res = crate::resources::lookup("apps", "v1", "statefulsets").unwrap();
        let sts = |mount: &str| {
            json!({"kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [
                    {"name": "c", "image": "busybox", "volumeMounts": [{"name": mount, "mountPath": "/d"}]}
                ]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
            }})
        };
        assert!(validate(res, &sts("data")).is_empty());
        let causes = validate(res, &sts("other"));
        assert_eq!(
            causes[0].field,
            "spec.template.spec.containers[0].volumeMounts[0].name"
        );
    }

    #[test]
    fn pod_requires_containers() {
        let res = crate::resources::lookup("", "v1", "pods").unwrap();
        let causes = validate(res, &json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(causes[0].field, "spec.containers");
        let causes = validate(
            res,
            &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
        );
        assert_eq!(causes[0].field, "spec.containers[0].image");
        let ok = validate(
            res,
            &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        );
        assert!(ok.is_empty());
    }
}
