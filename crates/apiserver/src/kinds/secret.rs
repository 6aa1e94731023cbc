//! Secrets.

use super::Strategy;

pub(crate) struct Secret;

impl Strategy for Secret {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["type"]
    }
}
