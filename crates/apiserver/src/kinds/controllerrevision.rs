//! ControllerRevisions (apps/v1): only the typed schema.

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct ControllerRevision;

impl Strategy for ControllerRevision {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::apps::v1::ControllerRevision,
        >())
    }
}
