//! skiff-meta: the Kubernetes value types and rules that the API server, the
//! scheduler, the controllers and the node agent all need, written once: resource
//! quantities as apimachinery's `resource.Quantity` reads and writes them, and times
//! as `metav1.Time` writes them.
//!
//! Pure functions over strings and JSON values: no I/O, no async, nothing of the
//! server or the node.

pub mod quantity;
pub mod time;
