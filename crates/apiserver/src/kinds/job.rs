//! Jobs (batch/v1).

use super::Strategy;

pub(crate) struct Job;

impl Strategy for Job {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}
