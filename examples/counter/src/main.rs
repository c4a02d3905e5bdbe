//! `counter-server`: a small server built on the dotdo libraries that serves the `Counter`
//! class at `/counter/{name}/…` next to the built-in objects.
//!
//! `cargo run -p dotdo-example-counter -- 4001 ./.do/counter-state`

use dotdo_runtime::{Host, HostOptions};
use dotdo_server::{BUILTIN_NAMESPACE, Mount, ServerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(Ok(4001), |p| p.parse())?;
    let state_dir = args.next().unwrap_or_else(|| "./.do/counter-state".into());
    let host = Host::open(
        HostOptions::new(state_dir)
            .class(
                BUILTIN_NAMESPACE,
                dotdo_server::builtin_class(dotdo_server::workflow_env()?),
            )
            .class("counter", dotdo_example_counter::class()),
    )?;
    let config = ServerConfig {
        mounts: vec![
            Mount::new("counter", "counter").with_rpc(dotdo_example_counter::rpc_surface()),
        ],
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "counter-server on http://{}/counter/{{name}}",
        listener.local_addr()?
    );
    axum::serve(listener, dotdo_server::app(host.clone(), config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    host.shutdown(std::time::Duration::from_secs(30)).await;
    Ok(())
}
