//! Endpoints: only the typed schema.

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct Endpoints;

impl Strategy for Endpoints {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Endpoints>())
    }
}
