//! Validation as kube-apiserver does it: names (DNS-1123 and friends), object metadata and
//! the required fields of the built-in kinds. Returns [`Cause`]s with field paths.

use serde_json::Value;

use crate::error::Cause;
use crate::resources::{NameRule, Resource};

/// DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// DNS-1035 label: a DNS-1123 label starting with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Checks a name against a rule; `None` when valid, else the detail message.
pub fn check_name(rule: NameRule, name: &str) -> Option<&'static str> {
    let ok = match rule {
        NameRule::Label => is_dns1123_label(name),
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label1035 => is_dns1035_label(name),
        NameRule::PathSegment => {
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
        }
    };
    if ok {
        return None;
    }
    Some(match rule {
        NameRule::Label => LABEL_MSG,
        NameRule::Subdomain => SUBDOMAIN_MSG,
        NameRule::Label1035 => LABEL1035_MSG,
        NameRule::PathSegment => "may not be '.' or '..' and may not contain '/' or '%'",
    })
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
    } else if let Some(msg) = check_name(res.name_rule, name) {
        causes.push(Cause::invalid("metadata.name", name, msg));
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
                if !crate::selector::valid_label_key(k) {
                    causes.push(Cause::invalid(path.clone(), k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
                }
                match v.as_str() {
                    Some(s) if what && !crate::selector::valid_label_value(s) => causes.push(
                        Cause::invalid(path.clone(), s, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                    ),
                    Some(_) => {}
                    None => causes.push(Cause::invalid(format!("{path}.{k}"), "", "must be a string")),
                }
            }
        }
    }
    match res.kind {
        "Pod" => validate_pod_spec(obj.get("spec"), "spec", &mut causes),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            validate_workload(obj, &mut causes)
        }
        "Job" => validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            &mut causes,
        ),
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
        }
        "ConfigMap" | "Secret" => {
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
        "Service" => {
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            let external =
                obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
            if ports.is_none_or(|p| p.is_empty()) && !headless && !external {
                causes.push(Cause::required("spec.ports"));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                match p.get("port").and_then(Value::as_i64) {
                    Some(1..=65535) => {}
                    Some(n) => causes.push(Cause::invalid(
                        format!("spec.ports[{i}].port"),
                        &n.to_string(),
                        "must be between 1 and 65535, inclusive",
                    )),
                    None => causes.push(Cause::required(format!("spec.ports[{i}].port"))),
                }
            }
        }
        _ => {}
    }
    causes
}

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn validate_workload(obj: &Value, causes: &mut Vec<Cause>) {
    if obj.pointer("/spec/selector").is_none() {
        causes.push(Cause::required("spec.selector"));
    }
    let template_labels =
        crate::selector::labels_of(obj.pointer("/spec/template").unwrap_or(&Value::Null));
    if let Some(ml) = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    {
        let matches = ml
            .iter()
            .all(|(k, v)| template_labels.get(k).map(String::as_str) == v.as_str());
        if !matches {
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &format!("{template_labels:?}"),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(r) = obj.pointer("/spec/replicas") {
        if r.as_i64().is_none_or(|n| n < 0) {
            causes.push(Cause::invalid(
                "spec.replicas",
                &r.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
}

/// Required fields of a pod spec: containers with a name and an image.
pub fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(Cause::required(format!("{path}.containers")));
        return;
    };
    let mut names = std::collections::HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(format!("{path}.containers[{i}].name")));
        } else if !is_dns1123_label(name) {
            causes.push(Cause::invalid(
                format!("{path}.containers[{i}].name"),
                name,
                LABEL_MSG,
            ));
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
        for part in ["limits", "requests"] {
            let Some(m) = c
                .pointer(&format!("/resources/{part}"))
                .and_then(Value::as_object)
            else {
                continue;
            };
            for (k, v) in m {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if crate::quantity::canonicalize(&text).is_none() {
                    causes.push(Cause::invalid(
                        format!("{path}.containers[{i}].resources.{part}[{k}]"),
                        &text,
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ));
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain("../etc"));
        assert!(!is_dns1035_label("1abc"));
        assert!(check_name(NameRule::PathSegment, "system:controller:x").is_none());
        assert!(check_name(NameRule::PathSegment, "..").is_some());
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
