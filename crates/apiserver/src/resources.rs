//! The table of served resources: for each, what discovery says about it and which generic
//! behaviours (status and scale subresources, generation, name rules) the store applies.
//! Per-kind behaviour (defaults, validation, allocation, table columns) is in
//! [`crate::kinds`]: one strategy per kind (with its table columns), keyed by group and resource.

/// How names of a resource are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most resources).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1035 label (services: must start with a letter).
    Label1035,
    /// Any string usable as a path segment (RBAC objects: `system:controller:foo`).
    PathSegment,
}

/// One served resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource (the main resource then ignores status changes).
    pub status: bool,
    /// Has a `/scale` subresource (`spec.replicas`).
    pub scale: bool,
    /// `metadata.generation` is kept and bumped on spec changes.
    pub generation: bool,
    pub name_rule: NameRule,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group as used in storage keys ("core" for the core group).
    pub fn storage_group(&self) -> &'static str {
        // events.k8s.io/v1 Events are stored as core/v1 Events (see `convert`).
        if self.group.is_empty() || self.group == "events.k8s.io" {
            "core"
        } else {
            self.group
        }
    }

    /// The verbs of the main resource.
    pub fn verbs(&self) -> &'static [&'static str] {
        if matches!(
            self.kind,
            "SelfSubjectReview"
                | "TokenReview"
                | "SelfSubjectAccessReview"
                | "SelfSubjectRulesReview"
                | "SubjectAccessReview"
        ) {
            return &["create"];
        }
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

#[allow(clippy::too_many_arguments)]
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: bool,
    name_rule: NameRule,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        status,
        scale,
        generation,
        name_rule,
    }
}

use NameRule::*;
const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Every served resource. Order within a group-version is discovery order.
/// Columns: group, version, kind, plural, singular, namespaced, shortNames, categories,
/// status subresource, scale subresource, generation, name rule.
#[rustfmt::skip]
pub static RESOURCES: &[Resource] = &[
    // core/v1
    res("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], NONE, false, false, false, Subdomain),
    res("", "v1", "Endpoints", "endpoints", "endpoints", true, &["ep"], NONE, false, false, false, Subdomain),
    res("", "v1", "Event", "events", "event", true, &["ev"], NONE, false, false, false, Subdomain),
    res("", "v1", "LimitRange", "limitranges", "limitrange", true, &["limits"], NONE, false, false, false, Subdomain),
    res("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], NONE, true, false, false, Label),
    res("", "v1", "Node", "nodes", "node", false, &["no"], NONE, true, false, false, Subdomain),
    res("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, &["pvc"], NONE, true, false, false, Subdomain),
    res("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"], NONE, true, false, false, Subdomain),
    res("", "v1", "Pod", "pods", "pod", true, &["po"], ALL, true, false, false, Subdomain),
    res("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, NONE, NONE, false, false, false, Subdomain),
    res("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, &["rc"], ALL, true, true, true, Subdomain),
    res("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"], NONE, true, false, false, Subdomain),
    res("", "v1", "Secret", "secrets", "secret", true, NONE, NONE, false, false, false, Subdomain),
    res("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"], NONE, false, false, false, Subdomain),
    res("", "v1", "Service", "services", "service", true, &["svc"], ALL, true, false, false, Label1035),
    // apps/v1
    res("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, NONE, NONE, false, false, false, Subdomain),
    res("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], ALL, true, false, true, Subdomain),
    res("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], ALL, true, true, true, Subdomain),
    res("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, &["rs"], ALL, true, true, true, Subdomain),
    res("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, &["sts"], ALL, true, true, true, Subdomain),
    // batch/v1
    res("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], ALL, true, false, true, Subdomain),
    res("batch", "v1", "Job", "jobs", "job", true, NONE, ALL, true, false, true, Subdomain),
    // certificates.k8s.io/v1
    res("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", false, &["csr"], NONE, true, false, false, Subdomain),
    // coordination.k8s.io/v1
    res("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, NONE, NONE, false, false, false, Subdomain),
    // discovery.k8s.io/v1
    res("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, NONE, NONE, false, false, false, Subdomain),
    // events.k8s.io/v1: a view of core/v1 events
    res("events.k8s.io", "v1", "Event", "events", "event", true, NONE, NONE, false, false, false, Subdomain),
    // networking.k8s.io/v1
    res("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, NONE, NONE, false, false, false, Subdomain),
    res("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, &["ing"], NONE, true, false, true, Subdomain),
    res("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"], NONE, false, false, true, Subdomain),
    // policy/v1
    res("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], NONE, true, false, true, Subdomain),
    // rbac.authorization.k8s.io/v1 (enforced by `rbac`)
    res("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, NONE, NONE, false, false, false, PathSegment),
    res("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, NONE, NONE, false, false, false, PathSegment),
    res("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, NONE, NONE, false, false, false, PathSegment),
    res("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, NONE, NONE, false, false, false, PathSegment),
    // scheduling.k8s.io/v1
    res("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"], NONE, false, false, false, Subdomain),
    // storage.k8s.io/v1
    res("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], NONE, false, false, false, Subdomain),
    // authentication.k8s.io/v1 (create only, not stored)
    res("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, NONE, NONE, false, false, false, Subdomain),
    res("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, NONE, NONE, false, false, false, Subdomain),
    // kubectl 1.27's `auth whoami` asks v1beta1 only.
    res("authentication.k8s.io", "v1beta1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, NONE, NONE, false, false, false, Subdomain),
    // authorization.k8s.io/v1 (create only, not stored)
    res("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false, NONE, NONE, false, false, false, Subdomain),
    res("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", false, NONE, NONE, false, false, false, Subdomain),
    res("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", false, NONE, NONE, false, false, false, Subdomain),
    // autoscaling/v2
    res("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], ALL, true, false, false, Subdomain),
];

/// The API groups other than core, in discovery order, each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version)
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group-version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// Looks up a resource by group, version and plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for r in RESOURCES {
            assert!(
                seen.insert((r.group, r.version, r.plural)),
                "duplicate {}",
                r.plural
            );
            assert_eq!(r.singular, r.kind.to_lowercase());
        }
        assert!(lookup("apps", "v1", "deployments").is_some_and(|r| r.scale));
        assert!(groups().iter().any(|(g, _)| *g == "batch"));
    }
}
