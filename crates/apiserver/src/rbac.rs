//! Authorization by RBAC, the last of the `Node,RBAC` chain in [`crate::authz`] (before it,
//! the `system:masters` group may do everything, as the real server's privileged-group
//! authorizer does, and users `system:node:<name>` in `system:nodes` are judged by the
//! [`crate::nodeauthz`] Node authorizer): Roles, ClusterRoles and their bindings, read from the store
//! for each decision. Also: the request attributes of a request, the Forbidden messages in
//! the real server's words, the rules of a user (SelfSubjectRulesReview) and the default
//! roles and bindings every cluster starts with ([`bootstrap_policy`]).

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::registry::{ListOptions, Registry};
use crate::resources::lookup;
use crate::user::User;

use crate::error::ApiResult;

/// What a request wants to do (kube-apiserver's `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The URL path (non-resource requests).
    pub path: String,
}

impl Attributes {
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            ..Default::default()
        }
    }

    pub fn named(mut self, name: &str) -> Attributes {
        self.name = name.into();
        self
    }

    pub fn subresource(mut self, subresource: &str) -> Attributes {
        self.subresource = subresource.into();
        self
    }

    /// The attributes of an HTTP request (kube-apiserver's `RequestInfoFactory`).
    pub fn of_request(method: &str, path: &str, query: Option<&str>) -> Attributes {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(crate::http::percent_decode)
            .collect();
        let non_resource = |verb: &str| Attributes {
            verb: verb.into(),
            path: path.to_string(),
            ..Default::default()
        };
        let http_verb = match method {
            "GET" | "HEAD" => "get",
            "POST" => "post",
            "PUT" => "put",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        };
        let (group, rest) = match segs.first().map(String::as_str) {
            Some("api") if segs.len() >= 3 => (String::new(), &segs[2..]),
            Some("apis") if segs.len() >= 4 => (segs[1].clone(), &segs[3..]),
            _ => return non_resource(http_verb),
        };
        let mut rest: Vec<String> = rest.to_vec();
        let mut watch_path = false;
        if rest.first().map(String::as_str) == Some("watch") {
            watch_path = true;
            rest.remove(0);
        }
        let mut a = Attributes {
            resource_request: true,
            group,
            path: path.to_string(),
            ..Default::default()
        };
        if rest.first().map(String::as_str) == Some("namespaces") {
            if rest.len() >= 2 {
                a.namespace = rest[1].clone();
                if rest.len() == 2
                    || (rest.len() == 3 && (rest[2] == "status" || rest[2] == "finalize"))
                {
                    // The namespace object itself.
                    a.resource = "namespaces".into();
                    a.name = rest[1].clone();
                    a.subresource = rest.get(2).cloned().unwrap_or_default();
                    rest.clear();
                } else {
                    rest.drain(..2);
                }
            } else {
                a.resource = "namespaces".into();
                rest.clear();
            }
        }
        if !rest.is_empty() {
            a.resource = rest[0].clone();
            a.name = rest.get(1).cloned().unwrap_or_default();
            a.subresource = rest.get(2).cloned().unwrap_or_default();
        }
        let watch = watch_path
            || form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .any(|(k, v)| k == "watch" && matches!(v.as_ref(), "1" | "true" | "True"));
        a.verb = match (http_verb, a.name.is_empty()) {
            ("get", _) if watch => "watch",
            ("get", true) => "list",
            ("get", false) => "get",
            ("post", _) => "create",
            ("put", _) => "update",
            ("delete", true) => "deletecollection",
            (v, _) => v,
        }
        .into();
        a
    }

    /// `pods` or `pods/log`.
    fn full_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// An authorization decision with the authorizer's reason.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    pub allowed: bool,
    /// Set when an authorizer denied outright (the Node authorizer's refusals).
    pub denied: bool,
    pub reason: String,
}

impl Decision {
    pub fn allow(reason: impl Into<String>) -> Decision {
        Decision {
            allowed: true,
            denied: false,
            reason: reason.into(),
        }
    }
    pub fn no_opinion() -> Decision {
        Decision::default()
    }
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            denied: true,
            reason: reason.into(),
        }
    }
}

/// The 403 the real server answers when `a` is not allowed for `user`.
pub fn forbidden(user: &User, a: &Attributes, reason: &str) -> ApiError {
    let who = &user.name;
    let mut msg = if !a.resource_request {
        format!("User {who:?} cannot {} path {:?}", a.verb, a.path)
    } else if !a.namespace.is_empty() {
        format!(
            "User {who:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            a.verb,
            a.full_resource(),
            a.group,
            a.namespace
        )
    } else {
        format!(
            "User {who:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            a.verb,
            a.full_resource(),
            a.group
        )
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let full = match (qualified.is_empty(), a.name.is_empty()) {
        (true, _) => format!("forbidden: {msg}"),
        (false, true) => format!("{qualified} is forbidden: {msg}"),
        (false, false) => format!("{qualified} {:?} is forbidden: {msg}", a.name),
    };
    let mut e = ApiError::forbidden(full);
    if a.resource_request {
        e.details = Some(Box::new(crate::error::Details {
            group: a.group.clone(),
            kind: a.resource.clone(),
            name: a.name.clone(),
            causes: Vec::new(),
        }));
    }
    e
}

pub const MASTERS: &str = "system:masters";

fn str_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// Whether one PolicyRule allows `a`.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(&str_list(rule.get("verbs")), &a.verb) {
        return false;
    }
    if !a.resource_request {
        return str_list(rule.get("nonResourceURLs")).iter().any(|u| {
            *u == "*" || *u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
        });
    }
    if !has(&str_list(rule.get("apiGroups")), &a.group) {
        return false;
    }
    let resources = str_list(rule.get("resources"));
    let combined = a.full_resource();
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (a.subresource.is_empty() && *r == a.resource)
            || (!a.subresource.is_empty()
                && (*r == format!("{}/*", a.resource) || *r == format!("*/{}", a.subresource)))
    });
    if !resource_ok {
        return false;
    }
    let names = str_list(rule.get("resourceNames"));
    names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str()))
}

/// Whether a binding subject names `user` (`binding_ns`: the RoleBinding's namespace).
fn subject_matches(s: &Value, user: &User, binding_ns: &str) -> bool {
    let name = s.get("name").and_then(Value::as_str).unwrap_or("");
    match s.get("kind").and_then(Value::as_str).unwrap_or("") {
        "User" => user.name == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = s
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// One role bound to the user: how, and its rules.
struct Grant {
    description: String,
    rules: Vec<Value>,
}

async fn role_rules(reg: &Registry, kind: &str, ns: &str, name: &str) -> ApiResult<Vec<Value>> {
    let (plural, ns) = if kind == "Role" {
        ("roles", Some(ns))
    } else {
        ("clusterroles", None)
    };
    let Some(res) = lookup("rbac.authorization.k8s.io", "v1", plural) else {
        return Ok(Vec::new());
    };
    match reg.get(res, ns, name).await {
        Ok(role) => Ok(role
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()),
        Err(e) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The roles bound to `user` cluster-wide and (when `ns` is not empty) in `ns`.
async fn grants(reg: &Registry, user: &User, ns: &str) -> ApiResult<Vec<Grant>> {
    let mut out = Vec::new();
    let mut scopes = vec![("clusterrolebindings", None)];
    if !ns.is_empty() {
        scopes.push(("rolebindings", Some(ns)));
    }
    for (plural, scope) in scopes {
        let Some(res) = lookup("rbac.authorization.k8s.io", "v1", plural) else {
            continue;
        };
        let bindings = reg.list(res, scope, &ListOptions::any()).await?.items;
        for b in bindings {
            let bns = scope.unwrap_or("");
            let Some(subject) = b
                .get("subjects")
                .and_then(Value::as_array)
                .and_then(|s| s.iter().find(|s| subject_matches(s, user, bns)))
            else {
                continue;
            };
            let kind = b
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role = b
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let bname = b
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let binding_kind = if scope.is_some() {
                format!("RoleBinding \"{bname}\" of {kind} \"{role}\" in namespace \"{bns}\"")
            } else {
                format!("ClusterRoleBinding \"{bname}\" of {kind} \"{role}\"")
            };
            let skind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
            let sname = subject.get("name").and_then(Value::as_str).unwrap_or("");
            out.push(Grant {
                description: format!("{binding_kind} to {skind} \"{sname}\""),
                rules: role_rules(reg, kind, bns, role).await?,
            });
        }
    }
    Ok(out)
}

pub(crate) async fn authorize(reg: &Registry, user: &User, a: &Attributes) -> ApiResult<Decision> {
    for g in grants(reg, user, &a.namespace).await? {
        if g.rules.iter().any(|r| rule_allows(r, a)) {
            return Ok(Decision::allow(format!(
                "RBAC: allowed by {}",
                g.description
            )));
        }
    }
    Ok(Decision::no_opinion())
}

/// The rules `user` has in `ns` (SelfSubjectRulesReview's status).
pub async fn rules_for(reg: &Registry, user: &User, ns: &str) -> ApiResult<Value> {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    if user.groups.iter().any(|g| g == MASTERS) {
        resource_rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        non_resource_rules.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    for g in grants(reg, user, ns).await? {
        for r in g.rules {
            let mut out = serde_json::Map::new();
            out.insert("verbs".into(), r.get("verbs").cloned().unwrap_or(json!([])));
            if r.get("nonResourceURLs").is_some() {
                out.insert("nonResourceURLs".into(), r["nonResourceURLs"].clone());
                push_unique(&mut non_resource_rules, Value::Object(out));
            } else {
                for k in ["apiGroups", "resources", "resourceNames"] {
                    if let Some(v) = r.get(k) {
                        out.insert(k.into(), v.clone());
                    }
                }
                push_unique(&mut resource_rules, Value::Object(out));
            }
        }
    }
    Ok(
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false}),
    )
}

fn push_unique(list: &mut Vec<Value>, v: Value) {
    if !list.contains(&v) {
        list.push(v);
    }
}

// ---- the default roles and bindings -------------------------------------------------

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

const READ: &[&str] = &["get", "list", "watch"];
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Namespaced resources the aggregated `view` role reads (secrets excluded).
fn view_rules() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "namespaces",
            ],
        ),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(READ, &["events.k8s.io"], &["events"]),
    ]
}

/// What `edit` adds to `view` (the `system:aggregate-to-edit` role). No write on
/// Endpoints or EndpointSlices: since Kubernetes 1.22 (CVE-2021-25740) the default
/// roles leave them out, as a namespace editor could otherwise point a Service at
/// addresses of another namespace.
fn edit_rules() -> Vec<Value> {
    let mut rules = Vec::new();
    rules.extend([
        rule(
            &[
                "create",
                "delete",
                "deletecollection",
                "patch",
                "update",
                "get",
                "list",
                "watch",
            ],
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "configmaps",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(
            &["create"],
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
        ),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            ALL_VERBS,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(ALL_VERBS, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(ALL_VERBS, &["batch"], &["cronjobs", "jobs"]),
        rule(
            ALL_VERBS,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        rule(ALL_VERBS, &["policy"], &["poddisruptionbudgets"]),
        rule(ALL_VERBS, &["coordination.k8s.io"], &["leases"]),
    ]);
    rules
}

/// What `admin` adds to `edit` (the `system:aggregate-to-admin` role).
fn admin_rules() -> Vec<Value> {
    let mut rules = Vec::new();
    rules.extend([
        rule(
            ALL_VERBS,
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
        ),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
    ]);
    rules
}

/// What a kubelet may do (bootstrappolicy's NodeRules); the Node authorizer narrows it to
/// the node's own objects.
pub fn node_rules() -> Vec<Value> {
    vec![
        // The cluster's network settings (skiff's `/v1-k3s/config`).
        json!({"verbs": ["get"], "nonResourceURLs": [crate::http::CONFIG_PATH]}),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(READ, &[""], &["services", "endpoints"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        // A skiff node answers the cluster's DNS itself (where k3s runs CoreDNS with
        // its own ServiceAccount): pod records need the namespaces.
        rule(READ, &[""], &["namespaces"]),
        rule(
            &["create", "get", "list", "watch", "patch", "update"],
            &[""],
            &["nodes"],
        ),
        rule(&["patch", "update"], &[""], &["nodes/status"]),
        rule(
            &["create", "patch", "update"],
            &["", "events.k8s.io"],
            &["events"],
        ),
        rule(READ, &[""], &["pods"]),
        rule(&["create", "delete"], &[""], &["pods"]),
        rule(&["get", "update", "patch"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            &["get"],
            &[""],
            &[
                "secrets",
                "configmaps",
                "persistentvolumeclaims",
                "persistentvolumes",
                "serviceaccounts",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            &["get", "update", "patch"],
            &[""],
            &["persistentvolumeclaims/status"],
        ),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
        rule(READ, &["storage.k8s.io"], &["csidrivers", "storageclasses"]),
    ]
}

fn cluster_roles() -> Vec<(&'static str, Vec<Value>)> {
    let discovery_urls = &[
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    let public_urls = &["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let all_groups = &["*"];
    vec![
        (
            "cluster-admin",
            vec![rule(&["*"], all_groups, &["*"]), url_rule(&["*"], &["*"])],
        ),
        ("admin", vec![]),
        ("edit", vec![]),
        ("view", vec![]),
        ("system:aggregate-to-admin", admin_rules()),
        ("system:aggregate-to-edit", edit_rules()),
        ("system:aggregate-to-view", view_rules()),
        (
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        ("system:discovery", vec![url_rule(&["get"], discovery_urls)]),
        (
            "system:public-info-viewer",
            vec![url_rule(&["get"], public_urls)],
        ),
        (
            "system:auth-delegator",
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        ("system:node", node_rules()),
        (
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
        ),
        (
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        (
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        (
            "system:kube-scheduler",
            vec![
                rule(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                ),
                rule(
                    &["create", "get", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                rule(&["create"], &[""], &["pods/binding", "bindings"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
                rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
                rule(
                    READ,
                    &[""],
                    &[
                        "nodes",
                        "namespaces",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "replicationcontrollers",
                        "services",
                    ],
                ),
                rule(READ, &["apps"], &["replicasets", "statefulsets"]),
                rule(READ, &["policy"], &["poddisruptionbudgets"]),
                rule(
                    READ,
                    &["storage.k8s.io"],
                    &[
                        "storageclasses",
                        "csinodes",
                        "csidrivers",
                        "csistoragecapacities",
                    ],
                ),
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        (
            "system:kube-controller-manager",
            vec![
                rule(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                ),
                rule(
                    &["create", "get", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                rule(
                    &["create", "get", "update"],
                    &[""],
                    &["endpoints", "secrets", "serviceaccounts"],
                ),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                rule(&["delete"], &[""], &["secrets"]),
                rule(READ, &["*"], &["*"]),
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
    ]
}

fn subject(kind: &str, name: &str) -> Value {
    json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

fn cluster_role_bindings() -> Vec<(&'static str, &'static str, Vec<Value>)> {
    vec![
        (
            "cluster-admin",
            "cluster-admin",
            vec![subject("Group", MASTERS)],
        ),
        (
            "system:basic-user",
            "system:basic-user",
            vec![subject("Group", "system:authenticated")],
        ),
        (
            "system:discovery",
            "system:discovery",
            vec![subject("Group", "system:authenticated")],
        ),
        (
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![
                subject("Group", "system:authenticated"),
                subject("Group", "system:unauthenticated"),
            ],
        ),
        ("system:node", "system:node", vec![]),
        (
            "system:kube-scheduler",
            "system:kube-scheduler",
            vec![subject("User", "system:kube-scheduler")],
        ),
        (
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            vec![subject("User", "system:kube-controller-manager")],
        ),
        // What k3s/kubeadm add for joining nodes: bootstrappers may ask for a client
        // certificate, which is approved automatically; nodes may renew their own.
        (
            "skiff:kubelet-bootstrap",
            "system:node-bootstrapper",
            vec![subject("Group", "system:bootstrappers")],
        ),
        (
            "skiff:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![subject("Group", "system:bootstrappers")],
        ),
        (
            "skiff:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![subject("Group", "system:nodes")],
        ),
    ]
}

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn bootstrap_meta(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {AUTOUPDATE: "true"},
    })
}

const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// How the default roles aggregate, as upstream: `admin` gathers the roles labelled
/// `aggregate-to-admin` (`edit` and `system:aggregate-to-admin`), `edit` those labelled
/// `aggregate-to-edit` (`view`, `system:aggregate-to-edit`), `view` those labelled
/// `aggregate-to-view`. Returns (the label it selects, the labels it carries).
fn aggregation(name: &str) -> (Option<&'static str>, &'static [&'static str]) {
    match name {
        "admin" => (Some("admin"), &[]),
        "edit" => (Some("edit"), &["admin"]),
        "view" => (Some("view"), &["edit"]),
        "system:aggregate-to-admin" => (None, &["admin"]),
        "system:aggregate-to-edit" => (None, &["edit"]),
        "system:aggregate-to-view" => (None, &["view"]),
        _ => (None, &[]),
    }
}

/// The default ClusterRoles and ClusterRoleBindings, as objects.
pub fn bootstrap_policy() -> (Vec<Value>, Vec<Value>) {
    let roles = cluster_roles()
        .into_iter()
        .map(|(name, rules)| {
            let mut role = json!({"metadata": bootstrap_meta(name), "rules": rules});
            let (selects, labels) = aggregation(name);
            for to in labels {
                role["metadata"]["labels"][format!("{AGGREGATE_TO}{to}")] = json!("true");
            }
            if let Some(to) = selects {
                role["aggregationRule"] = json!({"clusterRoleSelectors": [
                    {"matchLabels": {format!("{AGGREGATE_TO}{to}"): "true"}}
                ]});
            }
            role
        })
        .collect();
    let bindings = cluster_role_bindings()
        .into_iter()
        .map(|(name, role, subjects)| {
            json!({
                "metadata": bootstrap_meta(name),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": subjects,
            })
        })
        .collect();
    (roles, bindings)
}

/// Creates the default roles and bindings, and adds missing rules and subjects to those
/// that exist and still carry `autoupdate: "true"`; it never removes anything.
pub async fn reconcile_bootstrap_policy(reg: &Registry) -> ApiResult<()> {
    let (roles, bindings) = bootstrap_policy();
    for (plural, objects, field) in [
        ("clusterroles", roles, "rules"),
        ("clusterrolebindings", bindings, "subjects"),
    ] {
        let Some(res) = lookup("rbac.authorization.k8s.io", "v1", plural) else {
            continue;
        };
        for want in objects {
            let name = want["metadata"]["name"].as_str().unwrap_or("").to_string();
            let existing = match reg.get(res, None, &name).await {
                Ok(o) => o,
                Err(e) if e.code == 404 => {
                    match reg.create(res, None, want, false).await {
                        Ok(_) => {}
                        Err(e) if e.reason == "AlreadyExists" => {}
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let auto = existing
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(AUTOUPDATE))
                .and_then(Value::as_str)
                != Some("false");
            let have = existing
                .get(field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let missing: Vec<Value> = want[field]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| !have.contains(r))
                .collect();
            // Roles that aggregate now (older stores kept their rules statically).
            let aggregation_rule = want.get("aggregationRule").cloned();
            let missing_labels: Map<String, Value> = want["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| {
                    existing
                        .pointer("/metadata/labels")
                        .and_then(|l| l.get(k))
                        .is_none()
                })
                .collect();
            let rule_changed = aggregation_rule.is_some()
                && existing.get("aggregationRule") != aggregation_rule.as_ref();
            if !auto || (missing.is_empty() && missing_labels.is_empty() && !rule_changed) {
                continue;
            }
            reg.update(
                res,
                None,
                &name,
                crate::subresource::Subresource::Main,
                false,
                |old| {
                    let mut new = skiff_meta::object::without_rv(old);
                    let mut list = old
                        .get(field)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for m in &missing {
                        if !list.contains(m) {
                            list.push(m.clone());
                        }
                    }
                    new[field] = Value::Array(list);
                    if let Some(rule) = &aggregation_rule {
                        new["aggregationRule"] = rule.clone();
                    }
                    for (k, v) in &missing_labels {
                        new["metadata"]["labels"][k] = v.clone();
                    }
                    Ok(new)
                },
            )
            .await?;
        }
    }
    aggregate_cluster_roles(reg).await
}

/// Whether ClusterRole `role` is selected by one of `selectors` (label selector objects;
/// an empty one selects every role, as upstream).
fn selected(role: &Value, selectors: &[Value]) -> bool {
    selectors.iter().any(|sel| {
        let text = crate::cells::selector_string(Some(sel));
        let text = if text == "<none>" {
            String::new()
        } else {
            text
        };
        skiff_meta::selector::LabelSelector::parse(&text).is_ok_and(|s| s.matches_object(role))
    })
}

/// The rules of every aggregated ClusterRole (`aggregationRule`) from the roles its
/// selectors pick, as kube-controller-manager's clusterrole-aggregation controller keeps
/// them: the union of their rules, roles in name order, each rule once.
pub fn aggregated_rules(role: &Value, all: &[Value]) -> Option<Vec<Value>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)?;
    let name = role.pointer("/metadata/name");
    let mut picked: Vec<&Value> = all
        .iter()
        .filter(|r| r.pointer("/metadata/name") != name && selected(r, selectors))
        .collect();
    picked.sort_by_key(|r| {
        r.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    });
    let mut rules: Vec<Value> = Vec::new();
    for r in picked {
        for rule in r
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

/// Brings every aggregated ClusterRole's rules up to date; repeats while one changes (an
/// aggregated role may itself be aggregated, as `view` into `edit` into `admin`).
pub async fn aggregate_cluster_roles(reg: &Registry) -> ApiResult<()> {
    let Some(res) = lookup("rbac.authorization.k8s.io", "v1", "clusterroles") else {
        return Ok(());
    };
    let manager =
        crate::managed::Manager::of_request(Some("clusterrole-aggregation-controller"), None);
    for _round in 0..8 {
        let all = reg
            .list(res, None, &crate::registry::ListOptions::default())
            .await?
            .items;
        let mut changed = false;
        for role in &all {
            let Some(rules) = aggregated_rules(role, &all) else {
                continue;
            };
            let current = role.get("rules").cloned().unwrap_or(json!([]));
            if current == json!(rules) || (rules.is_empty() && current.is_null()) {
                continue;
            }
            let name = role
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let out = reg
                .update_as(
                    res,
                    None,
                    name,
                    crate::subresource::Subresource::Main,
                    false,
                    Some(&manager),
                    |old| {
                        let mut new = skiff_meta::object::without_rv(old);
                        new["rules"] = json!(rules);
                        Ok(new)
                    },
                )
                .await;
            match out {
                Ok(_) => changed = true,
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if !changed {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roles_aggregate_like_upstream() {
        let (roles, _) = bootstrap_policy();
        let by = |n: &str| {
            roles
                .iter()
                .find(|r| r["metadata"]["name"] == n)
                .cloned()
                .unwrap_or_default()
        };
        // view, then edit (which includes view), then admin.
        let mut all = roles.clone();
        for name in ["view", "edit", "admin"] {
            let role = all
                .iter()
                .find(|r| r["metadata"]["name"] == name)
                .cloned()
                .unwrap_or_default();
            let rules = aggregated_rules(&role, &all).expect("aggregated");
            if let Some(r) = all.iter_mut().find(|r| r["metadata"]["name"] == name) {
                r["rules"] = json!(rules);
            }
        }
        let rules_of = |n: &str| -> Vec<Value> {
            all.iter()
                .find(|r| r["metadata"]["name"] == n)
                .and_then(|r| r["rules"].as_array().cloned())
                .unwrap_or_default()
        };
        assert_eq!(rules_of("view"), view_rules());
        let edit = rules_of("edit");
        assert!(view_rules()
            .iter()
            .chain(&edit_rules())
            .all(|r| edit.contains(r)));
        let admin = rules_of("admin");
        assert!(admin_rules().iter().chain(&edit).all(|r| admin.contains(r)));
        assert_eq!(
            by("edit")["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"],
            "true"
        );
        assert!(aggregated_rules(&by("cluster-admin"), &all).is_none());
    }

    fn attrs(method: &str, path: &str) -> Attributes {
        Attributes::of_request(method, path, None)
    }

    #[test]
    fn request_attributes() {
        let a = attrs("GET", "/api/v1/namespaces/default/pods");
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("list", "pods", "default")
        );
        let a = attrs("GET", "/api/v1/namespaces/default/pods/web/log");
        assert_eq!(
            (a.verb.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("get", "web", "log")
        );
        let a = attrs("GET", "/api/v1/namespaces/kube-system");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "kube-system", "kube-system")
        );
        let a = attrs("DELETE", "/apis/apps/v1/namespaces/x/deployments");
        assert_eq!(
            (a.verb.as_str(), a.group.as_str()),
            ("deletecollection", "apps")
        );
        let a = Attributes::of_request("GET", "/api/v1/pods", Some("watch=true"));
        assert_eq!(a.verb, "watch");
        let a = attrs("GET", "/apis");
        assert!(!a.resource_request && a.verb == "get" && a.path == "/apis");
        let a = attrs("GET", "/api/v1");
        assert!(!a.resource_request);
    }

    #[test]
    fn rules_match() {
        let a = attrs("GET", "/api/v1/namespaces/default/pods/web/log");
        assert!(rule_allows(&rule(&["get"], &[""], &["pods/log"]), &a));
        assert!(!rule_allows(&rule(&["get"], &[""], &["pods"]), &a));
        assert!(rule_allows(&rule(&["*"], &["*"], &["*"]), &a));
        assert!(rule_allows(&rule(&["get"], &[""], &["pods/*"]), &a));
        let named = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]});
        assert!(rule_allows(
            &named,
            &attrs("GET", "/api/v1/namespaces/d/pods/web")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("GET", "/api/v1/namespaces/d/pods/other")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("GET", "/api/v1/namespaces/d/pods")
        ));
        let urls = url_rule(&["get"], &["/apis/*", "/version"]);
        assert!(rule_allows(&urls, &attrs("GET", "/apis/apps/v1")));
        assert!(rule_allows(&urls, &attrs("GET", "/version")));
        assert!(!rule_allows(&urls, &attrs("GET", "/healthz")));
    }

    #[test]
    fn forbidden_messages() {
        let u = User {
            name: "x".into(),
            ..Default::default()
        };
        let e = forbidden(&u, &attrs("GET", "/api/v1/namespaces/default/pods"), "");
        assert_eq!(e.message, "pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"");
        let e = forbidden(
            &u,
            &attrs("GET", "/apis/apps/v1/namespaces/a/deployments/web"),
            "",
        );
        assert_eq!(e.message, "deployments.apps \"web\" is forbidden: User \"x\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"a\"");
        let e = forbidden(&u, &attrs("GET", "/api/v1/nodes"), "");
        assert!(e.message.ends_with("at the cluster scope"), "{}", e.message);
        let e = forbidden(&u, &attrs("GET", "/apis"), "");
        assert_eq!(e.message, "forbidden: User \"x\" cannot get path \"/apis\"");
    }
}
