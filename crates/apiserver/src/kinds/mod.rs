//! Per-kind behaviour behind one object-safe trait, [`Strategy`], looked up in one table
//! keyed by group and resource ([`of`]); the generic registry names no kind. A kind
//! implements only what differs from the defaults. Adding a kind's behaviour is one file
//! here and one row in [`TABLE`]; a CustomResourceDefinition will become a `Strategy`
//! built from its schema.
//!
//! Being moved here kind by kind: for now a pending deletion's last condition. Defaults,
//! validation, table columns and field selectors still sit in `strategy.rs`,
//! `validation.rs`, `table.rs` and `params.rs`.

use serde_json::Value;

use crate::resources::Resource;

mod namespace;
mod pod;

/// What one kind does differently from the generic registry.
pub(crate) trait Strategy: Send + Sync {
    /// Whether a deletion pending on this object may finish now, once its
    /// `metadata.finalizers` are gone (the registry checks those).
    fn deletion_can_finish(&self, _obj: &Value) -> bool {
        true
    }
}

/// A kind without behaviour of its own.
struct Generic;

impl Strategy for Generic {}

/// The kinds with behaviour of their own: (group, resource) and their strategy.
static TABLE: &[(&str, &str, &dyn Strategy)] = &[
    ("", "namespaces", &namespace::Namespace),
    ("", "pods", &pod::Pod),
];

/// The strategy of `res`.
pub(crate) fn of(res: &Resource) -> &'static dyn Strategy {
    TABLE
        .iter()
        .find(|(group, plural, _)| *group == res.group && *plural == res.plural)
        .map_or(&Generic, |(_, _, s)| *s)
}
