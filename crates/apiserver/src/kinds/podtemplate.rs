//! PodTemplates: only the typed schema.

use super::hooks::Strategy;
use crate::typed::Typed;

pub(crate) struct PodTemplate;

impl Strategy for PodTemplate {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::PodTemplate>())
    }
}

// What `kubectl get` prints: the name and age (`super::Columns`'s defaults).
impl super::Columns for PodTemplate {}
