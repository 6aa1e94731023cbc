//! The proxy loop against an in-process API server: Services and EndpointSlices written
//! through the API reach the rules in a node network namespace (the API server listens
//! on 127.0.0.1 in the host namespace; only the nft and conntrack commands run in the
//! node's namespace).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_network::conntrack::Conntrack;
use skiff_network::nft::NftCli;
use skiff_network::{run_with, ProxySettings};
use std::time::{Duration, Instant};

const CIDR: &str = "10.43.0.0/16";

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Polls `f` (run on the blocking pool) until it is true or `limit` passes; the time it
/// took.
async fn until(
    limit: Duration,
    f: impl Fn() -> bool + Send + Sync + Clone + 'static,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let f = f.clone();
        if tokio::task::spawn_blocking(f).await.unwrap() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_slices_from_the_api_reach_the_rules() {
    let lab = std::sync::Arc::new(std::sync::Mutex::new(Lab::with_service_cidr(1, CIDR)));
    let node = lab.lock().unwrap().node.clone();
    let data = tempfile::tempdir().unwrap();
    let kubeconfig = data.path().join("kubeconfig");
    let server = skiff_apiserver::start(skiff_apiserver::ServerConfig {
        data_dir: data.path().join("data"),
        bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
        https_listen_port: 0,
        write_kubeconfig: Some(kubeconfig.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client(&kubeconfig).await;

    let mut settings =
        ProxySettings::new("node-a", "10.240.0.1".parse().unwrap(), &Default::default());
    settings.cluster_cidr = "10.240.0.0/16".parse().unwrap();
    assert_eq!(settings.service_cidr.to_string(), CIDR);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let proxy = tokio::spawn(run_with(
        client.clone(),
        settings,
        NftCli::in_netns(&node),
        Some(Conntrack::in_netns(&node)),
        Box::new(|_| Err(std::io::Error::other("no health checks here"))),
        stop,
    ));

    // The skeleton comes first, with the whole range rejected.
    let l = lab.clone();
    let installed = until(Duration::from_secs(10), move || {
        l.lock().unwrap().try_covered()
    })
    .await;
    assert!(installed.is_some(), "no skeleton");

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "10.43.0.77", "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    // No endpoints yet: rejected.
    let l = lab.clone();
    let n = node.clone();
    let rejecting = until(Duration::from_secs(10), move || {
        refused(l.lock().unwrap().tcp(&n, "10.43.0.77:80"))
    })
    .await;
    assert!(rejecting.is_some());

    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-manual", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.240.0.10"], "nodeName": "node-a", "conditions": {"ready": true}}]}))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let l = lab.clone();
    let n = node.clone();
    let reached = until(Duration::from_secs(10), move || {
        l.lock()
            .unwrap()
            .tcp(&n, "10.43.0.77:80")
            .is_ok_and(|a| a.starts_with("pod0"))
    })
    .await;
    eprintln!("endpoint programmed {reached:?} after the slice's create returned");
    assert!(reached.is_some());

    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let l = lab.clone();
    let n = node.clone();
    let gone = until(Duration::from_secs(10), move || {
        refused(l.lock().unwrap().tcp(&n, "10.43.0.77:80"))
    })
    .await;
    eprintln!("Service deletion programmed {gone:?} after the delete returned");
    assert!(gone.is_some());

    // Stopping leaves the rules: the range is still rejected.
    stop_tx.send_replace(true);
    proxy.await.unwrap().unwrap();
    {
        let guard = lab.lock().unwrap();
        assert!(refused(guard.tcp(&node, "10.43.1.2:80")));
        assert!(!guard.chains().iter().any(|c| c.contains("default/web/")));
    }
    server.shutdown().await;
}
