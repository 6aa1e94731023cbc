//! EndpointSlices (discovery.k8s.io/v1): only the typed schema.

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct EndpointSlice;

impl Strategy for EndpointSlice {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::discovery::v1::EndpointSlice,
        >())
    }
}
