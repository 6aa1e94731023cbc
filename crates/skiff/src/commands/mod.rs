//! The commands of skiff's CLI, one module per group.

pub(crate) mod containers;
pub(crate) mod exec;
pub(crate) mod images;
pub(crate) mod inspect;
pub(crate) mod networks;
pub(crate) mod run;
pub(crate) mod system;
pub(crate) mod volumes;
