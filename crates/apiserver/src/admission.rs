//! Admission on create, as kube-apiserver's default plugins do it (after the namespace
//! lifecycle check): LimitRanger (container defaults, then min/max/ratio of the
//! Container, Pod and PersistentVolumeClaim items of LimitRanges),
//! ServiceAccount (the pod's account must exist; its token, the cluster CA and the
//! namespace are mounted as the `kube-api-access-*` volume), Priority (a pod's
//! `priorityClassName` → `priority` and `preemptionPolicy`; the global default class
//! otherwise), DefaultStorageClass (a claim without `storageClassName` gets the default
//! class), StorageObjectInUseProtection (the `kubernetes.io/pvc-protection` and
//! `kubernetes.io/pv-protection` finalizers), then the validating PodSecurity (see
//! [`crate::podsecurity`]) and, last, ResourceQuota (see [`crate::quota`]). DefaultTolerationSeconds is
//! applied with the pod defaults in [`crate::strategy`].
//!
//! Also what the ServiceAccount and root-CA controllers keep in every namespace: the
//! `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap ([`namespace_defaults`]).

use serde_json::{json, Map, Value};

mod plugins;
pub use plugins::Plugins;

use crate::admit::{Admission, Objects};
use crate::error::ApiError;
use crate::options::ListOptions;
use crate::quota::{container_list, pod_resources, Amount, Usage};
use crate::resource::Resource;
use crate::resources::lookup;
use crate::subresource::Subresource;

use crate::error::ApiResult;

/// The admission chain of writes, in kube-apiserver's order: the mutating plugins
/// (LimitRanger, ServiceAccount, Priority, DefaultStorageClass, in-use protection), then
/// PodSecurity (see [`crate::podsecurity`]) with its configuration, then ResourceQuota (see
/// [`crate::quota`]).
pub struct Chain {
    pod_security: crate::podsecurity::Config,
    /// The optional plugins turned on (`--enable-admission-plugins`).
    plugins: Plugins,
}

impl Chain {
    pub fn new(pod_security: crate::podsecurity::Config, plugins: Plugins) -> Chain {
        Chain {
            pod_security,
            plugins,
        }
    }

    /// DenyServiceExternalIPs, when on: no Service gains an external IP.
    fn deny_external_ips(&self, res: &Resource, old: Option<&Value>, new: &Value) -> ApiResult<()> {
        if self.plugins.deny_service_external_ips
            && is(res, "services")
            && plugins::external_ips_denied(old, new)
        {
            return Err(forbidden(
                "services",
                new,
                "Use of external IPs is denied by admission control",
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Admission for Chain {
    /// Mutating admission of a new object, then PodSecurity and quota. (The pod's QoS
    /// class is set again afterwards, by its strategy's `before_create`.)
    async fn admit_create(
        &self,
        reg: &dyn Objects,
        res: &Resource,
        obj: &mut Value,
    ) -> ApiResult<()> {
        // Each plugin admits only the kinds it is about.
        if self.plugins.always_pull_images && is(res, "pods") {
            plugins::always_pull(obj);
        }
        limit_ranger(reg, res, obj).await?;
        service_account(reg, res, obj).await?;
        priority(reg, res, obj).await?;
        default_storage_class(reg, res, obj).await?;
        in_use_protection(res, obj);
        crate::podsecurity::admit(reg, &self.pod_security, res, None, obj).await?;
        self.deny_external_ips(res, None, obj)?;
        crate::quota::admit(reg, res, obj).await
    }

    /// The admission plugins that see updates: LimitRanger (for a claim whose request
    /// changes), PodSecurity, then ResourceQuota for what the update adds.
    async fn admit_update(
        &self,
        reg: &dyn Objects,
        res: &Resource,
        old: &Value,
        new: &Value,
    ) -> ApiResult<()> {
        limit_ranger_update(reg, res, old, new).await?;
        if self.plugins.always_pull_images && is(res, "pods") {
            if let Some(why) = plugins::pull_policy_weakened(new) {
                return Err(forbidden("pods", new, &why));
            }
        }
        self.deny_external_ips(res, Some(old), new)?;
        crate::podsecurity::admit(reg, &self.pod_security, res, Some(old), new).await?;
        crate::quota::admit_update(reg, res, old, new).await
    }

    /// Ephemeral containers pass PodSecurity.
    async fn admit_subresource(
        &self,
        reg: &dyn Objects,
        res: &Resource,
        sub: Subresource,
        old: &Value,
        new: &Value,
    ) -> ApiResult<()> {
        if sub == Subresource::EphemeralContainers {
            crate::podsecurity::admit(reg, &self.pod_security, res, Some(old), new).await?;
        }
        Ok(())
    }
}

/// Whether `res` is the core group's `plural` (what a plugin is about).
fn is(res: &Resource, plural: &str) -> bool {
    res.group.is_empty() && res.plural == plural
}

fn forbidden(res_plural: &str, obj: &Value, msg: &str) -> ApiError {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    ApiError::forbidden(format!("{res_plural} \"{name}\" is forbidden: {msg}"))
}

/// Makes sure `ns` has its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap.
pub async fn namespace_defaults(reg: &dyn Objects, ns: &str) -> ApiResult<()> {
    if let Some(sa) = lookup("", "v1", "serviceaccounts") {
        reg.ensure(sa, Some(ns), json!({"metadata": {"name": "default"}}))
            .await?;
    }
    if let (Some(cm), Some(ca)) = (lookup("", "v1", "configmaps"), reg.root_ca()) {
        reg.ensure(
            cm,
            Some(ns),
            json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": ca}}),
        )
        .await?;
    }
    Ok(())
}

pub const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// ServiceAccount, for pods.
async fn service_account(reg: &dyn Objects, res: &Resource, pod: &mut Value) -> ApiResult<()> {
    if !is(res, "pods") {
        return Ok(());
    }
    if pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
    {
        return Ok(());
    }
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_str))
        .find(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    let Some(sares) = lookup("", "v1", "serviceaccounts") else {
        return Ok(());
    };
    let sa = match reg.get_cached(sares, Some(&ns), &name).await {
        Ok(sa) => sa,
        Err(e) if e.code == 404 => {
            return Err(forbidden(
                "pods",
                pod,
                &format!(
                "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
            ),
            ))
        }
        Err(e) => return Err(e),
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    // The ServiceAccount plugin: a pod naming no pull secrets gets its account's.
    let has_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_secrets {
        if let Some(list) = sa
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            spec.insert("imagePullSecrets".into(), Value::Array(list.clone()));
        }
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let mounted = ["containers", "initContainers"].iter().any(|list| {
        spec.get(*list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c.get("volumeMounts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SA_MOUNT_PATH))
    });
    if mounted {
        return Ok(());
    }
    let volume = format!("kube-api-access-{}", crate::strategy::random_suffix());
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}));
    }
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(m) = mounts.as_array_mut() {
                m.push(json!({"name": volume, "readOnly": true, "mountPath": SA_MOUNT_PATH}));
            }
        }
    }
    Ok(())
}

/// The LimitRanges of a namespace, with the API defaults of their items applied (for
/// objects stored before the server applied them).
async fn limit_ranges(reg: &dyn Objects, ns: &str) -> ApiResult<Vec<Value>> {
    let Some(lrres) = lookup("", "v1", "limitranges") else {
        return Ok(Vec::new());
    };
    let mut ranges = reg.list(lrres, Some(ns), &ListOptions::any()).await?.items;
    for r in &mut ranges {
        crate::strategy::apply_defaults(lrres, r);
    }
    Ok(ranges)
}

fn limit_items<'a>(range: &'a Value, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |i| i.get("type").and_then(Value::as_str) == Some(ty))
}

/// A quantity map of a LimitRange item, sorted by resource name.
fn item_list(item: &Value, field: &str) -> Vec<(String, Amount)> {
    item.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Amount::parse(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// `minConstraint`.
fn min_constraint(
    ty: &str,
    k: &str,
    enforced: &Amount,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let e = enforced.text();
    match (req.get(k), lim.get(k)) {
        (None, _) => Some(format!(
            "minimum {k} usage per {ty} is {e}.  No request is specified"
        )),
        (Some(r), _) if r.milli < enforced.milli => Some(format!(
            "minimum {k} usage per {ty} is {e}, but request is {}",
            r.text()
        )),
        (_, Some(l)) if l.milli < enforced.milli => Some(format!(
            "minimum {k} usage per {ty} is {e}, but limit is {}",
            l.text()
        )),
        _ => None,
    }
}

/// `maxConstraint`.
fn max_constraint(
    ty: &str,
    k: &str,
    enforced: &Amount,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let e = enforced.text();
    match (req.get(k), lim.get(k)) {
        (_, None) => Some(format!(
            "maximum {k} usage per {ty} is {e}.  No limit is specified"
        )),
        (_, Some(l)) if l.milli > enforced.milli => Some(format!(
            "maximum {k} usage per {ty} is {e}, but limit is {}",
            l.text()
        )),
        (Some(r), _) if r.milli > enforced.milli => Some(format!(
            "maximum {k} usage per {ty} is {e}, but request is {}",
            r.text()
        )),
        _ => None,
    }
}

/// `maxRequestConstraint` (claims: only requests are user input).
fn max_request_constraint(ty: &str, k: &str, enforced: &Amount, req: &Usage) -> Option<String> {
    let e = enforced.text();
    match req.get(k) {
        None => Some(format!(
            "maximum {k} usage per {ty} is {e}.  No request is specified"
        )),
        Some(r) if r.milli > enforced.milli => Some(format!(
            "maximum {k} usage per {ty} is {e}, but request is {}",
            r.text()
        )),
        _ => None,
    }
}

/// `limitRequestRatioConstraint`.
fn ratio_constraint(
    ty: &str,
    k: &str,
    enforced: &Amount,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let e = enforced.text();
    let r = req.get(k).map_or(0, |a| a.milli);
    let l = lim.get(k).map_or(0, |a| a.milli);
    if r == 0 {
        return Some(format!("{k} max limit to request ratio per {ty} is {e}, but no request is specified or request is 0"));
    }
    if l == 0 {
        return Some(format!("{k} max limit to request ratio per {ty} is {e}, but no limit is specified or limit is 0"));
    }
    let ratio = l as f64 / r as f64;
    (ratio * 1000.0 > enforced.milli as f64).then(|| {
        format!("{k} max limit to request ratio per {ty} is {e}, but provided ratio is {ratio:.6}")
    })
}

/// The checks of one item (min, max, ratio) against requests and limits.
fn check_item(ty: &str, item: &Value, req: &Usage, lim: &Usage, errors: &mut Vec<String>) {
    for (k, v) in item_list(item, "min") {
        errors.extend(min_constraint(ty, &k, &v, req, lim));
    }
    for (k, v) in item_list(item, "max") {
        errors.extend(max_constraint(ty, &k, &v, req, lim));
    }
    for (k, v) in item_list(item, "maxLimitRequestRatio") {
        errors.extend(ratio_constraint(ty, &k, &v, req, lim));
    }
}

/// `utilerrors.NewAggregate(errs).Error()`: one message as is, several in brackets
/// (duplicates once).
fn aggregate(errors: Vec<String>) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = errors
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    match unique.len() {
        0 => None,
        1 => unique.into_iter().next(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

/// LimitRanger for pods: the Container items' defaults are merged into every container
/// (noted in the `kubernetes.io/limit-ranger` annotation), then each LimitRange's
/// Container items are checked per container and its Pod items against the pod's
/// effective requests and limits.
async fn limit_ranger_pod(reg: &dyn Objects, pod: &mut Value) -> ApiResult<()> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let ranges = limit_ranges(reg, &ns).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    for range in &ranges {
        let mut default_limits = Map::new();
        let mut default_requests = Map::new();
        for item in limit_items(range, "Container") {
            for (field, into) in [
                ("default", &mut default_limits),
                ("defaultRequest", &mut default_requests),
            ] {
                if let Some(m) = item.get(field).and_then(Value::as_object) {
                    into.extend(m.clone());
                }
            }
        }
        if default_limits.is_empty() && default_requests.is_empty() {
            continue;
        }
        let mut notes = Vec::new();
        for (list, what) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            for c in pod
                .pointer_mut(&format!("/spec/{list}"))
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                let cname = c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let resources = c.entry("resources").or_insert_with(|| json!({}));
                if !resources.is_object() {
                    *resources = json!({});
                }
                let mut set = |field: &str, defaults: &Map<String, Value>| -> Vec<String> {
                    let mut added = Vec::new();
                    if let Some(r) = resources.as_object_mut() {
                        let target = r.entry(field).or_insert_with(|| json!({}));
                        if !target.is_object() {
                            *target = json!({});
                        }
                        if let Some(t) = target.as_object_mut() {
                            for (k, v) in defaults {
                                if !t.contains_key(k) {
                                    t.insert(k.clone(), v.clone());
                                    added.push(k.clone());
                                }
                            }
                        }
                    }
                    added.sort();
                    added
                };
                let requests = set("requests", &default_requests);
                let limits = set("limits", &default_limits);
                if !requests.is_empty() {
                    notes.push(format!(
                        "{} request for {what} {cname}",
                        requests.join(", ")
                    ));
                }
                if !limits.is_empty() {
                    notes.push(format!("{} limit for {what} {cname}", limits.join(", ")));
                }
            }
        }
        if !notes.is_empty() {
            let meta = pod
                .as_object_mut()
                .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
            if let Some(Value::Object(meta)) = meta {
                let ann = meta.entry("annotations").or_insert_with(|| json!({}));
                if !ann.is_object() {
                    *ann = json!({});
                }
                ann["kubernetes.io/limit-ranger"] =
                    json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
            }
        }
    }
    for range in &ranges {
        let mut errors = Vec::new();
        for item in range
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match item.get("type").and_then(Value::as_str) {
                Some("Container") => {
                    for list in ["containers", "initContainers"] {
                        for c in pod
                            .pointer(&format!("/spec/{list}"))
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let req = container_list(c, "requests");
                            let lim = container_list(c, "limits");
                            check_item("Container", item, &req, &lim, &mut errors);
                        }
                    }
                }
                Some("Pod") => {
                    let req = pod_resources(pod, "requests");
                    let lim = pod_resources(pod, "limits");
                    check_item("Pod", item, &req, &lim, &mut errors);
                }
                _ => {}
            }
        }
        if let Some(msg) = aggregate(errors) {
            return Err(forbidden("pods", pod, &msg));
        }
    }
    Ok(())
}

/// LimitRanger for claims: min and max of the PersistentVolumeClaim items against the
/// claim's requests (claims get no defaults).
/// LimitRanger on a new object: pods and claims.
async fn limit_ranger(reg: &dyn Objects, res: &Resource, obj: &mut Value) -> ApiResult<()> {
    if is(res, "pods") {
        limit_ranger_pod(reg, obj).await
    } else if is(res, "persistentvolumeclaims") {
        limit_ranger_claim(reg, obj).await
    } else {
        Ok(())
    }
}

/// LimitRanger on an update: a claim whose request changes (its min and max storage).
async fn limit_ranger_update(
    reg: &dyn Objects,
    res: &Resource,
    old: &Value,
    new: &Value,
) -> ApiResult<()> {
    let requests = |o: &Value| o.pointer("/spec/resources/requests").cloned();
    if is(res, "persistentvolumeclaims") && requests(old) != requests(new) {
        limit_ranger_claim(reg, new).await?;
    }
    Ok(())
}

/// LimitRanger for claims: the min and max storage of PersistentVolumeClaim items.
async fn limit_ranger_claim(reg: &dyn Objects, pvc: &Value) -> ApiResult<()> {
    let ns = pvc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let requests = pvc
        .get("spec")
        .map(|spec| container_list(spec, "requests"))
        .unwrap_or_default();
    let ty = "PersistentVolumeClaim";
    for range in limit_ranges(reg, &ns).await? {
        let mut errors = Vec::new();
        for item in limit_items(&range, ty) {
            for (k, v) in item_list(item, "min") {
                errors.extend(min_constraint(ty, &k, &v, &requests, &Usage::new()));
            }
            for (k, v) in item_list(item, "max") {
                errors.extend(max_request_constraint(ty, &k, &v, &requests));
            }
        }
        if let Some(msg) = aggregate(errors) {
            return Err(forbidden("persistentvolumeclaims", pvc, &msg));
        }
    }
    Ok(())
}

async fn classes(reg: &dyn Objects, group: &str, plural: &str) -> ApiResult<Vec<Value>> {
    let Some(res) = lookup(group, "v1", plural) else {
        return Ok(Vec::new());
    };
    Ok(reg.list(res, None, &ListOptions::default()).await?.items)
}

/// Priority, for pods.
async fn priority(reg: &dyn Objects, res: &Resource, pod: &mut Value) -> ApiResult<()> {
    if !is(res, "pods") {
        return Ok(());
    }
    let wanted = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let all = classes(reg, "scheduling.k8s.io", "priorityclasses").await?;
    let class = if wanted.is_empty() {
        all.iter()
            .find(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
    } else {
        let found = all
            .iter()
            .find(|c| c.pointer("/metadata/name").and_then(Value::as_str) == Some(wanted.as_str()));
        if found.is_none() {
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: no PriorityClass with name {wanted} was found"
            )));
        }
        found
    };
    let (value, policy, class_name) = match class {
        Some(c) => (
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
            c.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string(), String::new()),
    };
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("priority".into(), json!(value));
        spec.insert("preemptionPolicy".into(), json!(policy));
        if !class_name.is_empty() {
            spec.insert("priorityClassName".into(), json!(class_name));
        }
    }
    Ok(())
}

/// StorageObjectInUseProtection: claims and volumes carry the finalizer their
/// protection controller removes once nothing uses them.
fn in_use_protection(res: &Resource, obj: &mut Value) {
    let finalizer = if is(res, "persistentvolumeclaims") {
        "kubernetes.io/pvc-protection"
    } else if is(res, "persistentvolumes") {
        "kubernetes.io/pv-protection"
    } else {
        return;
    };
    let meta = &mut obj["metadata"];
    if !meta["finalizers"].is_array() {
        meta["finalizers"] = json!([]);
    }
    if let Some(f) = meta["finalizers"].as_array_mut() {
        if !f.iter().any(|x| x == finalizer) {
            f.push(json!(finalizer));
        }
    }
}

/// DefaultStorageClass: a claim without `storageClassName` gets the default class.
async fn default_storage_class(
    reg: &dyn Objects,
    res: &Resource,
    pvc: &mut Value,
) -> ApiResult<()> {
    if !is(res, "persistentvolumeclaims")
        || pvc
            .pointer("/spec/storageClassName")
            .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    let all = classes(reg, "storage.k8s.io", "storageclasses").await?;
    let default = all.iter().find(|c| {
        c.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
            .and_then(Value::as_str)
            == Some("true")
    });
    if let (Some(class), Some(spec)) = (default, pvc.get_mut("spec").and_then(Value::as_object_mut))
    {
        if let Some(name) = class.pointer("/metadata/name") {
            spec.insert("storageClassName".into(), name.clone());
        }
    }
    Ok(())
}
