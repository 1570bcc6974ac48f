//! mTLS between the coordinator and its nodes, with certificates made in the test (a throwaway CA)
//! and in-process fake nodes on loopback: the coordinator routes only to a node whose certificate
//! names the id it registered, an entry whose node fails that check (another node's address, a
//! server with a stranger's certificate) gets no problem, and the coordinator's own door takes no
//! client without a certificate from the cluster CA.

mod fakes;

use std::sync::Arc;

use fakes::{serve_built, serve_draft_tls, serve_target_tls, FakeDraft, FakeTarget};
use scot_coordinator::Coordinator;
use scot_discovery::{Membership, NodeInfo, NodeKind, StaticDiscovery};
use scot_proto::coordinator_service_client::CoordinatorServiceClient;
use scot_proto::{AnswerPath, SolveOptions, SolveRequest};
use scot_tls::{LocalCa, Tls, TlsArgs};

fn load(args: TlsArgs) -> Tls {
    args.load().unwrap().expect("all three flags")
}

fn request() -> SolveRequest {
    SolveRequest {
        request_id: "mtls".into(),
        problem: "What is 2 + 3?".into(),
        options: Some(SolveOptions {
            n: Some(2),
            selection_policy: "paper".into(),
            ..Default::default()
        }),
    }
}

/// Runs one Solve on the coordinator at `url` as a client holding `tls`; the result's stats.
async fn solve(url: &str, tls: Option<&Tls>) -> Result<scot_proto::SolveStats, String> {
    let channel = scot_tls::endpoint(url, tls, None)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut stream = CoordinatorServiceClient::new(channel)
        .solve(request())
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    while let Some(event) = stream.message().await.map_err(|s| s.to_string())? {
        if let Some(scot_proto::solve_event::Event::Result(result)) = event.event {
            return Ok(result.stats.unwrap_or_default());
        }
    }
    Err("no result".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_holding_their_ids_certificate_get_problems() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new(dir.path()).unwrap();
    let names = |id: &str| [id.to_string(), "127.0.0.1".to_string()];
    let issue = |id: &str| {
        let [a, b] = names(id);
        load(ca.issue(id, &[&a, &b]).unwrap())
    };

    // The honest nodes, each serving its id's certificate.
    let honest = Arc::new(FakeDraft::default());
    let draft = serve_draft_tls(honest.clone(), &issue("draft-0")).await;
    let target = serve_target_tls(Arc::new(FakeTarget::default()), Some(&issue("target-0"))).await;
    // A rogue server whose certificate a stranger's CA made (it names the id it claims).
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = LocalCa::new(stranger_dir.path()).unwrap();
    let rogue = Arc::new(FakeDraft::default());
    let rogue_tls = Tls {
        ca: issue("unused").ca,
        ..load(
            stranger
                .issue("draft-1", &["draft-1", "127.0.0.1"])
                .unwrap(),
        )
    };
    let rogue_served = serve_draft_tls(rogue.clone(), &rogue_tls).await;

    // What etcd lists: the honest nodes, the rogue server under an id of its own, and an entry that
    // names the honest draft node's address under another id.
    let membership = Membership::from_nodes([
        NodeInfo::new(NodeKind::Draft, "draft-0", "m", &draft.address, 1),
        NodeInfo::new(NodeKind::Draft, "draft-1", "m", &rogue_served.address, 1),
        NodeInfo::new(NodeKind::Draft, "draft-9", "m", &draft.address, 1),
        NodeInfo::new(NodeKind::Target, "target-0", "m", &target.address, 1),
    ]);
    let coordinator_tls = ca
        .issue("coordinator", &["coordinator", "127.0.0.1"])
        .unwrap();
    let cert = coordinator_tls.cert.clone().unwrap();
    let key = coordinator_tls.key.clone().unwrap();
    let ca_file = coordinator_tls.ca.clone().unwrap();
    let config = fakes::config(&[
        "--health-timeout-ms",
        "2000",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-ca",
        ca_file.to_str().unwrap(),
    ]);
    let built =
        Coordinator::build_with_discovery(&config, Arc::new(StaticDiscovery::new(membership)))
            .unwrap();
    let coordinator = serve_built(built).await;
    assert!(
        coordinator.url.starts_with("https://"),
        "{}",
        coordinator.url
    );

    // The pool: only draft-0 is in routing; the other two failed the identity check.
    let (up, down) = coordinator.solver.draft_pool().reachable().await;
    assert_eq!(
        up.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["draft-0"]
    );
    let mut refused: Vec<_> = down.iter().map(|u| u.id.as_str()).collect();
    refused.sort();
    assert_eq!(refused, ["draft-1", "draft-9"], "{down:?}");
    for entry in &down {
        assert!(
            entry.reason.to_lowercase().contains("certificate"),
            "{}: {}",
            entry.id,
            entry.reason
        );
    }

    // Problems go to draft-0 only, and the rogue server is never called.
    let client = issue("client");
    for _ in 0..3 {
        let stats = solve(&coordinator.url, Some(&client)).await.unwrap();
        assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
        assert!(
            stats.drafts.iter().all(|d| d.node == "draft-0"),
            "{stats:?}"
        );
    }
    assert_eq!(rogue.call_count(), 0, "the rogue entry received a problem");
    assert!(honest.call_count() >= 3);

    // The door: no certificate, a plaintext client, or a stranger's certificate get nothing.
    let no_identity = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&client.ca));
    let anonymous = tonic::transport::Endpoint::from_shared(coordinator.url.clone())
        .unwrap()
        .tls_config(no_identity)
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = anonymous {
        let refused = CoordinatorServiceClient::new(channel)
            .solve(request())
            .await
            .is_err();
        assert!(refused, "a client without a certificate got in");
    }
    let plaintext = coordinator.url.replace("https://", "http://");
    assert!(solve(&plaintext, None).await.is_err(), "plaintext got in");
    let stranger_client = Tls {
        ca: client.ca.clone(),
        ..load(stranger.issue("client", &["client"]).unwrap())
    };
    assert!(
        solve(&coordinator.url, Some(&stranger_client))
            .await
            .is_err(),
        "a stranger's certificate got in"
    );
    assert_eq!(rogue.call_count(), 0);
}
