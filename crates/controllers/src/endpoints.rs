//! Endpoints and EndpointSlices for Services with a selector.

use kube::Client;

pub async fn sync(_client: &Client, _api: Option<&(String, u16)>) -> Result<(), kube::Error> {
    Ok(())
}
