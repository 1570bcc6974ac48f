//! Routing decisions as pure functions of the nodes' load, so they can be tested without servers.
//!
//! Drafts: one request's n drafts are spread over many draft nodes while the pool has room (each node
//! decodes a small batch: lowest latency) and packed onto fewer nodes as the pool fills (one prompt
//! prefill per node used and bigger decode batches: highest throughput). How many drafts of the request
//! one node may take (the chunk) grows with the pool's utilisation before the request:
//! `chunk = 1 + floor((n - 1) * outstanding / capacity)`, so an idle pool gets one draft per node and a
//! full one gets all n on one node. Nodes are taken least-loaded first (outstanding relative to
//! capacity, then absolute), ties in turn. No node ever gets more than its free room; when the pool
//! lacks room for all n the request waits. Draft i is sampled with seed + i wherever it runs, so the
//! placement never changes the drafts.

/// One node's load as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLoad {
    /// Work in flight on the node from this coordinator (drafts or requests).
    pub outstanding: usize,
    /// The most work it may have in flight.
    pub capacity: usize,
}

impl NodeLoad {
    pub fn new(outstanding: usize, capacity: usize) -> Self {
        Self {
            outstanding,
            capacity,
        }
    }

    fn free(&self) -> usize {
        self.capacity.saturating_sub(self.outstanding)
    }
}

/// Where a request's work goes, or why it cannot go anywhere now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement<T> {
    Placed(T),
    /// Not enough free room now: wait for work to finish.
    Full,
    /// More than the whole pool can ever hold (its total capacity): waiting would not help.
    TooLarge {
        capacity: usize,
    },
}

/// Least loaded first: outstanding/capacity, then outstanding, then in turn from `start`.
fn by_load(loads: &[NodeLoad], start: usize) -> Vec<usize> {
    let len = loads.len().max(1);
    let mut order: Vec<usize> = (0..loads.len()).collect();
    order.sort_by(|&a, &b| {
        let (la, lb) = (loads[a], loads[b]);
        // a.out / a.cap vs b.out / b.cap without division (capacities are at least 1 here).
        let relative = (la.outstanding as u128 * lb.capacity.max(1) as u128)
            .cmp(&(lb.outstanding as u128 * la.capacity.max(1) as u128));
        relative
            .then(la.outstanding.cmp(&lb.outstanding))
            .then_with(|| ((a + len - start % len) % len).cmp(&((b + len - start % len) % len)))
    });
    order
}

/// How many of n drafts each node gets (same order as `loads`).
pub fn plan_drafts(n: usize, loads: &[NodeLoad], start: usize) -> Placement<Vec<usize>> {
    let capacity: usize = loads.iter().map(|l| l.capacity).sum();
    if n > capacity {
        return Placement::TooLarge { capacity };
    }
    let free: usize = loads.iter().map(NodeLoad::free).sum();
    if n > free {
        return Placement::Full;
    }
    let mut counts = vec![0; loads.len()];
    if n == 0 {
        return Placement::Placed(counts);
    }
    let outstanding: usize = loads.iter().map(|l| l.outstanding).sum();
    let by_utilisation = 1 + (n - 1) * outstanding.min(capacity) / capacity.max(1);
    let with_room = loads.iter().filter(|l| l.free() > 0).count().max(1);
    let chunk = by_utilisation.max(n.div_ceil(with_room)).min(n);
    let order = by_load(loads, start);
    let mut remaining = n;
    // First pass: at most `chunk` per node; second pass: whatever room is left (a few nodes were short).
    for limit in [chunk, n] {
        for &i in &order {
            if remaining == 0 {
                break;
            }
            let room = loads[i].free() - counts[i];
            let take = room.min(limit.saturating_sub(counts[i])).min(remaining);
            counts[i] += take;
            remaining -= take;
        }
    }
    debug_assert_eq!(remaining, 0);
    Placement::Placed(counts)
}

/// Draft indices 0..n dealt in turn over the nodes with a count, so each node's share is spread over
/// the index range. One list per node (empty where the count is 0).
pub fn deal_indices(counts: &[usize]) -> Vec<Vec<u32>> {
    let mut lists: Vec<Vec<u32>> = counts.iter().map(|&c| Vec::with_capacity(c)).collect();
    let total: usize = counts.iter().sum();
    let mut index = 0u32;
    while (index as usize) < total {
        for (list, &count) in lists.iter_mut().zip(counts) {
            if list.len() < count && (index as usize) < total {
                list.push(index);
                index += 1;
            }
        }
    }
    lists
}

/// The node for one target request: the least loaded with room.
pub fn pick_target(loads: &[NodeLoad], start: usize) -> Placement<usize> {
    if loads.is_empty() {
        return Placement::TooLarge { capacity: 0 };
    }
    by_load(loads, start)
        .into_iter()
        .find(|&i| loads[i].free() > 0)
        .map_or(Placement::Full, Placement::Placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(nodes: usize, capacity: usize) -> Vec<NodeLoad> {
        vec![NodeLoad::new(0, capacity); nodes]
    }

    fn placed(placement: Placement<Vec<usize>>) -> Vec<usize> {
        match placement {
            Placement::Placed(counts) => counts,
            other => panic!("not placed: {other:?}"),
        }
    }

    #[test]
    fn an_idle_pool_spreads_one_draft_per_node() {
        assert_eq!(
            placed(plan_drafts(5, &idle(8, 16), 0)),
            [1, 1, 1, 1, 1, 0, 0, 0]
        );
        // Ties go in turn: the next request starts further along.
        assert_eq!(
            placed(plan_drafts(5, &idle(8, 16), 5)),
            [1, 1, 0, 0, 0, 1, 1, 1]
        );
    }

    #[test]
    fn fewer_nodes_than_drafts_share_evenly() {
        assert_eq!(placed(plan_drafts(5, &idle(2, 16), 0)), [3, 2]);
        assert_eq!(placed(plan_drafts(4, &idle(2, 16), 0)), [2, 2]);
        assert_eq!(placed(plan_drafts(3, &idle(1, 16), 0)), [3]);
    }

    #[test]
    fn a_loaded_pool_packs_onto_fewer_nodes() {
        // 4 nodes x 10, 30 drafts in flight (75%): chunk = 1 + 4 * 30 / 40 = 4.
        let loads = [
            NodeLoad::new(8, 10),
            NodeLoad::new(7, 10),
            NodeLoad::new(9, 10),
            NodeLoad::new(6, 10),
        ];
        // Least loaded first: node 3 (4 free) takes 4, node 1 (3 free) the last one.
        assert_eq!(placed(plan_drafts(5, &loads, 0)), [0, 1, 0, 4]);
        // Only one node has room: all n go there.
        let loads = [
            NodeLoad::new(20, 20),
            NodeLoad::new(20, 20),
            NodeLoad::new(0, 5),
        ];
        assert_eq!(placed(plan_drafts(5, &loads, 0)), [0, 0, 5]);
    }

    #[test]
    fn packing_grows_with_load() {
        let nodes = |busy: usize| {
            let mut loads = idle(10, 10);
            for load in loads.iter_mut().take(busy) {
                load.outstanding = 10;
            }
            loads
        };
        let used = |busy: usize| {
            placed(plan_drafts(5, &nodes(busy), 0))
                .iter()
                .filter(|&&c| c > 0)
                .count()
        };
        // 0%, 30%, 50%, 90% of the pool busy: 5, 3, 2, 1 nodes used.
        assert_eq!([used(0), used(3), used(5), used(9)], [5, 3, 2, 1]);
    }

    #[test]
    fn no_node_gets_more_than_its_room() {
        let loads = [
            NodeLoad::new(3, 4),
            NodeLoad::new(0, 2),
            NodeLoad::new(1, 3),
        ];
        let counts = placed(plan_drafts(5, &loads, 0));
        assert_eq!(counts.iter().sum::<usize>(), 5);
        for (count, load) in counts.iter().zip(&loads) {
            assert!(load.outstanding + count <= load.capacity, "{counts:?}");
        }
    }

    #[test]
    fn full_and_too_large_pools() {
        let loads = [NodeLoad::new(3, 4), NodeLoad::new(2, 2)];
        assert_eq!(plan_drafts(2, &loads, 0), Placement::Full);
        assert_eq!(
            plan_drafts(7, &loads, 0),
            Placement::TooLarge { capacity: 6 }
        );
        assert_eq!(plan_drafts(1, &[], 0), Placement::TooLarge { capacity: 0 });
    }

    #[test]
    fn indices_are_dealt_in_turn() {
        assert_eq!(deal_indices(&[2, 2]), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(
            deal_indices(&[3, 0, 2]),
            vec![vec![0, 2, 4], vec![], vec![1, 3]]
        );
    }

    #[test]
    fn targets_go_to_the_least_loaded_with_room() {
        let loads = [
            NodeLoad::new(2, 2),
            NodeLoad::new(1, 4),
            NodeLoad::new(1, 2),
        ];
        assert_eq!(pick_target(&loads, 0), Placement::Placed(1));
        assert_eq!(pick_target(&idle(3, 1), 1), Placement::Placed(1));
        assert_eq!(pick_target(&[NodeLoad::new(1, 1)], 0), Placement::Full);
    }
}
