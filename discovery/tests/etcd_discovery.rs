//! Discovery against a real etcd: registration, watch, lease expiry, outages and data loss.

mod common;

use std::time::{Duration, Instant};

use common::{ids, wait_membership, wait_state, EtcdServer};
use etcd_client::{Client, GetOptions, PutOptions};
use scot_discovery::{
    instance_key, instances_prefix, Discovery, EtcdConfig, EtcdDiscovery, NodeInfo, NodeKind,
    Registration, RegistrationState, SyncState,
};

const WAIT: Duration = Duration::from_secs(30);

/// A plain etcd client once etcd answers (it listens before it has elected itself leader).
async fn ready_client(etcd: &EtcdServer) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let mut client = Client::connect([etcd.endpoint()], None).await?;
            client.get("probe", None).await?;
            Ok::<_, etcd_client::Error>(client)
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(client)) => return client,
            _ if Instant::now() > deadline => panic!("etcd never answered: {}", etcd.log_tail()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn lease_ttl(client: &mut Client, lease: i64) -> i64 {
    client
        .lease_time_to_live(lease, None)
        .await
        .expect("lease time-to-live")
        .ttl()
}

fn draft(id: &str) -> NodeInfo {
    NodeInfo::new(
        NodeKind::Draft,
        id,
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        format!("http://10.0.0.1:{}", 50000 + id.len()),
        8,
    )
}

fn target(id: &str) -> NodeInfo {
    NodeInfo::new(
        NodeKind::Target,
        id,
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "http://10.0.0.2:50051",
        2,
    )
    .with_metadata("tp", "2")
}

/// Test config with a short request timeout so calls against a dead etcd fail quickly.
fn config(etcd: &EtcdServer) -> EtcdConfig {
    let mut config = etcd.config();
    config.request_timeout = Duration::from_secs(3);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_nodes_join_update_and_leave() {
    let etcd = EtcdServer::start();
    let mut raw = ready_client(&etcd).await;
    let discovery = EtcdDiscovery::spawn(config(&etcd)).unwrap();
    discovery.wait_synced(WAIT).await.unwrap();
    let mut rx = discovery.subscribe();
    assert!(rx.borrow_and_update().is_empty());

    let draft_a = draft("draft-a");
    let target_a = target("target-a");
    let reg_draft =
        Registration::spawn(config(&etcd), draft_a.clone(), Duration::from_secs(10)).unwrap();
    // A long TTL: only the revoke on drop can make this node leave within the test's wait.
    let reg_target =
        Registration::spawn(config(&etcd), target_a.clone(), Duration::from_secs(120)).unwrap();
    assert_eq!(reg_draft.key(), "/scot-test/v1/instances/draft/draft-a");
    let draft_lease = reg_draft.wait_registered(WAIT).await.unwrap();
    let target_lease = reg_target.wait_registered(WAIT).await.unwrap();

    let m = wait_membership(&mut rx, "both nodes registered", |m| m.len() == 2).await;
    assert_eq!(m.draft, std::slice::from_ref(&draft_a));
    assert_eq!(m.target, std::slice::from_ref(&target_a));
    assert_eq!(
        m.target[0].metadata.get("tp").map(String::as_str),
        Some("2")
    );

    // The value in etcd is the NodeInfo JSON, on the node's lease.
    let stored = raw.get(reg_target.key(), None).await.unwrap();
    let kv = &stored.kvs()[0];
    assert_eq!(kv.lease(), target_lease);
    let decoded: NodeInfo = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(decoded, target_a);

    // Entries that are not registrations are ignored, and do not disturb the pools.
    let prefix = instances_prefix("/scot-test");
    raw.put(format!("{prefix}draft/broken"), "not json", None)
        .await
        .unwrap();
    raw.put(
        format!("{prefix}draft/liar"),
        serde_json::to_vec(&draft("other-id")).unwrap(),
        None,
    )
    .await
    .unwrap();
    raw.put(
        format!("{prefix}router/x"),
        serde_json::to_vec(&draft("x")).unwrap(),
        None,
    )
    .await
    .unwrap();
    // An update after the junk proves the watcher processed (and skipped) it.
    let draining = NodeInfo {
        capacity: 0,
        ..draft_a.clone()
    };
    reg_draft.update(draining.clone()).unwrap();
    let m = wait_membership(&mut rx, "draft capacity 0", |m| {
        m.get(NodeKind::Draft, "draft-a").map(|n| n.capacity) == Some(0)
    })
    .await;
    assert_eq!(ids(&m.draft), ["draft-a"]);
    assert_eq!(ids(&m.target), ["target-a"]);
    assert!(
        reg_draft.update(draft("draft-b")).is_err(),
        "an update may not change the id"
    );

    // deregister revokes the lease: the key goes, the lease is gone.
    reg_draft.deregister().await.unwrap();
    let m = wait_membership(&mut rx, "draft left", |m| m.draft.is_empty()).await;
    assert_eq!(ids(&m.target), ["target-a"]);
    assert_eq!(
        lease_ttl(&mut raw, draft_lease).await,
        -1,
        "deregister must revoke the lease"
    );

    // Dropping the registration (node exits) revokes in the background.
    drop(reg_target);
    wait_membership(&mut rx, "target left after drop", |m| m.is_empty()).await;
    assert_eq!(lease_ttl(&mut raw, target_lease).await, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_without_keep_alive_removes_the_node() {
    let etcd = EtcdServer::start();
    let mut raw = ready_client(&etcd).await;
    let discovery = EtcdDiscovery::spawn(config(&etcd)).unwrap();
    let mut rx = discovery.subscribe();

    // A live node with a 2 s TTL, kept alive by its registration...
    let kept = Registration::spawn(config(&etcd), draft("kept"), Duration::from_secs(2)).unwrap();
    // ...and a node that registered with a 2 s lease and then hung: nobody renews its lease.
    let lease = raw.lease_grant(2, None).await.unwrap().id();
    let hung = draft("hung");
    raw.put(
        instance_key("/scot-test", NodeKind::Draft, "hung"),
        serde_json::to_vec(&hung).unwrap(),
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();

    wait_membership(&mut rx, "both drafts", |m| {
        ids(&m.draft) == ["hung", "kept"]
    })
    .await;
    let m = wait_membership(&mut rx, "hung node expired", |m| {
        m.get(NodeKind::Draft, "hung").is_none()
    })
    .await;
    assert_eq!(ids(&m.draft), ["kept"]);

    // The kept node keeps renewing past several TTLs and stays.
    let mut state = kept.state();
    wait_state(
        &mut state,
        "4 renewals",
        |s| matches!(s, RegistrationState::Registered { renewals, .. } if *renewals >= 4),
    )
    .await;
    assert_eq!(ids(&discovery.membership().draft), ["kept"]);
    let stored = raw
        .get(
            instances_prefix("/scot-test"),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(stored.kvs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_membership_and_nodes_reregister() {
    let mut etcd = EtcdServer::start();
    let discovery = EtcdDiscovery::spawn(config(&etcd)).unwrap();
    let mut rx = discovery.subscribe();
    let ttl = Duration::from_secs(2);
    let reg_a = Registration::spawn(config(&etcd), draft("draft-a"), ttl).unwrap();
    let reg_t = Registration::spawn(config(&etcd), target("target-a"), ttl).unwrap();
    let before = wait_membership(&mut rx, "both registered", |m| m.len() == 2).await;

    // etcd crashes: the coordinator side notices, but keeps serving the last membership.
    etcd.kill();
    let mut sync = discovery.sync_state();
    wait_state(&mut sync, "watcher disconnected", |s| {
        matches!(s, SyncState::Disconnected { .. })
    })
    .await;
    let mut state_a = reg_a.state();
    wait_state(&mut state_a, "registration retrying", |s| {
        matches!(s, RegistrationState::Retrying { .. })
    })
    .await;
    assert_eq!(
        discovery.membership(),
        before,
        "the last membership must be kept"
    );

    // While etcd is down a new draft node starts, and the target shuts down without reaching etcd.
    let reg_b = Registration::spawn(config(&etcd), draft("draft-b"), ttl).unwrap();
    assert!(
        reg_t.deregister().await.is_err(),
        "a revoke that etcd never confirmed must be reported"
    );
    assert_eq!(discovery.membership(), before);

    // etcd comes back with its data: the target's old lease expires, the drafts (re-)register, and the
    // watcher catches up on all of it.
    etcd.restart();
    let m = wait_membership(&mut rx, "drafts a+b, no target", |m| {
        ids(&m.draft) == ["draft-a", "draft-b"] && m.target.is_empty()
    })
    .await;
    assert_eq!(m.draft[0], draft("draft-a"));
    wait_state(&mut sync, "watcher synced", |s| {
        matches!(s, SyncState::Synced { .. })
    })
    .await;
    reg_a.wait_registered(WAIT).await.unwrap();

    // etcd loses its data entirely: nodes register again into the empty store...
    let before_loss = discovery.membership();
    etcd.restart_empty();
    let mut raw = ready_client(&etcd).await;
    let prefix = instances_prefix("/scot-test");
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = raw
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        if stored.kvs().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not re-register into the empty etcd"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and the watcher follows the new store (whose revisions restarted below the old ones).
    raw.put(
        instance_key("/scot-test", NodeKind::Target, "target-new"),
        serde_json::to_vec(&target("target-new")).unwrap(),
        None,
    )
    .await
    .unwrap();
    let m = wait_membership(&mut rx, "new target seen after data loss", |m| {
        ids(&m.target) == ["target-new"]
    })
    .await;
    assert_eq!(m.draft, before_loss.draft);
    reg_a.deregister().await.unwrap();
    reg_b.deregister().await.unwrap();
    wait_membership(&mut rx, "drafts left", |m| m.draft.is_empty()).await;
}

/// Trusted membership: a second node with a live node's id is refused instead of taking its key
/// over, and a key deleted under a live lease is put back at the next renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_ids_are_refused_and_lost_keys_come_back() {
    let etcd = EtcdServer::start();
    let mut raw = ready_client(&etcd).await;
    let discovery = EtcdDiscovery::spawn(config(&etcd)).unwrap();
    let mut rx = discovery.subscribe();
    let key = instance_key("/scot-test", NodeKind::Draft, "draft-0");

    let first =
        Registration::spawn(config(&etcd), draft("draft-0"), Duration::from_secs(2)).unwrap();
    let first_lease = first.wait_registered(WAIT).await.unwrap();
    // The watcher may see the key after the registration is written: wait for it, so the check
    // below compares owners, not timing.
    wait_membership(&mut rx, "draft-0 seen", |m| {
        m.get(NodeKind::Draft, "draft-0").is_some()
    })
    .await;
    let mut impostor = draft("draft-0");
    impostor.address = "http://10.6.6.6:1".to_string();
    let second = Registration::spawn(config(&etcd), impostor, Duration::from_secs(2)).unwrap();
    let mut state = second.state();
    wait_state(&mut state, "the reused id refused", |s| {
        matches!(s, RegistrationState::Retrying { error, .. } if error.contains("already registered"))
    })
    .await;
    let m = discovery.membership();
    assert_eq!(
        m.get(NodeKind::Draft, "draft-0").map(|n| n.address.clone()),
        Some(draft("draft-0").address),
        "the impostor took the key"
    );
    drop(second);

    // Deleted under a live lease: the node notices at its next renewal and registers again.
    raw.delete(key.as_str(), None).await.unwrap();
    wait_membership(&mut rx, "draft-0 back after a delete", |m| {
        m.get(NodeKind::Draft, "draft-0").is_some()
    })
    .await;
    let mut state = first.state();
    wait_state(
        &mut state,
        "registered again",
        |s| matches!(s, RegistrationState::Registered { lease_id, .. } if *lease_id != first_lease),
    )
    .await;
    assert_eq!(
        discovery
            .membership()
            .get(NodeKind::Draft, "draft-0")
            .map(|n| n.address.clone()),
        Some(draft("draft-0").address)
    );
    first.deregister().await.unwrap();
    wait_membership(&mut rx, "draft-0 gone", |m| m.draft.is_empty()).await;
}
