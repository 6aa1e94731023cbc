//! Per-kind behaviour of the generic store (kube-apiserver's "strategies"): server-set
//! metadata, defaults, the spec/status split, generation, immutable fields.

use serde_json::{json, Map, Value};

use crate::error::Cause;
use crate::resources::Resource;

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
    /// `namespaces/{name}/finalize`: only `spec.finalizers` changes.
    Finalize,
    /// `pods/{name}/binding`: only `spec.nodeName` changes.
    Binding,
    /// `pods/{name}/ephemeralcontainers`: only `spec.ephemeralContainers` changes.
    EphemeralContainers,
}

impl Subresource {
    /// The subresource a PUT, PATCH or apply on `sub` writes.
    pub fn of_update(sub: Option<&str>) -> Subresource {
        match sub {
            Some("status") => Subresource::Status,
            Some("finalize") => Subresource::Finalize,
            Some("ephemeralcontainers") => Subresource::EphemeralContainers,
            _ => Subresource::Main,
        }
    }

    /// The name managed fields record for writes through this subresource.
    pub fn managed_name(self) -> Option<&'static str> {
        match self {
            Subresource::Status => Some("status"),
            Subresource::EphemeralContainers => Some("ephemeralcontainers"),
            _ => None,
        }
    }
}

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

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    match v.get_mut(key) {
        Some(Value::Object(m)) => m,
        _ => unreachable!("just set to an object"),
    }
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// Sets server-owned metadata and defaults on an object about to be created. `name` and
/// `namespace` are already final.
pub fn prepare_for_create(res: &Resource, obj: &mut Value) {
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
    if res.status && !matches!(res.kind, "Node") {
        obj["status"] = json!({});
    }
    apply_defaults(res, obj);
    status_defaults(res, obj);
    match res.kind {
        "Pod" => {
            let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "Namespace" => {
            let name = obj
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null);
            set_label(obj, "kubernetes.io/metadata.name", name);
            obj["status"] = json!({"phase": "Active"});
        }
        "Service" => obj["status"] = json!({"loadBalancer": {}}),
        "PersistentVolumeClaim" | "PersistentVolume" => obj["status"] = json!({"phase": "Pending"}),
        _ => {}
    }
}

/// The fields of each kind's status kube-apiserver always writes (required in the
/// OpenAPI schema, or non-pointer fields without `omitempty` in the Go types), zero
/// when no controller has set them yet: what a typed client insists on finding.
const STATUS_ZEROES: &[(&str, &[&str])] = &[
    (
        "DaemonSet",
        &[
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
        ],
    ),
    ("ReplicaSet", &["replicas"]),
    ("ReplicationController", &["replicas"]),
    ("StatefulSet", &["replicas", "availableReplicas"]),
    (
        "PodDisruptionBudget",
        &[
            "disruptionsAllowed",
            "currentHealthy",
            "desiredHealthy",
            "expectedPods",
        ],
    ),
    ("HorizontalPodAutoscaler", &["desiredReplicas"]),
];

/// The string fields of a Node's `status.nodeInfo` (all required).
const NODE_INFO: &[&str] = &[
    "machineID",
    "systemUUID",
    "bootID",
    "kernelVersion",
    "osImage",
    "containerRuntimeVersion",
    "kubeletVersion",
    "kubeProxyVersion",
    "operatingSystem",
    "architecture",
];

/// Fills in the status fields kube-apiserver always serializes (see [`STATUS_ZEROES`]),
/// on create and on every status write.
pub fn status_defaults(res: &Resource, obj: &mut Value) {
    if !res.status {
        return;
    }
    if let Some((_, fields)) = STATUS_ZEROES.iter().find(|(k, _)| *k == res.kind) {
        let status = obj_mut(obj, "status");
        for f in *fields {
            default(status, f, json!(0));
        }
        return;
    }
    match res.kind {
        // Structs without `omitempty`'s effect in Go: always there, if empty.
        "Ingress" => default(obj_mut(obj, "status"), "loadBalancer", json!({})),
        "Node" => {
            let status = obj_mut(obj, "status");
            default(status, "daemonEndpoints", json!({}));
            if let Some(Value::Object(d)) = status.get_mut("daemonEndpoints") {
                default(d, "kubeletEndpoint", json!({}));
                if let Some(Value::Object(k)) = d.get_mut("kubeletEndpoint") {
                    default(k, "Port", json!(0));
                }
            }
            default(status, "nodeInfo", json!({}));
            if let Some(Value::Object(info)) = status.get_mut("nodeInfo") {
                for f in NODE_INFO {
                    default(info, f, json!(""));
                }
            }
        }
        _ => {}
    }
}

fn set_label(obj: &mut Value, key: &str, value: Value) {
    let meta = obj_mut(obj, "metadata");
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta.insert("labels".into(), json!({}));
    }
    if let Some(Value::Object(labels)) = meta.get_mut("labels") {
        labels.insert(key.into(), value);
    }
}

/// Defaults of the built-in kinds, as the real server applies them (also on update).
pub fn apply_defaults(res: &Resource, obj: &mut Value) {
    match res.kind {
        "Event" if res.group.is_empty() => crate::convert::core_event_defaults(obj),
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                pod_spec_defaults(spec, true);
            }
        }
        "Deployment" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "strategy", json!({}));
            if let Some(Value::Object(strategy)) = spec.get_mut("strategy") {
                default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    default(strategy, "rollingUpdate", json!({}));
                    if let Some(Value::Object(ru)) = strategy.get_mut("rollingUpdate") {
                        default(ru, "maxUnavailable", json!("25%"));
                        default(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            template_defaults(obj.pointer_mut("/spec/template"));
        }
        "ReplicaSet" => {
            default(obj_mut(obj, "spec"), "replicas", json!(1));
            template_defaults(obj.pointer_mut("/spec/template"));
        }
        "ReplicationController" => {
            // An empty selector, and empty labels, are the template's labels
            // (SetDefaults_ReplicationController).
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
                .cloned();
            if let Some(labels) = labels {
                let empty = |v: Option<&Value>| {
                    v.is_none_or(|v| v.as_object().is_none_or(|m| m.is_empty()))
                };
                if empty(obj.pointer("/spec/selector")) {
                    obj_mut(obj, "spec").insert("selector".into(), labels.clone());
                }
                if empty(obj.pointer("/metadata/labels")) {
                    obj_mut(obj, "metadata").insert("labels".into(), labels);
                }
            }
            default(obj_mut(obj, "spec"), "replicas", json!(1));
            template_defaults(obj.pointer_mut("/spec/template"));
        }
        "StatefulSet" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            template_defaults(obj.pointer_mut("/spec/template"));
        }
        "DaemonSet" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            template_defaults(obj.pointer_mut("/spec/template"));
        }
        "Job" => {
            job_defaults(obj);
        }
        "CronJob" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            template_defaults(obj.pointer_mut("/spec/jobTemplate/spec/template"));
        }
        "Service" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
                default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        default(p, "targetPort", port);
                    }
                }
            }
        }
        "Secret" => {
            if obj.get("type").is_none_or(Value::is_null) {
                obj["type"] = json!("Opaque");
            }
            // stringData is write-only: merged into data (base64) and dropped.
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                use base64::Engine;
                let data = obj_mut(obj, "data");
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
            }
        }
        "Namespace" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "finalizers", json!(["kubernetes"]));
        }
        "PersistentVolumeClaim" => {
            default(obj_mut(obj, "spec"), "volumeMode", json!("Filesystem"));
            canonical_quantities(
                obj,
                &[
                    "/spec/resources/requests",
                    "/spec/resources/limits",
                    "/status/capacity",
                ],
            )
        }
        "PersistentVolume" => {
            let spec = obj_mut(obj, "spec");
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default(spec, "volumeMode", json!("Filesystem"));
            canonical_quantities(obj, &["/spec/capacity"])
        }
        "ResourceQuota" => {
            canonical_quantities(obj, &["/spec/hard", "/status/hard", "/status/used"])
        }
        "LimitRange" => limit_range_defaults(obj),
        "Node" => canonical_quantities(obj, &["/status/capacity", "/status/allocatable"]),
        "PriorityClass" if obj.get("preemptionPolicy").is_none_or(Value::is_null) => {
            obj["preemptionPolicy"] = json!("PreemptLowerPriority");
        }
        "StorageClass" => {
            if obj.get("reclaimPolicy").is_none_or(Value::is_null) {
                obj["reclaimPolicy"] = json!("Delete");
            }
            if obj.get("volumeBindingMode").is_none_or(Value::is_null) {
                obj["volumeBindingMode"] = json!("Immediate");
            }
        }
        _ => {}
    }
}

/// `SetDefaults_LimitRangeItem`: a Container item's default limit is its max, its default
/// request the default limit, else the min; quantities canonical.
fn limit_range_defaults(obj: &mut Value) {
    let Some(Value::Array(items)) = obj.pointer_mut("/spec/limits") else {
        return;
    };
    for item in items.iter_mut().filter(|i| i.is_object()) {
        for f in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            if let Some(Value::Object(m)) = item.get_mut(f) {
                crate::quantity::canonicalize_map(m);
            }
        }
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |item: &Value, f: &str| item.get(f).and_then(Value::as_object).cloned();
        let max = get(item, "max").unwrap_or_default();
        let min = get(item, "min").unwrap_or_default();
        let mut default = get(item, "default").unwrap_or_default();
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut request = get(item, "defaultRequest").unwrap_or_default();
        for (k, v) in default.iter().chain(min.iter()) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !request.is_empty() {
            item["defaultRequest"] = Value::Object(request);
        }
    }
}

fn template_defaults(template: Option<&mut Value>) {
    if let Some(spec) = template
        .and_then(|t| t.get_mut("spec"))
        .filter(|s| s.is_object())
    {
        pod_spec_defaults(spec, false);
    }
}

fn job_defaults(obj: &mut Value) {
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let spec = obj_mut(obj, "spec");
    default(spec, "parallelism", json!(1));
    if spec.get("completions").is_none() && spec.get("parallelism").is_some() {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && !uid.is_null() && spec.get("selector").is_none() {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
        if let Some(t) = spec.get_mut("template").filter(|t| t.is_object()) {
            let tmeta = obj_mut(t, "metadata");
            if !tmeta.get("labels").is_some_and(Value::is_object) {
                tmeta.insert("labels".into(), json!({}));
            }
        }
        if let Some(Value::Object(labels)) = obj.pointer_mut("/spec/template/metadata/labels") {
            labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
            labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
            labels.insert("controller-uid".into(), uid);
            labels.insert("job-name".into(), name);
        }
    }
    template_defaults(obj.pointer_mut("/spec/template"));
}

/// PodSpec defaults (`is_pod`: defaults only real pods get, not templates).
fn pod_spec_defaults(spec: &mut Value, is_pod: bool) {
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
fn canonical_quantities(obj: &mut Value, pointers: &[&str]) {
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
    if sub == Subresource::Finalize {
        let finalizers = new
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        *new = old.clone();
        obj_mut(new, "spec").insert("finalizers".into(), finalizers);
        return;
    }
    if sub == Subresource::Binding {
        let node = new
            .pointer("/spec/nodeName")
            .cloned()
            .unwrap_or(Value::Null);
        *new = old.clone();
        obj_mut(new, "spec").insert("nodeName".into(), node);
        return;
    }
    if sub == Subresource::Status {
        let status = new.get("status").cloned().unwrap_or(json!({}));
        *new = old.clone();
        new["status"] = status;
        status_defaults(res, new);
        return;
    }
    if sub == Subresource::EphemeralContainers {
        let list = new
            .pointer("/spec/ephemeralContainers")
            .cloned()
            .unwrap_or(Value::Null);
        *new = old.clone();
        let spec = obj_mut(new, "spec");
        if list.is_null() {
            spec.remove("ephemeralContainers");
        } else {
            spec.insert("ephemeralContainers".into(), list);
        }
        apply_defaults(res, new);
        return;
    }
    // Server-owned metadata.
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
    if res.status && res.kind != "Namespace" {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    match res.kind {
        "Namespace" => {
            // spec.finalizers change only through /finalize; the phase is the server's.
            if let Some(s) = old.get("spec") {
                new["spec"] = s.clone();
            }
            if let Some(s) = old.get("status") {
                new["status"] = s.clone();
            }
            let name = old
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null);
            set_label(new, "kubernetes.io/metadata.name", name);
        }
        "Service" => {
            // Allocated values survive an update that leaves them empty.
            for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                let empty = new
                    .pointer(&format!("/spec/{field}"))
                    .is_none_or(|v| v.is_null() || v == "" || v == &json!([]));
                if empty {
                    if let Some(v) = old.pointer(&format!("/spec/{field}")) {
                        obj_mut(new, "spec").insert(field.into(), v.clone());
                    }
                }
            }
            // A client that changed only clusterIP changed the first of clusterIPs
            // (kube-apiserver's normalizeClusterIPs); validation then refuses it.
            let ip = new.pointer("/spec/clusterIP").cloned();
            if ip.is_some()
                && ip.as_ref() != old.pointer("/spec/clusterIP")
                && new.pointer("/spec/clusterIPs") == old.pointer("/spec/clusterIPs")
            {
                if let (Some(ip), Some(first)) = (ip, new.pointer_mut("/spec/clusterIPs/0")) {
                    *first = ip;
                }
            }
            // Node ports too, matched by port number and protocol.
            let old_ports = old
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
                for p in ports
                    .iter_mut()
                    .filter(|p| p.get("nodePort").is_none_or(Value::is_null))
                {
                    let same = old_ports.iter().find(|o| {
                        o.get("port") == p.get("port")
                            && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                                == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    });
                    if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                        p["nodePort"] = np.clone();
                    }
                }
            }
        }
        "Job" if new.pointer("/spec/selector").is_none() => {
            if let Some(sel) = old.pointer("/spec/selector") {
                obj_mut(new, "spec").insert("selector".into(), sel.clone());
            }
        }
        _ => {}
    }
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
    if res.kind == "Pod"
        && obj
            .pointer("/spec/ephemeralContainers")
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
    {
        causes.push(Cause::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    causes
}

/// Immutable-field rules of an update (after [`prepare_for_update`]).
pub fn validate_update(res: &Resource, old: &Value, new: &Value, sub: Subresource) -> Vec<Cause> {
    let mut causes = Vec::new();
    if sub == Subresource::EphemeralContainers {
        // Ephemeral containers may be added, never changed or removed.
        let list = |o: &Value| {
            o.pointer("/spec/ephemeralContainers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let now = list(new);
        for was in list(old) {
            let name = was.get("name").and_then(Value::as_str).unwrap_or_default();
            let message = match now.iter().find(|c| c.get("name") == was.get("name")) {
                None => format!("existing ephemeral containers {name:?} may not be removed"),
                Some(c) if c != &was => {
                    format!("existing ephemeral containers {name:?} may not be changed")
                }
                Some(_) => continue,
            };
            causes.push(Cause::forbidden("spec.ephemeralContainers", &message));
        }
        return causes;
    }
    if sub != Subresource::Main {
        return causes;
    }
    let immutable = |path: &str, causes: &mut Vec<Cause>| {
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
    };
    match res.kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            if old.pointer("/spec/selector") != new.pointer("/spec/selector") {
                causes.push(crate::validation::invalid_raw(
                    "spec.selector",
                    &go_label_selector(new.pointer("/spec/selector")),
                    "field is immutable",
                ));
            }
            if res.kind == "StatefulSet" {
                let rest = |o: &Value| {
                    let mut spec = o.get("spec").cloned().unwrap_or(Value::Null);
                    if let Some(m) = spec.as_object_mut() {
                        for k in [
                            "replicas",
                            "ordinals",
                            "template",
                            "updateStrategy",
                            "persistentVolumeClaimRetentionPolicy",
                            "minReadySeconds",
                            "selector",
                        ] {
                            m.remove(k);
                        }
                    }
                    spec
                };
                if rest(old) != rest(new) {
                    causes.push(Cause::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
                }
            }
        }
        "RoleBinding" | "ClusterRoleBinding" if old.get("roleRef") != new.get("roleRef") => {
            let field = |k: &str| {
                json!(new
                    .pointer(&format!("/roleRef/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or(""))
                .to_string()
            };
            causes.push(crate::validation::invalid_raw(
                "roleRef",
                &format!(
                    "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                    field("apiGroup"),
                    field("kind"),
                    field("name")
                ),
                "cannot change roleRef",
            ));
        }
        "Job" => {
            immutable("spec.selector", &mut causes);
            immutable("spec.completions", &mut causes);
        }
        "ConfigMap" | "Secret" => {
            if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                for f in ["data", "binaryData", "immutable"] {
                    if old.get(f) != new.get(f) {
                        causes.push(Cause::forbidden(
                            f,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
            if res.kind == "Secret" {
                immutable("type", &mut causes);
            }
        }
        "Service" => {
            // kube-apiserver's validateUpgradeDowngradeClusterIPs: the primary cluster IP
            // stays (unless the Service becomes or stops being ExternalName).
            let ty = |o: &Value| {
                o.pointer("/spec/type")
                    .and_then(Value::as_str)
                    .unwrap_or("ClusterIP")
                    .to_string()
            };
            let ips = |o: &Value| -> Vec<String> {
                o.pointer("/spec/clusterIPs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            };
            let go_list = |l: &[String]| {
                let quoted: Vec<String> = l.iter().map(|s| json!(s).to_string()).collect();
                format!("[]string{{{}}}", quoted.join(", "))
            };
            let (was, now) = (ips(old), ips(new));
            if ty(old) != "ExternalName" && ty(new) != "ExternalName" {
                if let (Some(a), Some(b)) = (was.first(), now.first()) {
                    if a != b {
                        causes.push(crate::validation::invalid_raw(
                            "spec.clusterIPs[0]",
                            &go_list(&now),
                            "may not change once set",
                        ));
                    }
                }
                let ip = new.pointer("/spec/clusterIP").and_then(Value::as_str);
                if now.first().is_some_and(|first| Some(first.as_str()) != ip) {
                    causes.push(crate::validation::invalid_raw(
                        "spec.clusterIPs",
                        &go_list(&now),
                        "first value must match `clusterIP`",
                    ));
                }
            }
        }
        "PersistentVolumeClaim" => {
            // kube-apiserver's ValidatePersistentVolumeClaimUpdate: a claim's spec is fixed
            // once created, except binding (volumeName, once), a storage class on a claim
            // that had none (retroactive default class), volumeAttributesClassName, and a
            // bound claim's storage request (expansion only).
            let bound = old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
            let spec_of = |o: &Value| o.get("spec").cloned().unwrap_or(Value::Null);
            let (mut was, mut now) = (spec_of(old), spec_of(new));
            if let (Some(w), Some(n)) = (was.as_object_mut(), now.as_object_mut()) {
                w.remove("volumeAttributesClassName");
                n.remove("volumeAttributesClassName");
                if w.get("volumeName")
                    .is_none_or(|v| v.as_str().unwrap_or("").is_empty())
                {
                    w.remove("volumeName");
                    n.remove("volumeName");
                }
                // Claims stored before volumeMode was defaulted get it on their next write.
                if w.get("volumeMode").is_none() {
                    n.remove("volumeMode");
                }
                if w.get("storageClassName").is_none_or(Value::is_null) && !bound {
                    w.remove("storageClassName");
                    n.remove("storageClassName");
                }
                if bound {
                    for m in [&mut *w, &mut *n] {
                        if let Some(r) = m
                            .get_mut("resources")
                            .and_then(|r| r.get_mut("requests"))
                            .and_then(Value::as_object_mut)
                        {
                            r.remove("storage");
                        }
                    }
                }
            }
            if was != now {
                causes.push(Cause::forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                ));
            }
            let storage = |o: &Value| {
                o.pointer("/spec/resources/requests/storage")
                    .and_then(Value::as_str)
                    .and_then(crate::quantity::milli_value)
            };
            if let (Some(before), Some(after)) = (storage(old), storage(new)) {
                if after < before {
                    causes.push(Cause::forbidden(
                        "spec.resources.requests.storage",
                        "field can not be less than previous value",
                    ));
                }
            }
        }
        "ResourceQuota" => {
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
                let value = if list.is_empty() {
                    "[]core.ResourceQuotaScope(nil)".to_string()
                } else {
                    format!("[]core.ResourceQuotaScope{{{}}}", list.join(", "))
                };
                causes.push(crate::validation::invalid_raw(
                    "spec.scopes",
                    &value,
                    "field is immutable",
                ));
            }
        }
        "Pod" => {
            let strip = |spec: Option<&Value>| {
                let mut s = spec.cloned().unwrap_or(Value::Null);
                for list in ["containers", "initContainers"] {
                    if let Some(Value::Array(cs)) = s.get_mut(list) {
                        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                            c.remove("image");
                        }
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    for k in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                    ] {
                        m.remove(k);
                    }
                }
                s
            };
            if strip(old.get("spec")) != strip(new.get("spec")) {
                causes.push(Cause::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        _ => {}
    }
    causes
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
