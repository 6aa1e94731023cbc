//! Runs the API server alone: `cargo run -p skiff-apiserver --example serve -- DATA_DIR [PORT]`.
//! Prints the kubeconfig path; stop it with Ctrl-C.
// A benchmark tool: a panic is its error report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().ok_or("usage: serve DATA_DIR [PORT]")?;
    let port = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let config = skiff_apiserver::ServerConfig {
        data_dir: data_dir.into(),
        bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
        https_listen_port: port,
        ..Default::default()
    };
    let server = skiff_apiserver::start(config).await?;
    println!(
        "port {} kubeconfig {}",
        server.port,
        server.kubeconfig_path.display()
    );
    server.wait().await;
    Ok(())
}
