//! Per-kind behaviour behind one object-safe trait, [`Strategy`], looked up in one table
//! keyed by group and resource ([`of`]); the generic registry, strategy steps, validation
//! and admission chain name no kind. A kind implements only what differs from the
//! defaults: its typed schema, its defaults, the status a new object starts with, what an
//! update carries over, its validation (on every write, on create, on update),
//! allocations before it is stored, work after it is stored or deleted, what a pending
//! deletion waits for, the fields of field selectors. [`TABLE`] is also the list of
//! served resources (what discovery says about each, beside its strategy), so adding a
//! built-in kind is one file here and one row in [`TABLE`]; a
//! CustomResourceDefinition can become a `Strategy` built from its schema (every method
//! takes `&self` and the object as JSON).
//!
//! The traits are in `hooks`. Helpers several kinds share stay outside this module and
//! dispatch on no kind: pod spec and template defaults in `defaults`, pod spec, workload
//! and immutable-field checks and the `Cause` constructors in `validation`, common table
//! cells in `cells`.
//!
//! What `kubectl get` prints for a kind, its table's columns and their cells, is
//! [`Columns`], a supertrait of [`Strategy`] implemented at the end of the kind's file; its
//! defaults print the name and age.

use crate::resource::NameRule::*;
use crate::resource::{res, Resource, ALL, NONE};

mod hooks;

mod certificatesigningrequest;
mod clusterrole;
mod clusterrolebinding;
mod configmap;
mod controllerrevision;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod endpointslice;
mod event;
mod horizontalpodautoscaler;
mod ingress;
mod ingressclass;
mod ipaddress;
mod job;
mod lease;
mod limitrange;
mod namespace;
mod networkpolicy;
mod node;
mod persistentvolume;
mod persistentvolumeclaim;
mod pod;
mod poddisruptionbudget;
mod podtemplate;
mod priorityclass;
mod replicaset;
mod replicationcontroller;
mod resourcequota;
mod role;
mod rolebinding;
mod secret;
pub(crate) mod service;
mod serviceaccount;
mod servicecidr;
mod statefulset;
mod storageclass;

use hooks::Generic;
pub(crate) use hooks::{Columns, Strategy};

/// Every served resource, in discovery order within a group-version, and its kind's
/// strategy ([`Generic`] for a kind with no behaviour of its own). Columns of a row:
/// group, version, kind, plural, singular, namespaced, shortNames, categories, status
/// subresource, scale subresource, generation, name rule; then the strategy.
#[rustfmt::skip]
pub(crate) const TABLE: &[(Resource, &dyn Strategy)] = &[
    // core/v1
    (res("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], NONE, false, false, false, Subdomain), &configmap::ConfigMap),
    (res("", "v1", "Endpoints", "endpoints", "endpoints", true, &["ep"], NONE, false, false, false, Subdomain), &endpoints::Endpoints),
    (res("", "v1", "Event", "events", "event", true, &["ev"], NONE, false, false, false, Subdomain), &event::Event),
    (res("", "v1", "LimitRange", "limitranges", "limitrange", true, &["limits"], NONE, false, false, false, Subdomain), &limitrange::LimitRange),
    (res("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], NONE, true, false, false, Label), &namespace::Namespace),
    (res("", "v1", "Node", "nodes", "node", false, &["no"], NONE, true, false, false, Subdomain), &node::Node),
    (res("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, &["pvc"], NONE, true, false, false, Subdomain), &persistentvolumeclaim::PersistentVolumeClaim),
    (res("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"], NONE, true, false, false, Subdomain), &persistentvolume::PersistentVolume),
    (res("", "v1", "Pod", "pods", "pod", true, &["po"], ALL, true, false, false, Subdomain), &pod::Pod),
    (res("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, NONE, NONE, false, false, false, Subdomain), &podtemplate::PodTemplate),
    (res("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, &["rc"], ALL, true, true, true, Subdomain), &replicationcontroller::ReplicationController),
    (res("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"], NONE, true, false, false, Subdomain), &resourcequota::ResourceQuota),
    (res("", "v1", "Secret", "secrets", "secret", true, NONE, NONE, false, false, false, Subdomain), &secret::Secret),
    (res("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"], NONE, false, false, false, Subdomain), &serviceaccount::ServiceAccount),
    (service::RESOURCE, &service::Service),
    // apps/v1
    (res("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, NONE, NONE, false, false, false, Subdomain), &controllerrevision::ControllerRevision),
    (res("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], ALL, true, false, true, Subdomain), &daemonset::DaemonSet),
    (res("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], ALL, true, true, true, Subdomain), &deployment::Deployment),
    (res("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, &["rs"], ALL, true, true, true, Subdomain), &replicaset::ReplicaSet),
    (res("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, &["sts"], ALL, true, true, true, Subdomain), &statefulset::StatefulSet),
    // batch/v1
    (res("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], ALL, true, false, true, Subdomain), &cronjob::CronJob),
    (res("batch", "v1", "Job", "jobs", "job", true, NONE, ALL, true, false, true, Subdomain), &job::Job),
    // certificates.k8s.io/v1
    (res("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", false, &["csr"], NONE, true, false, false, Subdomain), &certificatesigningrequest::CertificateSigningRequest),
    // coordination.k8s.io/v1
    (res("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, NONE, NONE, false, false, false, Subdomain), &lease::Lease),
    // discovery.k8s.io/v1
    (res("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, NONE, NONE, false, false, false, Subdomain), &endpointslice::EndpointSlice),
    // events.k8s.io/v1: a view of core/v1 events
    (res("events.k8s.io", "v1", "Event", "events", "event", true, NONE, NONE, false, false, false, Subdomain), &event::EventsView),
    // networking.k8s.io/v1
    (res("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, NONE, NONE, false, false, false, Subdomain), &ingressclass::IngressClass),
    (res("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, &["ing"], NONE, true, false, true, Subdomain), &ingress::Ingress),
    (res("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"], NONE, false, false, true, Subdomain), &networkpolicy::NetworkPolicy),
    (res("networking.k8s.io", "v1", "IPAddress", "ipaddresses", "ipaddress", false, &["ip"], NONE, false, false, false, Subdomain), &ipaddress::IpAddress),
    (res("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", "servicecidr", false, NONE, NONE, true, false, false, Subdomain), &servicecidr::ServiceCidr),
    // policy/v1
    (res("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], NONE, true, false, true, Subdomain), &poddisruptionbudget::PodDisruptionBudget),
    // rbac.authorization.k8s.io/v1 (enforced by `rbac`)
    (res("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, NONE, NONE, false, false, false, PathSegment), &clusterrolebinding::ClusterRoleBinding),
    (res("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, NONE, NONE, false, false, false, PathSegment), &clusterrole::ClusterRole),
    (res("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, NONE, NONE, false, false, false, PathSegment), &rolebinding::RoleBinding),
    (res("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, NONE, NONE, false, false, false, PathSegment), &role::Role),
    // scheduling.k8s.io/v1
    (res("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"], NONE, false, false, false, Subdomain), &priorityclass::PriorityClass),
    // storage.k8s.io/v1
    (res("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], NONE, false, false, false, Subdomain), &storageclass::StorageClass),
    // authentication.k8s.io/v1 (create only, not stored)
    (res("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, NONE, NONE, false, false, false, Subdomain), &Generic),
    (res("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, NONE, NONE, false, false, false, Subdomain), &Generic),
    // kubectl 1.27's `auth whoami` asks v1beta1 only.
    (res("authentication.k8s.io", "v1beta1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, NONE, NONE, false, false, false, Subdomain), &Generic),
    // authorization.k8s.io/v1 (create only, not stored)
    (res("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false, NONE, NONE, false, false, false, Subdomain), &Generic),
    (res("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", false, NONE, NONE, false, false, false, Subdomain), &Generic),
    (res("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", false, NONE, NONE, false, false, false, Subdomain), &Generic),
    // autoscaling/v2
    (res("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], ALL, true, false, false, Subdomain), &horizontalpodautoscaler::HorizontalPodAutoscaler),
];

/// The strategy of `res`.
pub(crate) fn of(res: &Resource) -> &'static dyn Strategy {
    TABLE
        .iter()
        .find(|(r, _)| r.group == res.group && r.plural == res.plural)
        .map_or(&Generic, |(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every served kind has a row as long as its columns.
    #[test]
    fn every_row_matches_its_columns() {
        let obj = serde_json::json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        for (res, strategy) in TABLE {
            assert_eq!(
                strategy.cells(&obj).len(),
                strategy.columns().len(),
                "{}",
                res.kind
            );
        }
    }

    /// A resource's strategy is the one beside it in the table.
    #[test]
    fn of_finds_the_strategy_beside_the_resource() {
        let obj = serde_json::json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        for (res, strategy) in TABLE {
            assert_eq!(of(res).columns(), strategy.columns(), "{}", res.kind);
            assert_eq!(of(res).cells(&obj), strategy.cells(&obj), "{}", res.kind);
            assert_eq!(
                of(res).field_selectors(),
                strategy.field_selectors(),
                "{}",
                res.kind
            );
        }
    }
}
