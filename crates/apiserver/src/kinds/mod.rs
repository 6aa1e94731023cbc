//! Per-kind behaviour behind one object-safe trait, [`Strategy`], looked up in one table
//! keyed by group and resource ([`of`]); the generic registry, strategy steps, validation
//! and admission chain name no kind. A kind implements only what differs from the
//! defaults: its typed schema, its defaults, the status a new object starts with, what an
//! update carries over, its validation (on every write, on create, on update),
//! allocations before it is stored, what a pending deletion waits for, the fields of
//! field selectors. Adding a
//! built-in kind's behaviour is one file here and one row in [`TABLE`]; a
//! CustomResourceDefinition can become a `Strategy` built from its schema (every method
//! takes `&self` and the object as JSON).
//!
//! Helpers several kinds share stay outside this module and dispatch on no kind: pod spec
//! and template defaults in [`crate::strategy`], pod spec and workload checks and the
//! [`Cause`] constructors in [`crate::validation`].
//!
//! What `kubectl get` prints for a kind, its table's columns and their cells, is
//! [`Columns`], a supertrait of [`Strategy`] implemented at the end of the kind's file; its
//! defaults print the name and age.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::admit::Objects;
use crate::error::{ApiResult, Cause};
use crate::resources::Resource;
use crate::typed::Typed;

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

/// What one kind does differently from the generic registry. Every method has a
/// default: the generic behaviour.
#[async_trait]
pub(crate) trait Strategy: Columns {
    /// Whether a deletion pending on this object may finish now, once its
    /// `metadata.finalizers` are gone (the registry checks those).
    fn deletion_can_finish(&self, _obj: &Value) -> bool {
        true
    }

    /// Whether deleting this object waits for something beyond `metadata.finalizers`
    /// (it is then only marked, as one with finalizers is).
    fn deletion_waits(&self, _obj: &Value) -> bool {
        false
    }

    /// The grace period a deletion of this object waits, when it waits one (given the
    /// one the request asked for); `None` for kinds that go at once.
    fn deletion_grace(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Marks an object whose deletion has just begun (beyond `deletionTimestamp`).
    fn deletion_started(&self, _obj: &mut Value) {}

    /// The kind's typed schema, which the decoder checks bodies against and OpenAPI
    /// describes; `None` for kinds without one (bodies pass as they are).
    fn typed(&self) -> Option<&'static dyn Typed> {
        None
    }

    /// The fields a field selector may name beyond `metadata.name` and
    /// `metadata.namespace`.
    fn field_selectors(&self) -> &'static [&'static str] {
        &[]
    }

    /// The kind's defaults (kube-apiserver's `SetDefaults_*`), applied on create and on
    /// every write of the main resource.
    fn defaults(&self, _obj: &mut Value) {}

    /// The status a new object of a kind with a status subresource starts from, before
    /// defaults: empty (what the client sent is dropped).
    fn reset_status(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    /// The status fields kube-apiserver always serializes for a kind with a status
    /// subresource, filled in on create and on every status write.
    fn status_defaults(&self, _obj: &mut Value) {}

    /// The last step of preparing a new object (after defaults): server-set state.
    fn prepare_create(&self, _obj: &mut Value) {}

    /// On an update of the main resource of a kind with a status subresource: the
    /// status it keeps, `old`'s (none if `old` has none).
    fn keep_status(&self, old: &Value, new: &mut Value) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }

    /// On an update of the main resource: server-owned state carried from `old` into
    /// `new` (after metadata and status, before defaults).
    fn prepare_update(&self, _old: &Value, _new: &mut Value) {}

    /// The kind's own fields, checked on every write (after the metadata).
    fn validate(&self, _obj: &Value, _causes: &mut Vec<Cause>) {}

    /// Rules only a create checks.
    fn validate_create(&self, _obj: &Value, _causes: &mut Vec<Cause>) {}

    /// Rules of an update of the main resource (immutable fields), after
    /// [`Strategy::prepare_update`].
    fn validate_update(&self, _old: &Value, _new: &Value, _causes: &mut Vec<Cause>) {}

    /// A new object after admission, before it is stored: allocations that depend on
    /// what exists.
    async fn before_create(&self, _objs: &dyn Objects, _obj: &mut Value) -> ApiResult<()> {
        Ok(())
    }

    /// An update of the main resource after [`Strategy::prepare_update`], before
    /// validation: allocations that depend on what exists.
    async fn before_update(
        &self,
        _objs: &dyn Objects,
        _old: &Value,
        _new: &mut Value,
    ) -> ApiResult<()> {
        Ok(())
    }
}

/// A kind without behaviour of its own.
struct Generic;

impl Strategy for Generic {}

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

// ---- Table columns: what `kubectl get` prints for a kind ----

/// The columns of one kind's table (`kubectl get`) and its cells for one object. Every
/// [`Strategy`] has them (a supertrait); the defaults print the name and age, as
/// kube-apiserver's default table convertor does.
pub(crate) trait Columns: Send + Sync {
    /// The columns, in order (priority 1 for the `-o wide` ones).
    fn columns(&self) -> &'static [crate::table::Col] {
        &[crate::table::NAME, crate::table::AGE]
    }

    /// The cells of `obj`'s row, one per column.
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![crate::table::name(obj), crate::table::age(obj)]
    }
}

impl Columns for Generic {}

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
