//! HorizontalPodAutoscalers (autoscaling/v2): the status fields a typed client needs.

use serde_json::Value;

use super::hooks::Strategy;
use crate::typed::Typed;

pub(crate) struct HorizontalPodAutoscaler;

impl Strategy for HorizontalPodAutoscaler {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
        >())
    }

    fn status_defaults(&self, obj: &mut Value) {
        crate::defaults::zero_status(obj, &["desiredReplicas"]);
    }
}

// What `kubectl get` prints: the name and age (`super::Columns`'s defaults).
impl super::Columns for HorizontalPodAutoscaler {}
