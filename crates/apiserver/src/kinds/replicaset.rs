//! ReplicaSets (apps/v1).

use super::Strategy;

pub(crate) struct ReplicaSet;

impl Strategy for ReplicaSet {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}
