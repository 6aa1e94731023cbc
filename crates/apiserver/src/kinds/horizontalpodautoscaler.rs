//! HorizontalPodAutoscalers (autoscaling/v2): the status fields a typed client needs.

use serde_json::Value;

use super::Strategy;

pub(crate) struct HorizontalPodAutoscaler;

impl Strategy for HorizontalPodAutoscaler {
    fn status_defaults(&self, obj: &mut Value) {
        crate::strategy::zero_status(obj, &["desiredReplicas"]);
    }
}
