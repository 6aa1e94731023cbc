//! Validation as kube-apiserver does it: names (DNS-1123 and friends) and object metadata
//! (each kind's own rules are its strategy's, in `kinds`, and call these). Also the checks several kinds share
//! (pod specs and pod templates, workloads, config maps and secrets, access modes,
//! resource names) and the [`Cause`] constructors, all returning [`Cause`]s with field
//! paths.

use serde_json::{json, Value};

use crate::error::Cause;
use crate::resource::{NameRule, Resource};

use skiff_meta::names::{is_dns1123_label, label_format, subdomain_format};

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub(crate) const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
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
pub(crate) fn decoded_len(s: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.len())
        .unwrap_or(s.len())
}

/// The string values of the map `obj[field]` (a ConfigMap's or Secret's data).
pub(crate) fn config_values<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = &'a str> {
    obj.get(field)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.as_str())
}

/// TooLong on `field` when a ConfigMap's or Secret's data, `total` bytes, is over
/// [`MAX_CONFIG_SIZE`] (ValidateConfigMap, ValidateSecret).
pub(crate) fn config_size(total: usize, field: &str, causes: &mut Vec<Cause>) {
    if total > MAX_CONFIG_SIZE {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: must have at most {MAX_CONFIG_SIZE} bytes"),
        });
    }
}

/// The keys of a ConfigMap's or Secret's `data`, `binaryData` and `stringData`.
pub(crate) fn config_keys(obj: &Value, causes: &mut Vec<Cause>) {
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

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 label field's problems as causes (ValidateDNS1123Label).
pub(crate) fn label_causes(field: &str, value: &str) -> Vec<Cause> {
    check_name(NameRule::Label, value)
        .iter()
        .map(|m| Cause::invalid(field, value, m))
        .collect()
}

/// The rules of every object's metadata: its name by the resource's rule, label and annotation keys and values.
pub fn validate_metadata(res: &Resource, obj: &Value) -> Vec<Cause> {
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
/// kube's `ValidateNonSpecialIP` for an endpoint address: an address a proxy would
/// send traffic to on the node itself (unspecified, loopback, link-local) is refused,
/// so a Service cannot be pointed at the node's own services. `allow_loopback` is
/// for the API server's own `default/kubernetes` endpoints (a single node bound to
/// 127.0.0.1 advertises it).
pub fn endpoint_ip(ip: &str, field: &str, allow_loopback: bool, causes: &mut Vec<Cause>) {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        causes.push(invalid_raw(
            field,
            &format!("{ip:?}"),
            "must be a valid IP address",
        ));
        return;
    };
    let why = match addr {
        a if a.is_unspecified() => Some("may not be unspecified (0.0.0.0, ::)"),
        a if a.is_loopback() && !allow_loopback => {
            Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
        }
        std::net::IpAddr::V4(v4) if v4.is_link_local() => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        std::net::IpAddr::V4(v4) if v4.octets()[..3] == [224, 0, 0] => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        std::net::IpAddr::V6(v6) if v6.segments()[0] == 0xff02 => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        _ => None,
    };
    if let Some(why) = why {
        causes.push(invalid_raw(field, &format!("{ip:?}"), why));
    }
}

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

pub(crate) const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

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

pub(crate) fn is_quota_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

/// `validateResourceName`: a qualified name, standard unless it has a domain.
pub(crate) fn validate_resource_name(name: &str, path: &str, causes: &mut Vec<Cause>) -> bool {
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

/// Go's `%#v` of a list of strings of type `ty` (`[]core.ResourceQuotaScope{"BestEffort"}`).
pub(crate) fn go_list(ty: &str, items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::json!(s).to_string())
        .collect();
    go_rendered_list(ty, &quoted)
}

/// Go's `%#v` of a list of type `ty` whose items are already rendered: `[]ty(nil)` when
/// empty.
pub(crate) fn go_rendered_list(ty: &str, rendered: &[String]) -> String {
    if rendered.is_empty() {
        return format!("[]{ty}(nil)");
    }
    format!("[]{ty}{{{}}}", rendered.join(", "))
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

/// A workload with a label selector (Deployment, ReplicaSet, StatefulSet, DaemonSet):
/// the selector required, not empty and matching the template's labels; then
/// [`validate_replicas_and_template`] with `pod_spec` as its template's spec. `what` is
/// the kind in lower case, as the messages name it.
pub(crate) fn validate_workload(
    obj: &Value,
    what: &str,
    pod_spec: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
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
                    &format!("empty selector is invalid for {what}"),
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
    validate_replicas_and_template(obj, pod_spec, causes);
}

/// `spec.replicas` and the pod template of a workload (its restart policy Always);
/// `pod_spec` is the template's spec as validated.
pub(crate) fn validate_replicas_and_template(
    obj: &Value,
    pod_spec: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
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
    validate_pod_spec(pod_spec, "spec.template.spec", causes);
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
pub(crate) fn job_restart_policy(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
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
pub(crate) fn port_cause(path: String, n: i64) -> Cause {
    invalid_raw(
        path,
        &n.to_string(),
        "must be between 1 and 65535, inclusive",
    )
}

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

pub(crate) fn access_modes(obj: &Value, causes: &mut Vec<Cause>, required_detail: Option<&str>) {
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
    validate_pod_dns(spec, path, causes);
}

/// glibc's limits, as kube-apiserver enforces them on `dnsConfig` (MaxDNSNameservers,
/// MaxDNSSearchPaths and MaxDNSSearchListChars with ExpandedDNSConfig).
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;

/// IsDNS1123SubdomainWithUnderscore's message in 1.33 (its regex is the plain
/// subdomain's there).
const SUBDOMAIN_UNDERSCORE_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// A DNS-1123 subdomain whose labels may start with `_` and hold `_` inside
/// (`_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?` per label).
fn subdomain_with_underscore(s: &str) -> bool {
    s.split('.').all(|label| {
        let l = label.strip_prefix('_').unwrap_or(label).as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match (l.first(), l.last()) {
            (Some(a), Some(z)) => {
                alnum(a) && alnum(z) && l.iter().all(|c| alnum(c) || *c == b'-' || *c == b'_')
            }
            _ => false,
        }
    })
}

/// `spec.dnsPolicy` and `spec.dnsConfig` (validateDNSPolicy, validatePodDNSConfig with
/// RelaxedDNSSearchValidation, on by default in 1.33).
fn validate_pod_dns(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let policy = spec
        .and_then(|s| s.get("dnsPolicy"))
        .and_then(Value::as_str);
    match policy {
        None | Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None") => {}
        Some("") => causes.push(Cause::required(format!("{path}.dnsPolicy"))),
        Some(p) => causes.push(not_supported(
            format!("{path}.dnsPolicy"),
            p,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    let at = format!("{path}.dnsConfig");
    let config = spec
        .and_then(|s| s.get("dnsConfig"))
        .filter(|c| !c.is_null());
    let strings = |field: &str| -> Vec<String> {
        config
            .and_then(|c| c.get(field))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let nameservers = strings("nameservers");
    if policy == Some("None") {
        if config.is_none() {
            causes.push(required_because(
                at,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if nameservers.is_empty() {
            causes.push(required_because(
                format!("{at}.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    let Some(config) = config else {
        return;
    };
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        causes.push(invalid_raw(
            format!("{at}.nameservers"),
            &go_list("string", &nameservers),
            &format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if ns.parse::<std::net::IpAddr>().is_err() {
            causes.push(Cause::invalid(
                format!("{at}.nameservers[{i}]"),
                ns,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let searches = strings("searches");
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        causes.push(invalid_raw(
            format!("{at}.searches"),
            &go_list("string", &searches),
            &format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        causes.push(invalid_raw(
            format!("{at}.searches"),
            &go_list("string", &searches),
            &format!(
                "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        // A lone "." is allowed; otherwise a trailing dot is fine.
        if search == "." {
            continue;
        }
        let s = search.strip_suffix('.').unwrap_or(search);
        if s.len() > 253 {
            causes.push(Cause::invalid(
                format!("{at}.searches[{i}]"),
                s,
                &max_len(253),
            ));
        }
        if !subdomain_with_underscore(s) {
            causes.push(Cause::invalid(
                format!("{at}.searches[{i}]"),
                s,
                SUBDOMAIN_UNDERSCORE_MSG,
            ));
        }
    }
    for (i, op) in config
        .get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if op
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(required_because(
                format!("{at}.options[{i}]"),
                "must not be empty",
            ));
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

/// `field is immutable` on `path` (dotted) if it differs between `old` and `new`.
pub(crate) fn immutable(old: &Value, new: &Value, path: &str, causes: &mut Vec<Cause>) {
    let p = format!("/{}", path.replace('.', "/"));
    if old.pointer(&p) != new.pointer(&p) {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: path.into(),
            message: format!(
                "Invalid value: {}: field is immutable",
                new.pointer(&p).cloned().unwrap_or(Value::Null)
            ),
        });
    }
}

/// A workload's `spec.selector` never changes.
pub(crate) fn selector_immutable(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if old.pointer("/spec/selector") != new.pointer("/spec/selector") {
        causes.push(crate::validation::invalid_raw(
            "spec.selector",
            &go_label_selector(new.pointer("/spec/selector")),
            "field is immutable",
        ));
    }
}

/// Go's `%#v` of a `*metav1.LabelSelector` as validation errors print it.
fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return "null".into();
    };
    let labels: std::collections::BTreeMap<String, String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    let exprs: Vec<String> = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            let values = go_rendered_list("string", &values);
            format!(
                "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                e.get("key").cloned().unwrap_or(json!("")),
                e.get("operator").cloned().unwrap_or(json!(""))
            )
        })
        .collect();
    let exprs = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        format!("[]v1.LabelSelectorRequirement{{{}}}", exprs.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(&labels)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Each cause of `spec` as `field: message`.
    fn dns_causes(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate_pod_dns(Some(&spec), "spec", &mut causes);
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn dns_policy_and_config_as_kube_apiserver_words_them() {
        assert!(dns_causes(json!({"dnsPolicy": "ClusterFirst"})).is_empty());
        assert!(dns_causes(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1", "2001:db8::1"],
            "searches": ["ns.svc.cluster.local.", "_sip._tcp.example", "."],
            "options": [{"name": "ndots", "value": "2"}],
        }}))
        .is_empty());
        assert_eq!(
            dns_causes(json!({"dnsPolicy": "Sometimes"})),
            [
                r#"spec.dnsPolicy: Unsupported value: "Sometimes": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#
            ]
        );
        assert_eq!(
            dns_causes(json!({"dnsPolicy": "None"})),
            ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]
        );
        assert_eq!(
            dns_causes(json!({"dnsPolicy": "None", "dnsConfig": {"searches": ["a.example"]}})),
            ["spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"]
        );
        assert_eq!(
            dns_causes(json!({"dnsConfig": {
                "nameservers": ["1.1.1.1", "x", "2.2.2.2", "3.3.3.3"],
                "searches": ["Bad.example", "ok.example"],
                "options": [{"value": "1"}],
            }})),
            [
                r#"spec.dnsConfig.nameservers: Invalid value: []string{"1.1.1.1", "x", "2.2.2.2", "3.3.3.3"}: must not have more than 3 nameservers"#.to_string(),
                r#"spec.dnsConfig.nameservers[1]: Invalid value: "x": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.to_string(),
                format!(r#"spec.dnsConfig.searches[0]: Invalid value: "Bad.example": {SUBDOMAIN_UNDERSCORE_MSG}"#),
                "spec.dnsConfig.options[0]: Required value: must not be empty".to_string(),
            ]
        );
        let many: Vec<String> = (0..33).map(|i| format!("d{i}")).collect();
        let causes = dns_causes(json!({"dnsConfig": {"searches": many}}));
        assert_eq!(causes.len(), 1);
        assert!(causes[0]
            .starts_with(r#"spec.dnsConfig.searches: Invalid value: []string{"d0", "d1","#));
        assert!(causes[0].ends_with("}: must not have more than 32 search paths"));
        let long: Vec<String> = (0..9).map(|i| format!("{i}{}", "a".repeat(250))).collect();
        let causes = dns_causes(json!({"dnsConfig": {"searches": long}}));
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].ends_with(
            "must not have more than 2048 characters (including spaces) in the search list"
        ));
        assert_eq!(
            dns_causes(json!({"dnsConfig": {"searches": ["a".repeat(254)]}})),
            [format!(
                r#"spec.dnsConfig.searches[0]: Invalid value: "{}": must be no more than 253 characters"#,
                "a".repeat(254)
            )]
        );
    }
}
