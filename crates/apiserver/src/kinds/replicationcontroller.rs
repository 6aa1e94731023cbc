//! ReplicationControllers.

use super::Strategy;

pub(crate) struct ReplicationController;

impl Strategy for ReplicationController {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}
