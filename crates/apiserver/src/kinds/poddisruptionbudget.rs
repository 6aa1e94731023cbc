//! PodDisruptionBudgets (policy/v1): the status fields a typed client needs.

use serde_json::Value;

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct PodDisruptionBudget;

impl Strategy for PodDisruptionBudget {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::policy::v1::PodDisruptionBudget,
        >())
    }

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
