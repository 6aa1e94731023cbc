//! Server-side printing: `meta.k8s.io/v1` Tables with the columns the real kube-apiserver
//! prints for each kind (priority 1 columns are the `-o wide` ones).

use serde_json::{json, Value};

/// Whether rows carry the object, its metadata, or nothing (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

type Col = (&'static str, &'static str, &'static str, u8);

const NAME: Col = ("Name", "string", "name", 0);
const AGE: Col = ("Age", "date", "", 0);
const CONTAINERS: Col = ("Containers", "string", "", 1);
const IMAGES: Col = ("Images", "string", "", 1);
const SELECTOR: Col = ("Selector", "string", "", 1);

fn columns(kind: &str) -> Vec<Col> {
    match kind {
        "Pod" => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ],
        "Deployment" => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "ReplicaSet" | "ReplicationController" => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "StatefulSet" => vec![NAME, ("Ready", "string", "", 0), AGE, CONTAINERS, IMAGES],
        "DaemonSet" => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Node Selector", "string", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE,
            SELECTOR,
        ],
        "Node" => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE,
            ("Version", "string", "", 0),
            ("Internal-IP", "string", "", 1),
            ("External-IP", "string", "", 1),
            ("OS-Image", "string", "", 1),
            ("Kernel-Version", "string", "", 1),
            ("Container-Runtime", "string", "", 1),
        ],
        "Namespace" => vec![NAME, ("Status", "string", "", 0), AGE],
        "ConfigMap" => vec![NAME, ("Data", "string", "", 0), AGE],
        "Secret" => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Data", "string", "", 0),
            AGE,
        ],
        "ServiceAccount" => vec![NAME, ("Secrets", "string", "", 0), AGE],
        "Endpoints" => vec![NAME, ("Endpoints", "string", "", 0), AGE],
        "Event" => vec![
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Subobject", "string", "", 1),
            ("Source", "string", "", 1),
            ("Message", "string", "", 0),
            ("First Seen", "string", "", 1),
            ("Count", "string", "", 1),
            ("Name", "string", "", 1),
        ],
        "Job" => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Completions", "string", "", 0),
            ("Duration", "string", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "CronJob" => vec![
            NAME,
            ("Schedule", "string", "", 0),
            ("Timezone", "string", "", 0),
            ("Suspend", "boolean", "", 0),
            ("Active", "integer", "", 0),
            ("Last Schedule", "string", "", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Lease" => vec![NAME, ("Holder", "string", "", 0), AGE],
        "Ingress" => vec![
            NAME,
            ("Class", "string", "", 0),
            ("Hosts", "string", "", 0),
            ("Address", "string", "", 0),
            ("Ports", "string", "", 0),
            AGE,
        ],
        "IngressClass" => vec![
            NAME,
            ("Controller", "string", "", 0),
            ("Parameters", "string", "", 0),
            AGE,
        ],
        "PodDisruptionBudget" => vec![
            NAME,
            ("Min Available", "string", "", 0),
            ("Max Unavailable", "string", "", 0),
            ("Allowed Disruptions", "integer", "", 0),
            AGE,
        ],
        "ResourceQuota" => vec![
            NAME,
            AGE,
            ("Request", "string", "", 0),
            ("Limit", "string", "", 0),
        ],
        "Role" | "ClusterRole" | "LimitRange" => vec![NAME, ("Created At", "date", "", 0)],
        "RoleBinding" | "ClusterRoleBinding" => vec![
            NAME,
            ("Role", "string", "", 0),
            AGE,
            ("Users", "string", "", 1),
            ("Groups", "string", "", 1),
            ("ServiceAccounts", "string", "", 1),
        ],
        "NetworkPolicy" => vec![NAME, ("Pod-Selector", "string", "", 0), AGE],
        "ControllerRevision" => vec![
            NAME,
            ("Controller", "string", "", 0),
            ("Revision", "integer", "", 0),
            AGE,
        ],
        "PersistentVolume" => vec![
            NAME,
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("Reclaim Policy", "string", "", 0),
            ("Status", "string", "", 0),
            ("Claim", "string", "", 0),
            ("StorageClass", "string", "", 0),
            ("VolumeAttributesClass", "string", "", 0),
            ("Reason", "string", "", 0),
            AGE,
            ("VolumeMode", "string", "", 1),
        ],
        "EndpointSlice" => vec![
            NAME,
            ("AddressType", "string", "", 0),
            ("Ports", "string", "", 0),
            ("Endpoints", "string", "", 0),
            AGE,
        ],
        "PriorityClass" => vec![
            NAME,
            ("Value", "integer", "", 0),
            ("Global-Default", "boolean", "", 0),
            AGE,
            ("PreemptionPolicy", "string", "", 0),
        ],
        "StorageClass" => vec![
            NAME,
            ("Provisioner", "string", "", 0),
            ("ReclaimPolicy", "string", "", 0),
            ("VolumeBindingMode", "string", "", 0),
            ("AllowVolumeExpansion", "string", "", 0),
            AGE,
        ],
        "PersistentVolumeClaim" => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Volume", "string", "", 0),
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("StorageClass", "string", "", 0),
            ("VolumeAttributesClass", "string", "", 0),
            AGE,
            ("VolumeMode", "string", "", 1),
        ],
        "CertificateSigningRequest" => vec![
            NAME,
            AGE,
            ("SignerName", "string", "", 0),
            ("Requestor", "string", "", 0),
            ("RequestedDuration", "string", "", 0),
            ("Condition", "string", "", 0),
        ],
        _ => vec![NAME, AGE],
    }
}

/// The column definitions of `kind`'s table.
pub fn column_definitions(kind: &str) -> Vec<Value> {
    columns(kind)
        .into_iter()
        .map(|(name, ty, format, priority)| {
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect()
}

/// k8s's `duration.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{dy}d")
        };
    }
    format!("{years}y")
}

fn since(ts: Option<&Value>) -> String {
    match ts
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => human_duration(chrono::Utc::now().signed_duration_since(t)),
        None => "<unknown>".into(),
    }
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

fn join_names(list: Option<&Value>, field: &str) -> String {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| c.get(field).and_then(Value::as_str).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A label selector object as its string form (`<none>` for none).
pub(crate) fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts = Vec::new();
    let labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .or_else(|| {
            // A plain map selector (services, replication controllers).
            if sel.get("matchExpressions").is_none() {
                sel.as_object()
            } else {
                None
            }
        });
    for (k, v) in labels.into_iter().flatten() {
        parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values = join_names_plain(e.get("values"));
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({values})")),
            "NotIn" => parts.push(format!("{key} notin ({values})")),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    or_none(parts.join(","))
}

fn join_names_plain(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn count(obj: &Value, field: &str) -> usize {
    obj.get(field)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "/status/phase").to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    // Init containers first, as kubectl's printPod: the first one not done says why.
    let inits = pod
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total_inits = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut initializing = false;
    for (n, c) in inits.iter().enumerate() {
        let terminated = c.pointer("/state/terminated");
        let waiting = s(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| i(t, "/exitCode") == 0) {
            continue;
        }
        reason = if let Some(t) = terminated {
            match t.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.get("signal").and_then(Value::as_i64) {
                    Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                    _ => format!("Init:ExitCode:{}", i(t, "/exitCode")),
                },
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{n}/{total_inits}")
        };
        initializing = true;
        break;
    }
    let initialized = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True")
        });
    let mut has_running = false;
    let statuses = if initializing && !initialized {
        None
    } else {
        pod.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
    };
    if let Some(statuses) = statuses {
        for c in statuses.iter().rev() {
            let waiting = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match t.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match t.get("signal").and_then(Value::as_i64) {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!("ExitCode:{}", i(t, "/exitCode")),
                    },
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
            }
        }
    }
    if reason == "Completed" && has_running {
        reason = "Running".into();
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if s(pod, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    let age = json!(since(o.pointer("/metadata/creationTimestamp")));
    let containers = |p: &str| json!(or_none(join_names(o.pointer(p), "name")));
    let images = |p: &str| json!(or_none(join_names(o.pointer(p), "image")));
    match kind {
        "Pod" => {
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let ready = statuses.map_or(0, |a| {
                a.iter()
                    .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                    .count()
            });
            let restarts: i64 =
                statuses.map_or(0, |a| a.iter().map(|c| i(c, "/restartCount")).sum());
            let gates = o
                .pointer("/spec/readinessGates")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                age,
                json!(or_none(s(o, "/status/podIP").into())),
                json!(or_none(s(o, "/spec/nodeName").into())),
                json!(or_none(s(o, "/status/nominatedNodeName").into())),
                json!(if gates == 0 {
                    "<none>".to_string()
                } else {
                    format!("0/{gates}")
                }),
            ]
        }
        "Deployment" => vec![
            name,
            json!(format!(
                "{}/{}",
                i(o, "/status/readyReplicas"),
                i(o, "/spec/replicas")
            )),
            json!(i(o, "/status/updatedReplicas")),
            json!(i(o, "/status/availableReplicas")),
            age,
            containers("/spec/template/spec/containers"),
            images("/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ],
        "ReplicaSet" | "ReplicationController" => vec![
            name,
            json!(i(o, "/spec/replicas")),
            json!(i(o, "/status/replicas")),
            json!(i(o, "/status/readyReplicas")),
            age,
            containers("/spec/template/spec/containers"),
            images("/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ],
        "StatefulSet" => vec![
            name,
            json!(format!(
                "{}/{}",
                i(o, "/status/readyReplicas"),
                i(o, "/spec/replicas")
            )),
            age,
            containers("/spec/template/spec/containers"),
            images("/spec/template/spec/containers"),
        ],
        "DaemonSet" => vec![
            name,
            json!(i(o, "/status/desiredNumberScheduled")),
            json!(i(o, "/status/currentNumberScheduled")),
            json!(i(o, "/status/numberReady")),
            json!(i(o, "/status/updatedNumberScheduled")),
            json!(i(o, "/status/numberAvailable")),
            json!(selector_string(
                o.pointer("/spec/template/spec/nodeSelector")
            )),
            age,
            containers("/spec/template/spec/containers"),
            images("/spec/template/spec/containers"),
            json!(selector_string(o.pointer("/spec/selector"))),
        ],
        "Service" => {
            let ty = s(o, "/spec/type");
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = i(p, "/port");
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort").and_then(Value::as_i64) {
                                Some(np) => format!("{port}:{np}/{proto}"),
                                None => format!("{port}/{proto}"),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let mut external: Vec<String> = o
                .pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            for ing in o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let v = ing
                    .get("ip")
                    .or(ing.get("hostname"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !v.is_empty() {
                    external.push(v.into());
                }
            }
            let external = match (ty, external.is_empty()) {
                ("ExternalName", _) => s(o, "/spec/externalName").to_string(),
                ("LoadBalancer", true) => "<pending>".into(),
                (_, true) => "<none>".into(),
                _ => external.join(","),
            };
            vec![
                name,
                json!(ty),
                json!(or_none(s(o, "/spec/clusterIP").into())),
                json!(external),
                json!(or_none(ports)),
                age,
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        "Node" => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| s(c, "/type") == "Ready"))
                .map(|c| {
                    if s(c, "/status") == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = ready.to_string();
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<&str> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            let addr = |t: &str| {
                o.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| s(x, "/type") == t))
                    .map(|x| s(x, "/address").to_string())
                    .unwrap_or_else(|| "<none>".into())
            };
            vec![
                name,
                json!(status),
                json!(or_none(roles.join(","))),
                age,
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(or_none(s(o, "/status/nodeInfo/osImage").into())),
                json!(or_none(s(o, "/status/nodeInfo/kernelVersion").into())),
                json!(or_none(
                    s(o, "/status/nodeInfo/containerRuntimeVersion").into()
                )),
            ]
        }
        "Namespace" => vec![name, json!(s(o, "/status/phase")), age],
        "ConfigMap" => vec![name, json!(count(o, "data") + count(o, "binaryData")), age],
        "Secret" => vec![name, json!(s(o, "/type")), json!(count(o, "data")), age],
        "ServiceAccount" => vec![
            name,
            json!(o
                .get("secrets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)),
            age,
        ],
        "Endpoints" => {
            let mut eps = Vec::new();
            for subset in o
                .get("subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for a in subset
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let ip = s(a, "/ip");
                    match subset.get("ports").and_then(Value::as_array) {
                        Some(ports) if !ports.is_empty() => {
                            eps.extend(ports.iter().map(|p| format!("{ip}:{}", i(p, "/port"))))
                        }
                        _ => eps.push(ip.to_string()),
                    }
                }
            }
            vec![name, json!(or_none(eps.join(","))), age]
        }
        "Event" => {
            // Core/v1 field names, or the events.k8s.io/v1 ones.
            let field =
                |core: &str, view: &str| o.get(core).filter(|v| !v.is_null()).or(o.get(view));
            let last = field("lastTimestamp", "deprecatedLastTimestamp")
                .filter(|v| !v.is_null())
                .or(o.get("eventTime").filter(|v| !v.is_null()))
                .or(o.pointer("/metadata/creationTimestamp"));
            let regarding = field("involvedObject", "regarding")
                .cloned()
                .unwrap_or(Value::Null);
            let object = format!(
                "{}/{}",
                s(&regarding, "/kind").to_lowercase(),
                s(&regarding, "/name")
            );
            let source = field("source", "deprecatedSource")
                .cloned()
                .unwrap_or(Value::Null);
            let count = field("count", "deprecatedCount")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                json!(since(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(object),
                json!(s(&regarding, "/fieldPath")),
                json!(s(&source, "/component")),
                json!(field("message", "note")
                    .and_then(Value::as_str)
                    .unwrap_or("")),
                json!(since(field("firstTimestamp", "deprecatedFirstTimestamp"))),
                json!(count.max(1).to_string()),
                name,
            ]
        }
        "Job" => {
            // kubectl's printer: the first of these that holds.
            let has = |t: &str| {
                o.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|c| s(c, "/status") == "True" && s(c, "/type") == t)
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if has("Suspended") {
                "Suspended"
            } else if has("FailureTarget") {
                "FailureTarget"
            } else if has("SuccessCriteriaMet") {
                "SuccessCriteriaMet"
            } else {
                "Running"
            };
            let time = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            };
            let duration = match (time("/status/startTime"), time("/status/completionTime")) {
                (None, _) => String::new(),
                (Some(st), None) => human_duration(chrono::Utc::now().signed_duration_since(st)),
                (Some(st), Some(ct)) => human_duration(ct.signed_duration_since(st)),
            };
            let completions = format!(
                "{}/{}",
                i(o, "/status/succeeded"),
                i(o, "/spec/completions").max(1)
            );
            vec![
                name,
                json!(status),
                json!(completions),
                json!(duration),
                age,
                containers("/spec/template/spec/containers"),
                images("/spec/template/spec/containers"),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        "CronJob" => vec![
            name,
            json!(s(o, "/spec/schedule")),
            json!(or_none(s(o, "/spec/timeZone").into())),
            json!(o
                .pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            json!(o
                .pointer("/status/active")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)),
            json!(match o.pointer("/status/lastScheduleTime") {
                Some(t) => since(Some(t)),
                None => "<none>".into(),
            }),
            age,
            containers("/spec/jobTemplate/spec/template/spec/containers"),
            images("/spec/jobTemplate/spec/template/spec/containers"),
            json!(selector_string(
                o.pointer("/spec/jobTemplate/spec/selector")
            )),
        ],
        "Lease" => vec![name, json!(s(o, "/spec/holderIdentity")), age],
        "Ingress" => {
            let rules = o.pointer("/spec/rules").and_then(Value::as_array);
            let hosts: Vec<&str> = rules
                .into_iter()
                .flatten()
                .map(|r| r.get("host").and_then(Value::as_str).unwrap_or("*"))
                .collect();
            let address: Vec<&str> = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str))
                .collect();
            let tls = o
                .pointer("/spec/tls")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty());
            vec![
                name,
                json!(or_none(s(o, "/spec/ingressClassName").into())),
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }),
                json!(address.join(",")),
                json!(if tls { "80, 443" } else { "80" }),
                age,
            ]
        }
        "IngressClass" => vec![
            name,
            json!(s(o, "/spec/controller")),
            json!(match o.pointer("/spec/parameters") {
                Some(p) => format!("{}/{}", s(p, "/kind"), s(p, "/name")),
                None => "<none>".into(),
            }),
            age,
        ],
        "PodDisruptionBudget" => {
            let v = |p: &str| match o.pointer(p) {
                Some(Value::String(x)) => x.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".into(),
            };
            vec![
                name,
                json!(v("/spec/minAvailable")),
                json!(v("/spec/maxUnavailable")),
                json!(i(o, "/status/disruptionsAllowed")),
                age,
            ]
        }
        "ResourceQuota" => {
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
        "Role" | "ClusterRole" | "LimitRange" => {
            vec![name, json!(s(o, "/metadata/creationTimestamp"))]
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let subjects = |kind: &str| -> String {
                o.get("subjects")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|x| s(x, "/kind") == kind)
                    .map(|x| {
                        if kind == "ServiceAccount" {
                            format!("{}/{}", s(x, "/namespace"), s(x, "/name"))
                        } else {
                            s(x, "/name").to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(o, "/roleRef/kind"),
                    s(o, "/roleRef/name")
                )),
                age,
                json!(subjects("User")),
                json!(subjects("Group")),
                json!(subjects("ServiceAccount")),
            ]
        }
        "NetworkPolicy" => {
            let sel = selector_string(o.pointer("/spec/podSelector"));
            vec![
                name,
                json!(if sel == "<none>" {
                    "<none>".to_string()
                } else {
                    sel
                }),
                age,
            ]
        }
        "ControllerRevision" => {
            let controller = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                })
                .map(|r| {
                    let group = s(r, "/apiVersion").split('/').next().unwrap_or("");
                    let kind = s(r, "/kind").to_lowercase();
                    if s(r, "/apiVersion").contains('/') {
                        format!("{kind}.{group}/{}", s(r, "/name"))
                    } else {
                        format!("{kind}/{}", s(r, "/name"))
                    }
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(controller), json!(i(o, "/revision")), age]
        }
        "PersistentVolume" => {
            let modes: Vec<&str> = o
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect();
            let claim = match o.pointer("/spec/claimRef") {
                Some(c) => format!("{}/{}", s(c, "/namespace"), s(c, "/name")),
                None => String::new(),
            };
            vec![
                name,
                json!(s(o, "/spec/capacity/storage")),
                json!(modes.join(",")),
                json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(s(o, "/status/phase")),
                json!(claim),
                json!(s(o, "/spec/storageClassName")),
                json!(or_none(s(o, "/spec/volumeAttributesClassName").into())),
                json!(s(o, "/status/reason")),
                age,
                json!(s(o, "/spec/volumeMode")),
            ]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = o
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| i(p, "/port").to_string())
                .collect();
            let addrs: Vec<String> = o
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| {
                    e.get("addresses")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            vec![
                name,
                json!(s(o, "/addressType")),
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(if addrs.is_empty() {
                    "<unset>".to_string()
                } else {
                    addrs.join(",")
                }),
                age,
            ]
        }
        "PriorityClass" => vec![
            name,
            json!(i(o, "/value")),
            json!(o
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age,
            json!(s(o, "/preemptionPolicy")),
        ],
        "StorageClass" => {
            let default = o
                .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true");
            let shown = if default {
                format!("{} (default)", s(o, "/metadata/name"))
            } else {
                s(o, "/metadata/name").to_string()
            };
            vec![
                json!(shown),
                json!(s(o, "/provisioner")),
                json!(s(o, "/reclaimPolicy")),
                json!(s(o, "/volumeBindingMode")),
                json!(o
                    .get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string()),
                age,
            ]
        }
        "PersistentVolumeClaim" => vec![
            name,
            json!(s(o, "/status/phase")),
            json!(s(o, "/spec/volumeName")),
            json!(s(o, "/status/capacity/storage")),
            json!(join_names_plain(o.pointer("/status/accessModes"))),
            json!(or_none(s(o, "/spec/storageClassName").into())),
            json!(or_none(s(o, "/spec/volumeAttributesClassName").into())),
            age,
            json!(s(o, "/spec/volumeMode")),
        ],
        "CertificateSigningRequest" => {
            let mut conds: Vec<&str> = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.get("type").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if o.pointer("/status/certificate").is_some() {
                conds.push("Issued");
            }
            let duration = o
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64)
                .map(|secs| format!("{}m", secs / 60))
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                age,
                json!(s(o, "/spec/signerName")),
                json!(s(o, "/spec/username")),
                json!(duration),
                json!(if conds.is_empty() {
                    "Pending".to_string()
                } else {
                    conds.join(",")
                }),
            ]
        }
        _ => vec![name, age],
    }
}

/// One row of `kind`'s table for `obj`.
pub fn row(kind: &str, obj: &Value, include: IncludeObject) -> Value {
    let mut row = json!({"cells": cells(kind, obj)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = obj.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
    }
    row
}

/// A Table of `objects`; `with_columns` false for the later events of a watch.
pub fn table(
    kind: &str,
    objects: &[Value],
    include: IncludeObject,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": objects.iter().map(|o| row(kind, o, include)).collect::<Vec<_>>(),
    });
    if with_columns {
        t["columnDefinitions"] = Value::Array(column_definitions(kind));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(150)), "2m30s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(3 * 3600 + 60)), "3h1m");
        assert_eq!(human_duration(d(30 * 3600)), "30h");
        assert_eq!(human_duration(d(3 * 86400 + 3600)), "3d1h");
    }

    #[test]
    fn every_row_matches_its_columns() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        for r in crate::resources::RESOURCES {
            assert_eq!(
                cells(r.kind, &obj).len(),
                columns(r.kind).len(),
                "{}",
                r.kind
            );
        }
    }

    #[test]
    fn pod_row() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}, {"ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let c = cells("Pod", &pod);
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "3");
    }

    /// The STATUS of a pod with init containers, as kubectl prints it.
    #[test]
    fn pod_status_while_initializing() {
        let pod = |inits: Value, initialized: bool| {
            json!({"metadata": {"name": "p"},
                "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
                "status": {"phase": "Pending", "initContainerStatuses": inits,
                    "conditions": [{"type": "Initialized", "status": if initialized { "True" } else { "False" }}],
                    "containerStatuses": [{"ready": false, "state": {"waiting": {"reason": "PodInitializing"}}}]}})
        };
        let done = json!({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let running = json!({"state": {"running": {}}});
        let waiting = json!({"state": {"waiting": {"reason": "PodInitializing"}}});
        let failed = json!({"state": {"terminated": {"exitCode": 3, "reason": "Error"}}});
        let cases = [
            (json!([running.clone(), waiting.clone()]), false, "Init:0/2"),
            (json!([done.clone(), running.clone()]), false, "Init:1/2"),
            (json!([done.clone(), failed]), false, "Init:Error"),
            (
                json!([done.clone(), {"state": {"terminated": {"exitCode": 2}}}]),
                false,
                "Init:ExitCode:2",
            ),
            (
                json!([{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}, waiting]),
                false,
                "Init:CrashLoopBackOff",
            ),
            (json!([done.clone(), done]), true, "PodInitializing"),
        ];
        for (inits, initialized, want) in cases {
            assert_eq!(
                cells("Pod", &pod(inits.clone(), initialized))[2],
                want,
                "{inits}"
            );
        }
    }
}
