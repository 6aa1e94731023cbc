//! The commands of skiff's CLI, one module per group.

pub(crate) mod images;
pub(crate) mod inspect;
pub(crate) mod networks;
pub(crate) mod system;
pub(crate) mod volumes;
