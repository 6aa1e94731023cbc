//! The authorizer chain kube-apiserver runs with `--authorization-mode=Node,RBAC`:
//! `system:masters` may do anything, then the Node authorizer ([`crate::nodeauthz`]) judges
//! nodes, then RBAC ([`crate::rbac`]).

use crate::error::ApiError;
use crate::rbac::{Attributes, Decision, MASTERS};
use crate::registry::Registry;
use crate::user::User;

/// Decides whether `user` may do `a`.
pub async fn authorize(reg: &Registry, user: &User, a: &Attributes) -> Result<Decision, ApiError> {
    if user.groups.iter().any(|g| g == MASTERS) {
        return Ok(Decision::allow(""));
    }
    let node = crate::nodeauthz::authorize(reg, user, a).await?;
    if node.allowed || node.denied {
        return Ok(node);
    }
    crate::rbac::authorize(reg, user, a).await
}
