//! Leases (coordination.k8s.io/v1): only the typed schema.

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct Lease;

impl Strategy for Lease {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::coordination::v1::Lease>())
    }
}
