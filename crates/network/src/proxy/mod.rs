//! kube-proxy's nftables mode: Services and EndpointSlices to one table of rules.

pub mod categorize;
pub mod healthcheck;
pub mod model;
pub mod rules;
pub mod sync;

pub use model::{Snapshot, SERVICE_NAME_LABEL};
pub use rules::RuleSettings;
pub use sync::{Proxier, SyncError, SyncStats};
