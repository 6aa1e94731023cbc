//! PodDisruptionBudgets (policy/v1): the status fields a typed client needs.

use serde_json::Value;

use super::Strategy;

pub(crate) struct PodDisruptionBudget;

impl Strategy for PodDisruptionBudget {
    fn status_defaults(&self, obj: &mut Value) {
        crate::strategy::zero_status(
            obj,
            &[
                "disruptionsAllowed",
                "currentHealthy",
                "desiredHealthy",
                "expectedPods",
            ],
        );
    }
}
