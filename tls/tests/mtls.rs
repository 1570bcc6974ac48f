//! mTLS on a real gRPC server on a loopback port with certificates made in the test: only clients
//! with a certificate from the cluster CA get in, and a client reaches a server only if the server's
//! certificate names the identity the client expects (a node's registered id).

use std::net::SocketAddr;

use scot_tls::{endpoint, LocalCa, Tls};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A health server presenting `tls`'s certificate and requiring client certificates.
async fn serve(tls: &Tls) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, health) = tonic_health::server::health_reporter();
    let server = tonic::transport::Server::builder()
        .tls_config(tls.server())
        .unwrap()
        .add_service(health)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

/// Whether a health call gets an answer (`server_name`: the identity the client expects).
async fn reaches(addr: SocketAddr, tls: Option<&Tls>, server_name: Option<&str>) -> bool {
    let Ok(endpoint) = endpoint(&addr.to_string(), tls, server_name) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

fn load(args: scot_tls::TlsArgs) -> Tls {
    args.load().unwrap().expect("all three flags")
}

#[tokio::test]
async fn only_cluster_clients_reach_only_the_expected_node() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new(dir.path()).unwrap();
    // A node that registered as draft-0 and the coordinator (a client).
    let node = load(ca.issue("draft-0", &["draft-0", "127.0.0.1"]).unwrap());
    let coordinator = load(ca.issue("coordinator", &["coordinator"]).unwrap());
    let addr = serve(&node).await;

    assert!(reaches(addr, Some(&coordinator), Some("draft-0")).await);
    assert!(
        reaches(addr, Some(&coordinator), None).await,
        "by address (static list)"
    );

    // The entry says draft-1 but the server is draft-0 (a rogue entry naming another node's address,
    // or a node re-using an id): the identity check fails and the call never happens.
    assert!(!reaches(addr, Some(&coordinator), Some("draft-1")).await);

    // No client certificate, a plaintext client, a certificate from another CA: all refused.
    let no_identity = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&coordinator.ca))
        .domain_name("draft-0");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(no_identity)
        .unwrap()
        .connect()
        .await;
    let refused = match channel {
        Err(_) => true,
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate got in");
    assert!(!reaches(addr, None, None).await, "plaintext got in");
    let other_dir = tempfile::tempdir().unwrap();
    let other = LocalCa::new(other_dir.path()).unwrap();
    let stranger = Tls {
        ca: coordinator.ca.clone(),
        ..load(other.issue("stranger", &["coordinator"]).unwrap())
    };
    assert!(!reaches(addr, Some(&stranger), Some("draft-0")).await);
}
