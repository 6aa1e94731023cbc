//! The generic steps of the store's writes (kube-apiserver's "strategies"): server-set
//! metadata (uid, timestamps, generation), what a subresource's write may change (from
//! [`crate::subresource`]), then
//! each kind's own hooks from [`crate::kinds`] (defaults, status, what an update carries
//! over, create and update rules). Also the defaults several kinds share (pod specs and
//! pod templates, canonical quantities), the pod's QoS class and the Go renderings of
//! immutable-field errors.

use serde_json::{json, Map, Value};

use crate::error::Cause;
use crate::resources::Resource;

use crate::subresource::Subresource;

/// RFC 3339 timestamp with seconds, as Kubernetes writes `metav1.Time`.
pub use skiff_meta::time::now as now_rfc3339;

/// A random version-4 UUID.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Fall back to the clock: uniqueness, not secrecy, is what a uid needs.
        let n = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five random characters from the alphabet `generateName` uses.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

pub(crate) use skiff_meta::object::obj_mut;

/// Sets `map[key]` to `value` unless it holds something other than null.
pub(crate) fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// Sets server-owned metadata and defaults on an object about to be created. `name` and
/// `namespace` are already final.
pub fn prepare_for_create(res: &Resource, obj: &mut Value) {
    let strategy = crate::kinds::of(res);
    let meta = obj_mut(obj, "metadata");
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for k in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(k);
    }
    if res.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if res.status {
        strategy.reset_status(obj);
    }
    strategy.defaults(obj);
    status_defaults(res, obj);
    strategy.prepare_create(obj);
}

/// Fills in the status fields kube-apiserver always serializes (required in the OpenAPI
/// schema, or non-pointer fields without `omitempty` in the Go types), on create and on
/// every status write.
pub fn status_defaults(res: &Resource, obj: &mut Value) {
    if res.status {
        crate::kinds::of(res).status_defaults(obj);
    }
}

/// Zero in each of `fields` of `obj`'s status that no controller has set yet: what a
/// typed client insists on finding.
pub(crate) fn zero_status(obj: &mut Value, fields: &[&str]) {
    let status = obj_mut(obj, "status");
    for f in fields {
        default(status, f, json!(0));
    }
}

/// Sets one label of `obj`.
pub(crate) fn set_label(obj: &mut Value, key: &str, value: Value) {
    let meta = obj_mut(obj, "metadata");
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta.insert("labels".into(), json!({}));
    }
    if let Some(Value::Object(labels)) = meta.get_mut("labels") {
        labels.insert(key.into(), value);
    }
}

/// Defaults of the kind of `res`, as the real server applies them (also on update).
pub fn apply_defaults(res: &Resource, obj: &mut Value) {
    crate::kinds::of(res).defaults(obj);
}

/// PodSpec defaults of the pod template at `template` (workloads).
pub(crate) fn template_defaults(template: Option<&mut Value>) {
    if let Some(spec) = template
        .and_then(|t| t.get_mut("spec"))
        .filter(|s| s.is_object())
    {
        pod_spec_defaults(spec, false);
    }
}

/// PodSpec defaults (`is_pod`: defaults only real pods get, not templates).
pub(crate) fn pod_spec_defaults(spec: &mut Value, is_pod: bool) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    default(s, "restartPolicy", json!("Always"));
    default(s, "dnsPolicy", json!("ClusterFirst"));
    default(s, "terminationGracePeriodSeconds", json!(30));
    default(s, "schedulerName", json!("default-scheduler"));
    default(s, "securityContext", json!({}));
    if is_pod {
        default(s, "enableServiceLinks", json!(true));
        let mut tolerations = s
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !tolerations
                .iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
            {
                tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
        s.insert("tolerations".into(), Value::Array(tolerations));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = s.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                for part in ["limits", "requests"] {
                    if let Some(Value::Object(m)) =
                        c.get_mut("resources").and_then(|r| r.get_mut(part))
                    {
                        crate::quantity::canonicalize_map(m);
                    }
                }
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                default(c, "imagePullPolicy", json!(default_pull_policy(image)));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Canonicalizes the quantity maps of kinds that carry them outside pod specs.
pub(crate) fn canonical_quantities(obj: &mut Value, pointers: &[&str]) {
    for p in pointers {
        if let Some(Value::Object(m)) = obj.pointer_mut(p) {
            crate::quantity::canonicalize_map(m);
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests included).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The pod's QoS class from its containers' requests and limits (`qos.GetPodQOS`): only
/// non-zero cpu and memory count; a request not given is the limit (the API default);
/// Guaranteed when every container limits both and the summed requests equal the
/// summed limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut requests: std::collections::BTreeMap<&str, i128> = Default::default();
    let mut limits: std::collections::BTreeMap<&str, i128> = Default::default();
    let mut guaranteed = true;
    let amount = |c: &Value, part: &str, r: &str| {
        c.pointer(&format!("/resources/{part}/{r}"))
            .and_then(Value::as_str)
            .and_then(crate::quantity::milli_value)
            .filter(|v| *v > 0)
    };
    for list in ["containers", "initContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut limited = 0;
            for r in ["cpu", "memory"] {
                let limit = amount(c, "limits", r);
                let request = if c.pointer(&format!("/resources/requests/{r}")).is_some() {
                    amount(c, "requests", r)
                } else {
                    limit
                };
                if let Some(v) = request {
                    *requests.entry(r).or_default() += v;
                }
                if let Some(v) = limit {
                    *limits.entry(r).or_default() += v;
                    limited += 1;
                }
            }
            if limited < 2 {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Carries server-owned state from `old` into `new` for an update of `sub`.
pub fn prepare_for_update(res: &Resource, old: &Value, new: &mut Value, sub: Subresource) {
    match sub {
        Subresource::Main => {}
        Subresource::Status => {
            sub.carry_over(old, new);
            status_defaults(res, new);
            return;
        }
        Subresource::EphemeralContainers => {
            sub.carry_over(old, new);
            apply_defaults(res, new);
            return;
        }
        Subresource::Finalize | Subresource::Binding => {
            sub.carry_over(old, new);
            return;
        }
    }
    // Server-owned metadata.
    let strategy = crate::kinds::of(res);
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let meta = obj_mut(new, "metadata");
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(k) {
            Some(v) => meta.insert(k.into(), v.clone()),
            None => meta.remove(k),
        };
    }
    meta.remove("selfLink");
    if res.status {
        strategy.keep_status(old, new);
    }
    strategy.prepare_update(old, new);
    apply_defaults(res, new);
    if res.generation {
        let changed = spec_of(old) != spec_of(new);
        let gen = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        obj_mut(new, "metadata").insert(
            "generation".into(),
            json!(if changed { gen + 1 } else { gen }),
        );
    }
}

/// Everything but metadata and status: what a generation counts changes of.
fn spec_of(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

/// Rules only a create checks.
pub fn validate_create(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    crate::kinds::of(res).validate_create(obj, &mut causes);
    causes
}

/// Immutable-field rules of an update (after [`prepare_for_update`]).
pub fn validate_update(res: &Resource, old: &Value, new: &Value, sub: Subresource) -> Vec<Cause> {
    let mut causes = Vec::new();
    if sub != Subresource::Main {
        sub.validate_update(old, new, &mut causes);
        return causes;
    }
    crate::kinds::of(res).validate_update(old, new, &mut causes);
    causes
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
            let values = if values.is_empty() {
                "[]string(nil)".to_string()
            } else {
                format!("[]string{{{}}}", values.join(", "))
            };
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
        crate::validation::go_string_map(&labels)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn pod_defaults() {
        let res = lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox:1.36"}]}});
        prepare_for_create(res, &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        assert_eq!(pod["metadata"]["uid"].as_str().map(str::len), Some(36));
    }

    #[test]
    fn status_writes_keep_the_fields_go_always_writes() {
        let res = lookup("apps", "v1", "daemonsets").unwrap();
        let mut old = json!({"metadata": {"name": "d"}, "spec": {}});
        prepare_for_create(res, &mut old);
        assert_eq!(
            old["status"],
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0})
        );
        let mut new = old.clone();
        new["status"] = json!({"numberReady": 2, "observedGeneration": 1});
        prepare_for_update(res, &old, &mut new, Subresource::Status);
        assert_eq!(
            new["status"],
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 2, "observedGeneration": 1})
        );
        let node = lookup("", "v1", "nodes").unwrap();
        let mut n =
            json!({"metadata": {"name": "n"}, "status": {"nodeInfo": {"kubeletVersion": "v1"}}});
        prepare_for_create(node, &mut n);
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1");
        assert_eq!(n["status"]["nodeInfo"]["bootID"], "");
        assert_eq!(
            n["status"]["daemonEndpoints"],
            json!({"kubeletEndpoint": {"Port": 0}})
        );
    }

    #[test]
    fn generation_bumps_on_spec_change_only() {
        let res = lookup("apps", "v1", "deployments").unwrap();
        let mut old = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        prepare_for_create(res, &mut old);
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        prepare_for_update(res, &old, &mut labelled, Subresource::Main);
        assert_eq!(labelled["metadata"]["generation"], 1);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["status"] = json!({"replicas": 9});
        prepare_for_update(res, &old, &mut scaled, Subresource::Main);
        assert_eq!(scaled["metadata"]["generation"], 2);
        assert_eq!(scaled["status"], json!({}));
    }

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/nginx:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }
}
