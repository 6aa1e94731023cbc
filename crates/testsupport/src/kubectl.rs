//! The real kubectl clients the tests drive: the dispatcher and versioned binaries
//! (installed by `scripts/deps.sh`, see the README).

use std::path::Path;

/// The dispatcher (`/usr/bin/kubectl`), which picks a versioned client.
pub const DISPATCHER: &str = "/usr/bin/kubectl";
/// The directory of the versioned clients.
pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";
/// The oldest client the tests drive.
pub const KUBECTL_OLD: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
/// The newest client the tests drive.
pub const KUBECTL_NEW: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// The kubectl binaries must be installed: these tests exist to drive the real
/// clients, so a machine without them fails loudly (see the README) rather than
/// passing without checking anything.
pub fn have_kubectl() -> bool {
    let missing: Vec<&str> = [DISPATCHER, KUBECTL_OLD, KUBECTL_NEW]
        .into_iter()
        .filter(|b| !Path::new(b).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "kubectl is not installed ({missing:?} missing): install the kubectl clients as the README says"
    );
    true
}
