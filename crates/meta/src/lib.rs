//! skiff-meta: the Kubernetes value types and rules that the API server, the
//! scheduler, the controllers and the node agent all need, written once: resource
//! quantities as apimachinery's `resource.Quantity` reads and writes them, and times
//! as `metav1.Time` writes them, names' formats, object-metadata helpers, and label and
//! field selectors (parsed strings and typed `metav1.LabelSelector`s).
//!
//! Pure functions over strings and JSON values: no I/O, no async, nothing of the
//! server or the node.

pub mod names;
pub mod netconf;
pub mod object;
pub mod quantity;
pub mod selector;
pub mod time;
