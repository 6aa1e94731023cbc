//! ResourceQuota, as kube-apiserver's quota admission and the quota controller apply it.
//!
//! Each object has a usage (a list of quota resource names → quantities, the evaluators
//! of `pkg/quota/v1/evaluator/core`): `count/<resource>[.<group>]` for every object, the
//! legacy names (`pods`, `services`, `configmaps`, …), a pod's compute resources
//! (`requests.cpu`, `limits.memory`, `cpu`, hugepages, extended resources) from its
//! effective requests and limits, a claim's `requests.storage` (also per storage class),
//! a Service's node ports and load balancers. A quota matches an object when one of its
//! `hard` names is one the object's evaluator tracks and, for pods, the pod matches every
//! scope (`spec.scopes`: Terminating, NotTerminating, BestEffort, NotBestEffort,
//! PriorityClass, CrossNamespacePodAffinity) and every `spec.scopeSelector` expression
//! (In/NotIn/Exists/DoesNotExist on PriorityClass); objects of other kinds never match a
//! scoped quota. Admission refuses a create whose usage would take a matching quota past
//! `hard` (the real server's `exceeded quota` and `must specify` messages), and
//! `status.used` is recomputed after creates, deletes and pod phase changes (the quota
//! controller's job), counting only the objects the quota matches.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::admit::{AfterWrite, Objects};
use crate::error::ApiError;
use crate::options::ListOptions;
use crate::quantity::{from_milli_as, milli_value};
use crate::resource::Resource;
use crate::resources::{lookup, RESOURCES};
use skiff_meta::object::name_of;

use crate::error::ApiResult;

/// A quantity in thousandths with the text of the first non-zero quantity summed into it
/// (whose format — `Mi`, `G`, `m` — the sum is written in, as `Quantity.Add` keeps it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amount {
    pub milli: i128,
    pub like: String,
}

impl Amount {
    pub fn parse(text: &str) -> Option<Amount> {
        Some(Amount {
            milli: milli_value(text)?,
            like: text.to_string(),
        })
    }

    fn one() -> Amount {
        Amount {
            milli: 1000,
            like: "1".into(),
        }
    }

    pub fn add(&mut self, other: &Amount) {
        if self.milli == 0 {
            self.like = other.like.clone();
        }
        self.milli += other.milli;
    }

    /// The quantity as the real server writes it.
    pub fn text(&self) -> String {
        from_milli_as(self.milli, &self.like)
    }
}

/// A resource list: name → amount.
pub type Usage = BTreeMap<String, Amount>;

fn add_list(into: &mut Usage, from: &Usage) {
    for (k, v) in from {
        into.entry(k.clone()).or_default().add(v);
    }
}

fn max_list(into: &mut Usage, from: &Usage) {
    for (k, v) in from {
        match into.get(k) {
            Some(cur) if cur.milli >= v.milli => {}
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// One container's `resources.requests` or `resources.limits`.
pub fn container_list(c: &Value, field: &str) -> Usage {
    c.pointer(&format!("/resources/{field}"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Amount::parse(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A pod's effective requests or limits (`field`), as `resourcehelper.PodRequests` and
/// `PodLimits` compute them: the sum over containers and sidecars (init containers with
/// `restartPolicy: Always`), at least the largest init container (plus the sidecars
/// started before it), plus the pod overhead.
pub fn pod_resources(pod: &Value, field: &str) -> Usage {
    let mut total = Usage::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add_list(&mut total, &container_list(c, field));
    }
    let mut sidecars = Usage::new();
    let mut init_max = Usage::new();
    for c in pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let own = container_list(c, field);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add_list(&mut total, &own);
            add_list(&mut sidecars, &own);
            max_list(&mut init_max, &sidecars);
        } else {
            let mut tmp = own;
            add_list(&mut tmp, &sidecars);
            max_list(&mut init_max, &tmp);
        }
    }
    max_list(&mut total, &init_max);
    if let Some(overhead) = pod.pointer("/spec/overhead").and_then(Value::as_object) {
        for (k, v) in overhead {
            if let Some(a) = v.as_str().and_then(Amount::parse) {
                if field == "limits" && !total.contains_key(k) {
                    continue;
                }
                total.entry(k.clone()).or_default().add(&a);
            }
        }
    }
    total
}

const COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `podComputeUsageHelper`: the quota names a set of requests and limits charges.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut out = Usage::new();
    out.insert("pods".into(), Amount::one());
    for r in COMPUTE {
        if let Some(q) = requests.get(r) {
            out.insert(r.into(), q.clone());
            out.insert(format!("requests.{r}"), q.clone());
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), q.clone());
        }
    }
    for (k, q) in requests {
        if k.starts_with("hugepages-") {
            out.insert(k.clone(), q.clone());
            out.insert(format!("requests.{k}"), q.clone());
        } else if !is_native(k) {
            out.insert(format!("requests.{k}"), q.clone());
        }
    }
    out
}

/// `QuotaV1Pod`: terminal pods, and pods whose deletion grace period has passed, are not
/// charged compute resources.
fn pod_charged(pod: &Value) -> bool {
    if matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let deletion = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if let (Some(at), Some(grace)) = (deletion, grace) {
        if chrono::Utc::now() > at + chrono::Duration::seconds(grace) {
            return false;
        }
    }
    true
}

/// The `count/…` name of a resource.
fn count_name(res: &Resource) -> String {
    if res.group.is_empty() {
        format!("count/{}", res.plural)
    } else {
        format!("count/{}.{}", res.plural, res.group)
    }
}

/// The legacy object-count name of the core resources that have one.
fn legacy_name(res: &Resource) -> Option<&'static str> {
    if !res.group.is_empty() {
        return None;
    }
    matches!(
        res.plural,
        "pods"
            | "services"
            | "configmaps"
            | "secrets"
            | "persistentvolumeclaims"
            | "replicationcontrollers"
            | "resourcequotas"
    )
    .then_some(res.plural)
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Whether objects of `res` are measured under the quota name `key` (the evaluator's
/// `MatchingResources`).
pub fn tracks(res: &Resource, key: &str) -> bool {
    if key == count_name(res) || legacy_name(res) == Some(key) {
        return true;
    }
    match (res.group, res.kind) {
        ("", "Pod") => {
            COMPUTE.contains(&key)
                || COMPUTE.iter().any(|r| {
                    key.strip_prefix("requests.") == Some(r)
                        || key.strip_prefix("limits.") == Some(r)
                })
                || key.starts_with("hugepages-")
                || key.starts_with("requests.hugepages-")
                || key.strip_prefix("requests.").is_some_and(|r| !is_native(r))
        }
        ("", "PersistentVolumeClaim") => {
            key == "requests.storage"
                || key.split_once(STORAGE_CLASS_SUFFIX).is_some_and(|(_, r)| {
                    matches!(r, "requests.storage" | "persistentvolumeclaims")
                })
        }
        ("", "Service") => matches!(key, "services.nodeports" | "services.loadbalancers"),
        _ => false,
    }
}

/// What one object uses (every name its evaluator tracks).
pub fn usage(res: &Resource, obj: &Value) -> Usage {
    let mut out = Usage::new();
    out.insert(count_name(res), Amount::one());
    match (res.group, res.kind) {
        ("", "Pod") => {
            if pod_charged(obj) {
                let requests = pod_resources(obj, "requests");
                let limits = pod_resources(obj, "limits");
                out.extend(compute_usage(&requests, &limits));
            }
        }
        ("", "PersistentVolumeClaim") => {
            out.insert("persistentvolumeclaims".into(), Amount::one());
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(Amount::parse);
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                out.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    Amount::one(),
                );
                if let Some(s) = &storage {
                    out.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                        s.clone(),
                    );
                }
            }
            if let Some(s) = storage {
                out.insert("requests.storage".into(), s);
            }
        }
        ("", "Service") => {
            out.insert("services".into(), Amount::one());
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as i128;
            let nodeports = match ty {
                "NodePort" => ports,
                "LoadBalancer"
                    if obj.pointer("/spec/allocateLoadBalancerNodePorts")
                        != Some(&json!(false)) =>
                {
                    ports
                }
                _ => 0,
            };
            out.insert(
                "services.nodeports".into(),
                Amount {
                    milli: nodeports * 1000,
                    like: "1".into(),
                },
            );
            out.insert(
                "services.loadbalancers".into(),
                Amount {
                    milli: if ty == "LoadBalancer" { 1000 } else { 0 },
                    like: "1".into(),
                },
            );
        }
        _ => {
            if let Some(legacy) = legacy_name(res) {
                out.insert(legacy.into(), Amount::one());
            }
        }
    }
    out
}

/// One scope requirement of a quota (`spec.scopes` entries become `Exists`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRequirement {
    pub scope: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// A quota's scopes and scope selector expressions.
pub fn scope_requirements(q: &Value) -> Vec<ScopeRequirement> {
    let mut out: Vec<ScopeRequirement> = q
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| ScopeRequirement {
            scope: s.into(),
            operator: "Exists".into(),
            values: vec![],
        })
        .collect();
    for e in q
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(ScopeRequirement {
            scope: e
                .get("scopeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            operator: e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            values: e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
        });
    }
    out
}

fn cross_namespace_term(term: &Value) -> bool {
    term.get("namespaces")
        .and_then(Value::as_array)
        .is_some_and(|n| !n.is_empty())
        || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
}

/// Whether the pod's affinity or anti-affinity has a term naming other namespaces.
fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = pod.pointer(&format!("/spec/affinity/{kind}")) else {
            return false;
        };
        let required = a
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(cross_namespace_term);
        let preferred = a
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("podAffinityTerm"))
            .any(cross_namespace_term);
        required || preferred
    })
}

/// `podMatchesScopeFunc`.
pub fn pod_matches_scope(req: &ScopeRequirement, pod: &Value) -> bool {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let terminating = spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0);
    let best_effort = crate::defaults::qos_class(spec) == "BestEffort";
    match req.scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = spec
                .get("priorityClassName")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            match req.operator.as_str() {
                "Exists" | "" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|c| req.values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !req.values.iter().any(|v| v == c)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether the quota's scopes admit the object (objects other than pods match only
/// quotas without scopes).
fn scopes_match(scopes: &[ScopeRequirement], res: &Resource, obj: &Value) -> bool {
    if scopes.is_empty() {
        return true;
    }
    res.group.is_empty() && res.kind == "Pod" && scopes.iter().all(|s| pod_matches_scope(s, obj))
}

/// `spec.hard` of a quota, parsed.
fn hard_of(q: &Value) -> Usage {
    q.pointer("/spec/hard")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Amount::parse(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn quotas_res() -> Option<&'static Resource> {
    lookup("", "v1", "resourcequotas")
}

/// What the objects of `ns` that `q` matches use of its hard names.
async fn used_by(reg: &dyn Objects, ns: &str, q: &Value) -> ApiResult<Usage> {
    let hard = hard_of(q);
    let scopes = scope_requirements(q);
    let mut used: Usage = hard
        .keys()
        .map(|k| {
            (
                k.clone(),
                Amount {
                    milli: 0,
                    like: String::new(),
                },
            )
        })
        .collect();
    for res in RESOURCES.iter().filter(|r| {
        // events.k8s.io Events are the core Events again.
        r.namespaced && r.group != "events.k8s.io" && hard.keys().any(|k| tracks(r, k))
    }) {
        for obj in reg
            .list(res, Some(ns), &ListOptions::default())
            .await?
            .items
        {
            if !scopes_match(&scopes, res, &obj) {
                continue;
            }
            for (k, v) in usage(res, &obj) {
                if let Some(u) = used.get_mut(&k) {
                    u.add(&v);
                }
            }
        }
    }
    Ok(used)
}

/// `podEvaluator.Constraints`: with cpu or memory under quota every container must say
/// how much it requests (or limits).
fn pod_constraints(pod: &Value, required: &BTreeSet<&str>) -> Option<String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: Vec<&str> = VALIDATED
        .into_iter()
        .filter(|r| required.contains(r))
        .collect();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["containers", "initContainers"] {
        for c in pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let has = compute_usage(&container_list(c, "requests"), &container_list(c, "limits"));
            for r in &required {
                if !has.contains_key(*r) {
                    missing
                        .entry(r)
                        .or_default()
                        .insert(name_of_container(c).to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

fn name_of_container(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Refuses `obj` (about to be created) if it would exceed a quota of its namespace.
pub async fn admit(reg: &dyn Objects, res: &Resource, obj: &Value) -> ApiResult<()> {
    check(reg, res, obj, usage(res, obj), true).await
}

/// Quota admission of an update: what it adds to the object's usage (a claim that
/// grows, a Service that takes node ports) must fit, as the quota evaluator checks
/// updates; what it gives back needs no check.
pub async fn admit_update(
    reg: &dyn Objects,
    res: &Resource,
    old: &Value,
    new: &Value,
) -> ApiResult<()> {
    let was = usage(res, old);
    let delta: Usage = usage(res, new)
        .into_iter()
        .filter_map(|(k, v)| {
            let before = was.get(&k).map_or(0, |a| a.milli);
            (v.milli > before).then(|| {
                let grown = Amount {
                    milli: v.milli - before,
                    like: v.like,
                };
                (k, grown)
            })
        })
        .collect();
    if delta.is_empty() {
        return Ok(());
    }
    check(reg, res, new, delta, false).await
}

/// Checks `delta` more of `obj`'s resources against the quotas of its namespace (and,
/// for a new pod, that it states what they constrain).
async fn check(
    reg: &dyn Objects,
    res: &Resource,
    obj: &Value,
    delta: Usage,
    creating: bool,
) -> ApiResult<()> {
    let Some(ns) = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|_| res.namespaced)
    else {
        return Ok(());
    };
    let Some(qres) = quotas_res() else {
        return Ok(());
    };
    // The quotas as the watch cache holds them now, as kube-apiserver's admission reads
    // them from its informer.
    let mut quotas = reg.list(qres, Some(ns), &ListOptions::any()).await?.items;
    if quotas.is_empty() {
        return Ok(());
    }
    quotas.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let name = name_of(obj);
    let plural = if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    };
    let forbidden =
        |msg: String| ApiError::forbidden(format!("{plural} \"{name}\" is forbidden: {msg}"));
    // The quotas that match: one of their names is tracked here, and the scopes admit it.
    let matching: Vec<&Value> = quotas
        .iter()
        .filter(|q| {
            hard_of(q).keys().any(|k| tracks(res, k))
                && scopes_match(&scope_requirements(q), res, obj)
        })
        .collect();
    if creating && res.group.is_empty() && res.kind == "Pod" {
        for q in &matching {
            let hard = hard_of(q);
            let required: BTreeSet<&str> = hard.keys().map(String::as_str).collect();
            if let Some(msg) = pod_constraints(obj, &required) {
                return Err(forbidden(format!("failed quota: {}: {msg}", name_of(q))));
            }
        }
    }
    for q in matching {
        let hard = hard_of(q);
        let requested: Usage = delta
            .iter()
            .filter(|(k, _)| hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let used = used_by(reg, ns, q).await?;
        let exceeded: Vec<&String> = requested
            .iter()
            .filter(|(k, v)| {
                let now = used.get(*k).map_or(0, |u| u.milli);
                hard.get(*k).is_some_and(|h| now + v.milli > h.milli)
            })
            .map(|(k, _)| k)
            .collect();
        if exceeded.is_empty() {
            continue;
        }
        let list = |m: &Usage| {
            exceeded
                .iter()
                .map(|k| {
                    let text = m.get(*k).map_or_else(|| "0".to_string(), Amount::text);
                    format!("{k}={text}")
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        return Err(forbidden(format!(
            "exceeded quota: {}, requested: {}, used: {}, limited: {}",
            name_of(q),
            list(&requested),
            list(&used),
            list(&hard)
        )));
    }
    Ok(())
}

/// Recomputes `status.hard` and `status.used` of the quotas in `ns` that track `res`.
pub async fn refresh(reg: &dyn Objects, res: &Resource, ns: &str) -> ApiResult<()> {
    let Some(qres) = quotas_res() else {
        return Ok(());
    };
    // A namespace the cache shows without quotas has none to refresh (a quota created
    // meanwhile counts usage itself, and the resync catches any race).
    if res.kind != "ResourceQuota"
        && reg
            .list(qres, Some(ns), &ListOptions::any())
            .await?
            .items
            .is_empty()
    {
        return Ok(());
    }
    // Consistent: a quota just created is refreshed by its own creation.
    let quotas = reg
        .list(qres, Some(ns), &ListOptions::default())
        .await?
        .items;
    for q in quotas {
        let hard = hard_of(&q);
        if res.kind != "ResourceQuota" && !hard.keys().any(|k| tracks(res, k)) {
            continue;
        }
        refresh_one(reg, ns, &q).await?;
    }
    Ok(())
}

/// The quota hook after writes: usage recounted after creates and removals in a
/// namespace, and after a pod's phase changes (terminal pods stop counting).
pub struct Refresh;

#[async_trait::async_trait]
impl AfterWrite for Refresh {
    async fn after_write(
        &self,
        objs: &dyn Objects,
        res: &Resource,
        ns: Option<&str>,
        old: Option<&Value>,
        new: Option<&Value>,
    ) -> ApiResult<()> {
        let Some(ns) = ns else {
            return Ok(());
        };
        if let (Some(old), Some(new)) = (old, new) {
            let phase = |o: &Value| o.pointer("/status/phase").cloned();
            if res.kind != "Pod" || phase(old) == phase(new) {
                return Ok(());
            }
        }
        refresh(objs, res, ns).await
    }
}

/// How often every quota's usage is recounted, whatever was seen to change (the
/// resource quota controller's full resync).
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(15);

/// Recounts the usage of every quota.
pub async fn resync(reg: &dyn Objects) -> ApiResult<()> {
    let Some(qres) = quotas_res() else {
        return Ok(());
    };
    for q in reg.list(qres, None, &ListOptions::default()).await?.items {
        let ns = q
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        refresh_one(reg, &ns, &q).await?;
    }
    Ok(())
}

/// Writes quota `q`'s status from a fresh count, if it changed.
async fn refresh_one(reg: &dyn Objects, ns: &str, q: &Value) -> ApiResult<()> {
    let Some(qres) = quotas_res() else {
        return Ok(());
    };
    {
        let used: serde_json::Map<String, Value> = used_by(reg, ns, q)
            .await?
            .into_iter()
            .map(|(k, v)| (k, json!(v.text())))
            .collect();
        let hard = q.pointer("/spec/hard").cloned().unwrap_or(json!({}));
        let status = json!({"hard": hard, "used": used});
        if q.get("status") == Some(&status) {
            return Ok(());
        }
        let name = name_of(q).to_string();
        let result = reg.write_status(qres, Some(ns), &name, status).await;
        match result {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(u: &Usage, k: &str) -> Option<i128> {
        u.get(k).map(|a| a.milli)
    }

    #[test]
    fn pod_usage() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}});
        let u = usage(pods, &pod);
        assert_eq!(milli(&u, "pods"), Some(1000));
        assert_eq!(milli(&u, "count/pods"), Some(1000));
        assert_eq!(milli(&u, "requests.cpu"), Some(1000));
        assert_eq!(milli(&u, "cpu"), Some(1000));
        assert_eq!(u["requests.memory"].text(), "128Mi");
        assert_eq!(u["limits.memory"].text(), "1Gi");
        assert_eq!(milli(&u, "limits.cpu"), None);
        let required: BTreeSet<&str> = ["limits.cpu", "requests.cpu", "pods"].into();
        assert_eq!(
            pod_constraints(&pod, &required).as_deref(),
            Some("must specify limits.cpu for: a,b,i")
        );
        let mut done = pod.clone();
        done["status"] = json!({"phase": "Succeeded"});
        let u = usage(pods, &done);
        assert_eq!(milli(&u, "count/pods"), Some(1000));
        assert_eq!(milli(&u, "pods"), None);
        assert!(tracks(pods, "requests.nvidia.com/gpu"));
        assert!(!tracks(pods, "requests.storage"));
        let deploys = lookup("apps", "v1", "deployments").unwrap();
        assert!(tracks(deploys, "count/deployments.apps"));
        assert!(!tracks(deploys, "pods"));
    }

    #[test]
    fn scopes() {
        let be = json!({"spec": {"containers": [{"name": "a"}], "priorityClassName": "high"}});
        let burst = json!({"spec": {"activeDeadlineSeconds": 10, "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        let req = |scope: &str, op: &str, values: &[&str]| ScopeRequirement {
            scope: scope.into(),
            operator: op.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        assert!(pod_matches_scope(&req("BestEffort", "Exists", &[]), &be));
        assert!(!pod_matches_scope(
            &req("BestEffort", "Exists", &[]),
            &burst
        ));
        assert!(pod_matches_scope(
            &req("NotBestEffort", "Exists", &[]),
            &burst
        ));
        assert!(pod_matches_scope(
            &req("Terminating", "Exists", &[]),
            &burst
        ));
        assert!(pod_matches_scope(
            &req("NotTerminating", "Exists", &[]),
            &be
        ));
        assert!(pod_matches_scope(
            &req("PriorityClass", "In", &["high"]),
            &be
        ));
        assert!(!pod_matches_scope(
            &req("PriorityClass", "In", &["high"]),
            &burst
        ));
        assert!(pod_matches_scope(
            &req("PriorityClass", "NotIn", &["high"]),
            &burst
        ));
        assert!(pod_matches_scope(
            &req("PriorityClass", "DoesNotExist", &[]),
            &burst
        ));
        assert!(pod_matches_scope(&req("PriorityClass", "Exists", &[]), &be));
        let affine = json!({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"namespaces": ["x"], "topologyKey": "k"}}]}}}});
        assert!(pod_matches_scope(
            &req("CrossNamespacePodAffinity", "Exists", &[]),
            &affine
        ));
        assert!(!pod_matches_scope(
            &req("CrossNamespacePodAffinity", "Exists", &[]),
            &be
        ));
    }
}
