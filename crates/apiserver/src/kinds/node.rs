//! Nodes.

use super::Strategy;

pub(crate) struct Node;

impl Strategy for Node {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}
