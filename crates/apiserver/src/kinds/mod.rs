//! Per-kind behaviour behind one object-safe trait, [`Strategy`], looked up in one table
//! keyed by group and resource ([`of`]); the generic registry names no kind. A kind
//! implements only what differs from the defaults. Adding a kind's behaviour is one file
//! here and one row in [`TABLE`]; a CustomResourceDefinition will become a `Strategy`
//! built from its schema.
//!
//! Being moved here kind by kind: for now a pending deletion's last condition and the
//! fields of field selectors. Defaults and validation still sit in `strategy.rs` and
//! `validation.rs`.
//!
//! What `kubectl get` prints for a kind, its table's columns and their cells, is a second
//! trait, [`Columns`], implemented at the end of the kind's file and looked up by kind in
//! [`COLUMNS`] ([`columns_of`]); a kind without its own prints its name and age.

use serde_json::Value;

use crate::resources::Resource;

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

/// What one kind does differently from the generic registry.
pub(crate) trait Strategy: Send + Sync {
    /// Whether a deletion pending on this object may finish now, once its
    /// `metadata.finalizers` are gone (the registry checks those).
    fn deletion_can_finish(&self, _obj: &Value) -> bool {
        true
    }

    /// The fields a field selector may name beyond `metadata.name` and
    /// `metadata.namespace`.
    fn field_selectors(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A kind without behaviour of its own.
struct Generic;

impl Strategy for Generic {}

/// The kinds with behaviour of their own: (group, resource) and their strategy.
static TABLE: &[(&str, &str, &dyn Strategy)] = &[
    ("", "events", &event::Event),
    ("", "namespaces", &namespace::Namespace),
    ("", "nodes", &node::Node),
    ("", "pods", &pod::Pod),
    (
        "",
        "replicationcontrollers",
        &replicationcontroller::ReplicationController,
    ),
    ("", "secrets", &secret::Secret),
    ("", "services", &service::Service),
    ("apps", "replicasets", &replicaset::ReplicaSet),
    ("batch", "jobs", &job::Job),
    ("events.k8s.io", "events", &event::Event),
];

/// The strategy of `res`.
pub(crate) fn of(res: &Resource) -> &'static dyn Strategy {
    TABLE
        .iter()
        .find(|(group, plural, _)| *group == res.group && *plural == res.plural)
        .map_or(&Generic, |(_, _, s)| *s)
}

// ---- Table columns: what `kubectl get` prints for a kind ----

/// The columns of one kind's table (`kubectl get`) and its cells for one object. Kept
/// apart from [`Strategy`]: columns are looked up by kind ([`columns_of`]), as the
/// printers are, so the core/v1 and events.k8s.io/v1 Events print alike.
pub(crate) trait Columns: Send + Sync {
    /// The columns, in order (priority 1 for the `-o wide` ones).
    fn columns(&self) -> &'static [crate::table::Col];

    /// The cells of `obj`'s row, one per column.
    fn cells(&self, obj: &Value) -> Vec<Value>;
}

/// A kind without columns of its own prints its name and age.
impl Columns for Generic {
    fn columns(&self) -> &'static [crate::table::Col] {
        &[crate::table::NAME, crate::table::AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![crate::table::name(obj), crate::table::age(obj)]
    }
}

/// The kinds with columns of their own, in the order of their files.
static COLUMNS: &[(&str, &dyn Columns)] = &[
    (
        "CertificateSigningRequest",
        &certificatesigningrequest::CertificateSigningRequest,
    ),
    ("ClusterRole", &clusterrole::ClusterRole),
    (
        "ClusterRoleBinding",
        &clusterrolebinding::ClusterRoleBinding,
    ),
    ("ConfigMap", &configmap::ConfigMap),
    (
        "ControllerRevision",
        &controllerrevision::ControllerRevision,
    ),
    ("CronJob", &cronjob::CronJob),
    ("DaemonSet", &daemonset::DaemonSet),
    ("Deployment", &deployment::Deployment),
    ("Endpoints", &endpoints::Endpoints),
    ("EndpointSlice", &endpointslice::EndpointSlice),
    ("Event", &event::Event),
    ("Ingress", &ingress::Ingress),
    ("IngressClass", &ingressclass::IngressClass),
    ("Job", &job::Job),
    ("Lease", &lease::Lease),
    ("LimitRange", &limitrange::LimitRange),
    ("Namespace", &namespace::Namespace),
    ("NetworkPolicy", &networkpolicy::NetworkPolicy),
    ("Node", &node::Node),
    ("PersistentVolume", &persistentvolume::PersistentVolume),
    (
        "PersistentVolumeClaim",
        &persistentvolumeclaim::PersistentVolumeClaim,
    ),
    ("Pod", &pod::Pod),
    (
        "PodDisruptionBudget",
        &poddisruptionbudget::PodDisruptionBudget,
    ),
    ("PriorityClass", &priorityclass::PriorityClass),
    ("ReplicaSet", &replicaset::ReplicaSet),
    (
        "ReplicationController",
        &replicationcontroller::ReplicationController,
    ),
    ("ResourceQuota", &resourcequota::ResourceQuota),
    ("Role", &role::Role),
    ("RoleBinding", &rolebinding::RoleBinding),
    ("Secret", &secret::Secret),
    ("Service", &service::Service),
    ("ServiceAccount", &serviceaccount::ServiceAccount),
    ("StatefulSet", &statefulset::StatefulSet),
    ("StorageClass", &storageclass::StorageClass),
];

/// The columns of `kind`'s table.
pub(crate) fn columns_of(kind: &str) -> &'static dyn Columns {
    COLUMNS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(&Generic, |(_, c)| *c)
}

#[cfg(test)]
mod columns_tests {
    use super::*;
    use crate::resources::RESOURCES;

    /// Every served kind, and every kind with columns, has a row as long as its columns.
    #[test]
    fn every_row_matches_its_columns() {
        let obj = serde_json::json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        let kinds = RESOURCES.iter().map(|r| r.kind);
        for kind in kinds.chain(COLUMNS.iter().map(|(k, _)| *k)) {
            let c = columns_of(kind);
            assert_eq!(c.cells(&obj).len(), c.columns().len(), "{kind}");
        }
    }

    /// A kind's columns are found under the name it is served as.
    #[test]
    fn kinds_with_columns_are_served() {
        for (kind, _) in COLUMNS {
            assert!(RESOURCES.iter().any(|r| r.kind == *kind), "{kind}");
        }
    }
}
