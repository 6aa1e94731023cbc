//! StatefulSets.
pub async fn sync_statefulsets(_c: &kube::Client) -> Result<(), kube::Error> {
    Ok(())
}
