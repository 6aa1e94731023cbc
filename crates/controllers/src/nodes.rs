//! Node lifecycle.

use kube::Client;

#[derive(Default)]
pub struct NodeMonitor {}

impl NodeMonitor {
    pub async fn sync(
        &mut self,
        _client: &Client,
        _grace: std::time::Duration,
    ) -> Result<(), kube::Error> {
        Ok(())
    }
}
