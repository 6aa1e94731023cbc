//! Services.

use super::Strategy;

pub(crate) struct Service;

impl Strategy for Service {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }
}
