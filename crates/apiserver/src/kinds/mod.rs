//! Per-kind behaviour behind one object-safe trait, [`Strategy`], looked up in one table
//! keyed by group and resource ([`of`]); the generic registry, strategy steps, validation
//! and admission chain name no kind. A kind implements only what differs from the
//! defaults: its typed schema, its defaults, the status a new object starts with, what an
//! update carries over, its validation (on every write, on create, on update),
//! allocations before it is stored, work after it is stored or deleted, what a pending
//! deletion waits for, the fields of
//! field selectors. Adding a
//! built-in kind's behaviour is one file here and one row in [`TABLE`]; a
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

use crate::resources::Resource;

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
mod service;
mod serviceaccount;
mod statefulset;
mod storageclass;

use hooks::Generic;
pub(crate) use hooks::{Columns, Strategy};

/// The kinds with behaviour (or a typed schema) of their own: (group, resource) and
/// their strategy.
static TABLE: &[(&str, &str, &dyn Strategy)] = &[
    ("", "configmaps", &configmap::ConfigMap),
    ("", "endpoints", &endpoints::Endpoints),
    ("", "events", &event::Event),
    ("", "limitranges", &limitrange::LimitRange),
    ("", "namespaces", &namespace::Namespace),
    ("", "nodes", &node::Node),
    (
        "",
        "persistentvolumeclaims",
        &persistentvolumeclaim::PersistentVolumeClaim,
    ),
    ("", "persistentvolumes", &persistentvolume::PersistentVolume),
    ("", "pods", &pod::Pod),
    ("", "podtemplates", &podtemplate::PodTemplate),
    (
        "",
        "replicationcontrollers",
        &replicationcontroller::ReplicationController,
    ),
    ("", "resourcequotas", &resourcequota::ResourceQuota),
    ("", "secrets", &secret::Secret),
    ("", "serviceaccounts", &serviceaccount::ServiceAccount),
    ("", "services", &service::Service),
    (
        "apps",
        "controllerrevisions",
        &controllerrevision::ControllerRevision,
    ),
    ("apps", "daemonsets", &daemonset::DaemonSet),
    ("apps", "deployments", &deployment::Deployment),
    ("apps", "replicasets", &replicaset::ReplicaSet),
    ("apps", "statefulsets", &statefulset::StatefulSet),
    (
        "autoscaling",
        "horizontalpodautoscalers",
        &horizontalpodautoscaler::HorizontalPodAutoscaler,
    ),
    ("batch", "cronjobs", &cronjob::CronJob),
    ("batch", "jobs", &job::Job),
    (
        "certificates.k8s.io",
        "certificatesigningrequests",
        &certificatesigningrequest::CertificateSigningRequest,
    ),
    ("coordination.k8s.io", "leases", &lease::Lease),
    (
        "discovery.k8s.io",
        "endpointslices",
        &endpointslice::EndpointSlice,
    ),
    ("events.k8s.io", "events", &event::EventsView),
    (
        "networking.k8s.io",
        "ingressclasses",
        &ingressclass::IngressClass,
    ),
    ("networking.k8s.io", "ingresses", &ingress::Ingress),
    (
        "networking.k8s.io",
        "networkpolicies",
        &networkpolicy::NetworkPolicy,
    ),
    (
        "policy",
        "poddisruptionbudgets",
        &poddisruptionbudget::PodDisruptionBudget,
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        &clusterrolebinding::ClusterRoleBinding,
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterroles",
        &clusterrole::ClusterRole,
    ),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        &rolebinding::RoleBinding,
    ),
    ("rbac.authorization.k8s.io", "roles", &role::Role),
    (
        "scheduling.k8s.io",
        "priorityclasses",
        &priorityclass::PriorityClass,
    ),
    (
        "storage.k8s.io",
        "storageclasses",
        &storageclass::StorageClass,
    ),
];

/// The strategy of `res`.
pub(crate) fn of(res: &Resource) -> &'static dyn Strategy {
    TABLE
        .iter()
        .find(|(group, plural, _)| *group == res.group && *plural == res.plural)
        .map_or(&Generic, |(_, _, s)| *s)
}

#[cfg(test)]
mod columns_tests {
    use super::*;
    use crate::resources::RESOURCES;

    /// Every served kind has a row as long as its columns.
    #[test]
    fn every_row_matches_its_columns() {
        let obj = serde_json::json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        for res in RESOURCES {
            let c = of(res);
            assert_eq!(c.cells(&obj).len(), c.columns().len(), "{}", res.kind);
        }
    }

    /// Every kind with a strategy of its own is served.
    #[test]
    fn kinds_with_strategies_are_served() {
        for (group, plural, _) in TABLE {
            assert!(
                RESOURCES
                    .iter()
                    .any(|r| r.group == *group && r.plural == *plural),
                "{group}/{plural}"
            );
        }
    }
}
