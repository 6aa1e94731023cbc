//! Per-kind behaviour behind one object-safe trait, [`Strategy`], looked up in one table
//! keyed by group and resource ([`of`]); the generic registry names no kind. A kind
//! implements only what differs from the defaults. Adding a kind's behaviour is one file
//! here and one row in [`TABLE`]; a CustomResourceDefinition will become a `Strategy`
//! built from its schema.
//!
//! Being moved here kind by kind: for now a pending deletion's last condition and the
//! fields of field selectors. Defaults, validation and table columns still sit in
//! `strategy.rs`, `validation.rs` and `table.rs`.

use serde_json::Value;

use crate::resources::Resource;

mod event;
mod job;
mod namespace;
mod node;
mod pod;
mod replicaset;
mod replicationcontroller;
mod secret;
mod service;

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
