//! NetworkPolicies (networking.k8s.io/v1): only the typed schema.

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct NetworkPolicy;

impl Strategy for NetworkPolicy {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::networking::v1::NetworkPolicy,
        >())
    }
}
