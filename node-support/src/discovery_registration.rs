//! Announcing a node in etcd (only when `--etcd-endpoints` is set): once its gRPC server accepts
//! connections the node registers under a lease. When its stop is requested it revokes the lease first,
//! so coordinators drop it at once (instead of after the TTL) while it drains; if the server ends
//! without a stop, the lease is revoked then.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use scot_discovery::{DiscoveryError, NodeKind, RegistrationArgs};

use crate::model_args::ModelArgs;
use crate::node_stop::NodeStop;

/// How often to probe the listen address while the model is still loading.
const LISTEN_POLL: Duration = Duration::from_millis(200);

/// Runs `serve` (the node's load-then-serve future, which drains on `stop`); with etcd configured,
/// registers the node while it serves and deregisters it as soon as a requested stop has turned it
/// NOT_SERVING (so whoever still finds it in etcd sees it draining). Without etcd this is just
/// `serve.await`.
pub async fn serve_registered<T>(
    args: &RegistrationArgs,
    kind: NodeKind,
    model: &ModelArgs,
    listen: SocketAddr,
    stop: &NodeStop,
    serve: impl Future<Output = T>,
) -> Result<T, DiscoveryError> {
    if args.etcd.config().is_none() {
        return Ok(serve.await);
    }
    // Checked before loading the model, so a bad flag fails fast.
    let capacity = u32::try_from(model.max_concurrent.max(1)).unwrap_or(u32::MAX);
    let node = args
        .node_info(kind, &model_name(model), capacity, listen)?
        .with_metadata("tp", model.tensor_parallel.to_string());
    tokio::pin!(serve);
    let announce = async {
        wait_listening(listen).await;
        args.spawn(node)
    };
    let mut registration = tokio::select! {
        // The server ended before it ever listened (e.g. the model failed to load).
        output = &mut serve => return Ok(output),
        registration = announce => registration?,
    };
    tracing::info!(%listen, kind = kind.as_str(), "serving; registering in etcd");
    let output = tokio::select! {
        output = &mut serve => output,
        () = stop.refuses_new_work() => {
            deregister(registration.take()).await;
            serve.await
        }
    };
    deregister(registration).await;
    Ok(output)
}

async fn deregister(registration: Option<scot_discovery::Registration>) {
    if let Some(registration) = registration {
        match registration.deregister().await {
            Ok(()) => tracing::info!("deregistered from etcd"),
            Err(error) => {
                tracing::warn!(%error, "could not deregister from etcd; the lease will expire")
            }
        }
    }
}

/// The model's name as announced: the GGUF file's (or HF folder's) name.
fn model_name(model: &ModelArgs) -> String {
    model
        .model
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.model.display().to_string())
}

/// Waits until something accepts TCP connections on `listen` (a wildcard is probed on loopback).
async fn wait_listening(listen: SocketAddr) {
    let mut probe = listen;
    if listen.ip().is_unspecified() {
        probe.set_ip(match listen.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    while tokio::net::TcpStream::connect(probe).await.is_err() {
        tokio::time::sleep(LISTEN_POLL).await;
    }
}
