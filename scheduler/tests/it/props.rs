//! Property tests: on any small view, decisions never over-commit a node,
//! never place onto an ineligible node, name each task at most once, follow
//! the requeue rules exactly, and leave nothing placeable unplaced.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use synod_scheduler::{Decision, LeasedTask, Liveness, NodeView, Params, QueuedTask, RequeueReason, View, decide};

use crate::util::NOW;

const TENANTS: &[&str] = &["a", "b", "c"];
const TYPES: &[&str] = &["echo", "embed"];
const CAPABILITIES: &[&str] = &["model:a", "model:b"];

fn label_set() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        prop::option::of(prop::sample::select(vec!["a100", "h100"])),
        prop::option::of(prop::sample::select(vec!["eu", "us"])),
    )
        .prop_map(|(gpu, zone)| {
            let mut labels = BTreeMap::new();
            if let Some(gpu) = gpu {
                labels.insert("gpu".to_string(), gpu.to_string());
            }
            if let Some(zone) = zone {
                labels.insert("zone".to_string(), zone.to_string());
            }
            labels
        })
}

fn node_view() -> impl Strategy<Value = NodeView> {
    (
        0..8u64,
        prop::sample::select(vec![
            Liveness::Alive,
            Liveness::Alive,
            Liveness::Alive,
            Liveness::Suspect,
            Liveness::Dead,
        ]),
        prop::bool::weighted(0.15),
        label_set(),
        (prop::sample::subsequence(TYPES.to_vec(), 0..=2), prop::sample::subsequence(CAPABILITIES.to_vec(), 0..=2)),
        0..5u32,
        0.0..2.0f64,
        0..8_000u64,
    )
        .prop_map(|(id, liveness, draining, labels, (types, caps), worker_slots, cpu_load, silent)| NodeView {
            id,
            liveness,
            draining,
            labels,
            task_types: types.into_iter().map(String::from).collect(),
            capabilities: caps.into_iter().map(String::from).collect(),
            worker_slots,
            cpu_load,
            last_heartbeat_ms: NOW - silent,
        })
}

fn queued_task() -> impl Strategy<Value = QueuedTask> {
    (
        prop::sample::select(TENANTS.to_vec()),
        0..20u32,
        prop::sample::select(TYPES.to_vec()),
        0..12u8,
        (
            prop::bool::weighted(0.3)
                .prop_flat_map(|some| if some { label_set().boxed() } else { Just(BTreeMap::new()).boxed() }),
            prop::option::weighted(0.3, prop::sample::select(CAPABILITIES.to_vec())),
        ),
        0..100_000u64,
        prop::option::weighted(0.2, 0..4_000u64),
    )
        .prop_map(|(tenant, id, task_type, priority, (required_labels, requires), waited, backoff)| QueuedTask {
            tenant: tenant.into(),
            id: format!("t{id}"),
            task_type: task_type.into(),
            priority,
            required_labels,
            requires: requires.into_iter().map(String::from).collect(),
            enqueued_at_ms: NOW - waited,
            not_before_ms: backoff.map_or(0, |b| NOW - 2_000 + b),
        })
}

fn leased_task() -> impl Strategy<Value = LeasedTask> {
    (prop::sample::select(TENANTS.to_vec()), 0..20u32, 0..10u64, 0..5u64, 0..4_000u64).prop_map(
        |(tenant, id, node_id, epoch, deadline)| LeasedTask {
            tenant: tenant.into(),
            id: format!("t{id}"),
            node_id,
            epoch,
            lease_deadline_ms: NOW - 2_000 + deadline,
        },
    )
}

fn any_view() -> impl Strategy<Value = View> {
    (
        prop::collection::vec(node_view(), 0..7),
        prop::collection::vec(queued_task(), 0..50),
        prop::collection::vec(leased_task(), 0..14),
        prop::collection::btree_map(prop::sample::select(TENANTS.to_vec()).prop_map(String::from), 0..4u32, 0..3),
    )
        .prop_map(|(nodes, queued, leased, tenant_weights)| View { nodes, queued, leased, tenant_weights })
}

fn any_params() -> impl Strategy<Value = Params> {
    (0..60_000u64, 0..20_000u64, 0..25usize, 0..6_000u64, 0..4u32).prop_map(
        |(lease_ms, aging_ms_per_level, max_assignments, recovery_timeout_ms, prefetch)| Params {
            lease_ms,
            aging_ms_per_level,
            max_assignments,
            recovery_timeout_ms,
            prefetch,
        },
    )
}

/// Leases a node may hold: its slots times the prefetch (0 counts as 1).
fn capacity(node: &NodeView, params: &Params) -> u64 {
    u64::from(node.worker_slots) * u64::from(params.prefetch.max(1))
}

/// The node a lease or an assignment refers to: the first with that id.
fn first_node(view: &View, id: u64) -> Option<&NodeView> {
    view.nodes.iter().find(|n| n.id == id)
}

fn lost(node: &NodeView, now: u64, params: &Params) -> bool {
    node.liveness == Liveness::Dead || now.saturating_sub(node.last_heartbeat_ms) > params.recovery_timeout_ms
}

fn expected_requeue(view: &View, lease: &LeasedTask, now: u64, params: &Params) -> Option<RequeueReason> {
    match first_node(view, lease.node_id) {
        Some(node) if !lost(node, now, params) => {
            (lease.lease_deadline_ms < now).then_some(RequeueReason::LeaseExpired)
        }
        _ => Some(RequeueReason::NodeLost),
    }
}

fn open(node: &NodeView, now: u64, params: &Params) -> bool {
    node.liveness == Liveness::Alive && !node.draining && !lost(node, now, params)
}

fn fits(node: &NodeView, task: &QueuedTask) -> bool {
    node.task_types.contains(&task.task_type)
        && task.required_labels.iter().all(|(k, v)| node.labels.get(k) == Some(v))
        && task.requires.iter().all(|c| node.capabilities.contains(c))
}

fn check(view: &View, now: u64, params: &Params, decisions: &[Decision]) -> Result<(), TestCaseError> {
    // Each task at most once.
    let mut seen = HashSet::new();
    for d in decisions {
        prop_assert!(seen.insert(d.task()), "task named twice: {:?}", d.task());
    }

    // Requeues first, sorted, exactly the qualifying leases.
    let split = decisions.iter().position(|d| matches!(d, Decision::Assign { .. })).unwrap_or(decisions.len());
    prop_assert!(
        decisions[split..].iter().all(|d| matches!(d, Decision::Assign { .. })),
        "requeue after an assignment"
    );
    let requeue_keys: Vec<(&str, &str)> = decisions[..split].iter().map(Decision::task).collect();
    prop_assert!(requeue_keys.windows(2).all(|w| w[0] < w[1]), "requeues not sorted: {requeue_keys:?}");
    let mut want_requeues: BTreeMap<(&str, &str), (u64, RequeueReason)> = BTreeMap::new();
    for lease in &view.leased {
        if let Some(reason) = expected_requeue(view, lease, now, params) {
            want_requeues.entry((&lease.tenant, &lease.id)).or_insert((lease.epoch, reason));
        }
    }
    let got_requeues: BTreeMap<(&str, &str), (u64, RequeueReason)> = decisions[..split]
        .iter()
        .map(|d| match d {
            Decision::Requeue { tenant, id, epoch, reason } => ((tenant.as_str(), id.as_str()), (*epoch, *reason)),
            Decision::Assign { .. } => unreachable!("split at the first assignment"),
        })
        .collect();
    prop_assert_eq!(&got_requeues, &want_requeues);

    // Slots taken by the leases that stay, per first-occurrence node id.
    let mut busy: HashMap<u64, u64> = HashMap::new();
    let leased_keys: HashSet<(&str, &str)> = view.leased.iter().map(|l| (l.tenant.as_str(), l.id.as_str())).collect();
    for lease in &view.leased {
        if expected_requeue(view, lease, now, params).is_none() {
            *busy.entry(lease.node_id).or_default() += 1;
        }
    }
    let before = busy.clone();

    // Every assignment is of an eligible task onto an open node that fits it.
    let assignments = &decisions[split..];
    prop_assert!(assignments.len() <= params.max_assignments, "{} > max {}", assignments.len(), params.max_assignments);
    let mut assigned_keys = HashSet::new();
    for d in assignments {
        let Decision::Assign { tenant, id, node_id, lease_deadline_ms } = d else { unreachable!("only assignments") };
        prop_assert_eq!(*lease_deadline_ms, now.saturating_add(params.lease_ms));
        prop_assert!(!leased_keys.contains(&(tenant.as_str(), id.as_str())), "{tenant}/{id} is leased");
        let node = first_node(view, *node_id);
        prop_assert!(node.is_some_and(|n| open(n, now, params)), "{tenant}/{id} onto closed node {node_id}");
        let node = node.expect("checked above");
        let fitting =
            view.queued.iter().any(|t| &t.tenant == tenant && &t.id == id && t.not_before_ms <= now && fits(node, t));
        prop_assert!(fitting, "{tenant}/{id} is not an eligible queued task for node {node_id}");
        *busy.entry(*node_id).or_default() += 1;
        assigned_keys.insert((tenant.as_str(), id.as_str()));
    }
    for (node_id, &total) in &busy {
        let slots = first_node(view, *node_id).map_or(0, |n| capacity(n, params));
        let added = total - before.get(node_id).copied().unwrap_or(0);
        prop_assert!(added == 0 || total <= slots, "node {node_id}: {total} busy on {slots} slots");
    }

    // Nothing placeable is left behind unless the cap was hit.
    if assignments.len() < params.max_assignments {
        let mut nodes_seen = BTreeSet::new();
        for node in &view.nodes {
            if !nodes_seen.insert(node.id) || !open(node, now, params) {
                continue;
            }
            let used = busy.get(&node.id).copied().unwrap_or(0);
            if used >= capacity(node, params) {
                continue;
            }
            for t in &view.queued {
                let key = (t.tenant.as_str(), t.id.as_str());
                let waiting = t.not_before_ms <= now && !leased_keys.contains(&key) && !assigned_keys.contains(&key);
                prop_assert!(
                    !(waiting && fits(node, t)),
                    "{}/{} left queued though node {} has room",
                    t.tenant,
                    t.id,
                    node.id
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn decisions_respect_every_invariant(view in any_view(), params in any_params(), skew in 0..3_000u64) {
        let now = NOW - 1_000 + skew;
        let decisions = decide(&view, now, &params);
        check(&view, now, &params, &decisions)?;
        prop_assert_eq!(decide(&view, now, &params), decisions, "same input, same output");
    }

    #[test]
    fn fed_back_rounds_keep_the_invariants(view in any_view(), params in any_params()) {
        // Apply each round's decisions to the view and decide again: the
        // invariants hold round after round, and requeued tasks come back.
        let mut view = view;
        let catalog: HashMap<(String, String), QueuedTask> =
            view.queued.iter().map(|t| ((t.tenant.clone(), t.id.clone()), t.clone())).collect();
        for round in 0..4u64 {
            let now = NOW + round * 1_000;
            let decisions = decide(&view, now, &params);
            check(&view, now, &params, &decisions)?;
            for d in &decisions {
                match d {
                    Decision::Requeue { tenant, id, .. } => {
                        view.leased.retain(|l| !(&l.tenant == tenant && &l.id == id));
                        if let Some(t) = catalog.get(&(tenant.clone(), id.clone())) {
                            view.queued.push(t.clone());
                        }
                    }
                    Decision::Assign { tenant, id, node_id, lease_deadline_ms } => {
                        view.queued.retain(|t| !(&t.tenant == tenant && &t.id == id));
                        view.leased.push(LeasedTask {
                            tenant: tenant.clone(),
                            id: id.clone(),
                            node_id: *node_id,
                            epoch: 100 + round,
                            lease_deadline_ms: *lease_deadline_ms,
                        });
                    }
                }
            }
        }
    }
}
