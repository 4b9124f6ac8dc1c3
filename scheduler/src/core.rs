//! The pure scheduling core: one snapshot of the cluster in, decisions out.
//!
//! [`decide`] does no I/O, reads no clock and draws no randomness: the caller
//! (the leader loop) hands it a [`View`] read from the replicated state and the
//! leader's `now_ms`, and proposes the returned [`Decision`]s as commands.
//! The same inputs always give the same decisions, in the same order.
//!
//! ```text
//!   View + now_ms + Params
//!          │
//!          ▼
//!   1. leases ──► lost node / expired ──► Requeue (sorted by tenant, id)
//!          │        otherwise: the lease keeps its slot and counts as running
//!          ▼
//!   2. queued ──► not_before <= now, not leased ──► per tenant, sorted once by
//!          │        (effective priority desc, enqueued_at asc, id asc)
//!          ▼
//!   3. tenant heap, min running/weight ──► next placeable task of that tenant
//!          │        (unplaceable tasks are skipped for the rest of the round)
//!          ▼
//!   4. least-loaded eligible node ──► Assign, until max_assignments or no slot
//! ```
//!
//! Within one round nodes only ever lose free slots, so a task that cannot be
//! placed once cannot be placed later in the same round: skipping it for good
//! is exact, and it keeps a round at O(q log q + (a·log t) + (a + c)·n) for q
//! queued tasks, a assignments, t tenants, n nodes and c distinct
//! (task type, required labels) classes.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// How the cluster currently judges a node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Heartbeating normally; may receive work.
    Alive,
    /// Missed heartbeats; keeps its leases but receives no new work.
    Suspect,
    /// Declared dead; its leases are requeued.
    Dead,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Dead => "dead",
        }
    }
}

/// One node as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub liveness: Liveness,
    /// A draining node finishes what it holds and receives nothing new.
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    /// Task types (plugins) present on the node.
    pub task_types: BTreeSet<String>,
    /// What else it offers (`model:all-MiniLM-L6-v2`).
    #[serde(default)]
    pub capabilities: BTreeSet<String>,
    pub worker_slots: u32,
    /// Recent CPU load, 0..1 and above when overloaded; a tie-breaker only.
    pub cpu_load: f64,
    pub last_heartbeat_ms: u64,
}

/// A task waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedTask {
    pub tenant: String,
    pub id: String,
    pub task_type: String,
    /// 0..=9, 9 most urgent. Larger values are not rejected, just more urgent.
    pub priority: u8,
    /// Labels a node must carry with equal values.
    pub required_labels: BTreeMap<String, String>,
    /// Capabilities a node must offer (`model:all-MiniLM-L6-v2`).
    #[serde(default)]
    pub requires: BTreeSet<String>,
    pub enqueued_at_ms: u64,
    /// Retry backoff: the task is not eligible before this instant.
    pub not_before_ms: u64,
}

/// A task currently leased to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedTask {
    pub tenant: String,
    pub id: String,
    pub node_id: u64,
    /// The lease epoch, echoed in a requeue so a stale one is fenced off.
    pub epoch: u64,
    pub lease_deadline_ms: u64,
}

/// The cluster snapshot [`decide`] works on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// Node ids should be unique; of duplicates only the first counts.
    pub nodes: Vec<NodeView>,
    pub queued: Vec<QueuedTask>,
    pub leased: Vec<LeasedTask>,
    /// Fair-share weights; a missing tenant or a weight of 0 counts as 1.
    pub tenant_weights: BTreeMap<String, u32>,
}

/// Tuning of one [`decide`] round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Lease length stamped on assignments.
    pub lease_ms: u64,
    /// Each this-many ms of waiting raises a task's effective priority by one
    /// level; 0 disables aging.
    pub aging_ms_per_level: u64,
    /// Upper bound on assignments per [`decide`] call (requeues are unbounded).
    pub max_assignments: usize,
    /// A node silent for longer than this loses its tasks and gets no new ones.
    pub recovery_timeout_ms: u64,
    /// Tasks a node may hold per worker slot (0 counts as 1): those past
    /// its slots wait on the node and start as soon as a worker frees.
    pub prefetch: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            aging_ms_per_level: 10_000,
            max_assignments: 256,
            recovery_timeout_ms: 5_000,
            prefetch: 1,
        }
    }
}

/// What the leader should propose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Lease a queued task to a node until `lease_deadline_ms`.
    Assign { tenant: String, id: String, node_id: u64, lease_deadline_ms: u64 },
    /// Take a leased task back into the queue; `epoch` is the lease being ended.
    Requeue { tenant: String, id: String, epoch: u64, reason: RequeueReason },
}

impl Decision {
    /// The `(tenant, id)` of the task the decision is about.
    pub fn task(&self) -> (&str, &str) {
        match self {
            Self::Assign { tenant, id, .. } | Self::Requeue { tenant, id, .. } => (tenant, id),
        }
    }
}

/// Why a leased task goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequeueReason {
    /// The lease ran out on a node that is still around.
    LeaseExpired,
    /// The node is gone from the view, dead, or silent past the recovery timeout.
    NodeLost,
}

/// One scheduling round. See the module doc for the rules; never panics.
pub fn decide(view: &View, now_ms: u64, params: &Params) -> Vec<Decision> {
    let mut nodes = Nodes::new(&view.nodes, now_ms, params);
    let mut decisions = Vec::new();

    // 1. Leases: requeue the lost and the expired; the rest keep their slot.
    let mut leased_keys: HashSet<(&str, &str)> = HashSet::with_capacity(view.leased.len());
    let mut running: HashMap<&str, u64> = HashMap::new();
    let mut requeues: Vec<(&LeasedTask, RequeueReason)> = Vec::new();
    for lease in &view.leased {
        leased_keys.insert((&lease.tenant, &lease.id));
        let node = nodes.index.get(&lease.node_id).map(|&i| &nodes.all[i]);
        match lease_verdict(lease, node, now_ms) {
            Some(reason) => requeues.push((lease, reason)),
            None => {
                if let Some(&i) = nodes.index.get(&lease.node_id) {
                    nodes.all[i].busy = nodes.all[i].busy.saturating_add(1);
                }
                let count = running.entry(&lease.tenant).or_default();
                *count = count.saturating_add(1);
            }
        }
    }
    nodes.free_total = nodes.all.iter().map(NodeSlot::free).fold(0, u64::saturating_add);
    requeues.sort_by(|a, b| (&a.0.tenant, &a.0.id).cmp(&(&b.0.tenant, &b.0.id)));
    requeues.dedup_by(|a, b| a.0.tenant == b.0.tenant && a.0.id == b.0.id);
    decisions.extend(requeues.into_iter().map(|(lease, reason)| Decision::Requeue {
        tenant: lease.tenant.clone(),
        id: lease.id.clone(),
        epoch: lease.epoch,
        reason,
    }));

    // 2. Eligible queued tasks per tenant, each tenant sorted once. A task
    // that is leased (or was requeued just now) is not queued for this round.
    let mut per_tenant: BTreeMap<&str, Vec<(u64, &QueuedTask)>> = BTreeMap::new();
    for task in &view.queued {
        if task.not_before_ms > now_ms || leased_keys.contains(&(task.tenant.as_str(), task.id.as_str())) {
            continue;
        }
        let effective = effective_priority(task, now_ms, params.aging_ms_per_level);
        per_tenant.entry(&task.tenant).or_default().push((effective, task));
    }
    let mut queues: Vec<TenantQueue<'_>> = per_tenant
        .into_iter()
        .map(|(name, mut tasks)| {
            tasks.sort_by(|a, b| {
                b.0.cmp(&a.0).then(a.1.enqueued_at_ms.cmp(&b.1.enqueued_at_ms)).then(a.1.id.cmp(&b.1.id))
            });
            TenantQueue { name, tasks, cursor: 0 }
        })
        .collect();

    // 3 + 4. Fair share across tenants, placement by load.
    let mut heap: BinaryHeap<Reverse<Share<'_>>> = queues
        .iter()
        .enumerate()
        .map(|(queue, q)| {
            let weight = view.tenant_weights.get(q.name).map_or(1, |&w| u64::from(w.max(1)));
            Reverse(Share { running: running.get(q.name).copied().unwrap_or(0), weight, name: q.name, queue })
        })
        .collect();
    let mut classes = Classes::default();
    let mut assigned_keys: HashSet<(&str, &str)> = HashSet::new();
    let lease_deadline_ms = now_ms.saturating_add(params.lease_ms);
    while assigned_keys.len() < params.max_assignments && nodes.free_total > 0 {
        let Some(Reverse(share)) = heap.pop() else { break };
        let queue = &mut queues[share.queue];
        let mut placed = None;
        while let Some(&(_, task)) = queue.tasks.get(queue.cursor) {
            queue.cursor += 1;
            if assigned_keys.contains(&(task.tenant.as_str(), task.id.as_str())) {
                continue; // a duplicate queued entry of a task placed this round
            }
            if let Some(node) = classes.place(task, &nodes) {
                placed = Some((task, node));
                break;
            }
        }
        // A tenant with nothing placeable left drops out of the heap.
        let Some((task, node)) = placed else { continue };
        nodes.take_slot(node);
        assigned_keys.insert((&task.tenant, &task.id));
        decisions.push(Decision::Assign {
            tenant: task.tenant.clone(),
            id: task.id.clone(),
            node_id: nodes.all[node].view.id,
            lease_deadline_ms,
        });
        heap.push(Reverse(Share { running: share.running.saturating_add(1), ..share }));
    }
    decisions
}

/// The free slots each node open for work has left once a round's
/// `decisions` (what [`decide`] answered for the same view, time and
/// params) are carried out, as `(node id, free slots)`, nodes in view order.
///
/// Every queued task that fits a node with a slot left was placed by the
/// round ([`decide`] places until no task fits a free slot), so a task
/// submitted after the round may take one of these slots without jumping
/// ahead of any queued task. Empty when the round stopped at
/// `max_assignments`: then queued tasks may still fit anywhere.
pub fn leftover_slots(view: &View, decisions: &[Decision], now_ms: u64, params: &Params) -> Vec<(u64, u64)> {
    let assigned = decisions.iter().filter(|d| matches!(d, Decision::Assign { .. })).count();
    if assigned >= params.max_assignments {
        return Vec::new();
    }
    let mut nodes = Nodes::new(&view.nodes, now_ms, params);
    let busy = view
        .leased
        .iter()
        .filter_map(|lease| {
            let node = nodes.index.get(&lease.node_id).map(|&i| &nodes.all[i]);
            lease_verdict(lease, node, now_ms).is_none().then_some(lease.node_id)
        })
        .chain(decisions.iter().filter_map(|d| match d {
            Decision::Assign { node_id, .. } => Some(*node_id),
            Decision::Requeue { .. } => None,
        }))
        .collect::<Vec<_>>();
    for id in busy {
        if let Some(&i) = nodes.index.get(&id) {
            nodes.all[i].busy = nodes.all[i].busy.saturating_add(1);
        }
    }
    nodes.all.iter().map(|n| (n.view.id, n.free())).filter(|(_, free)| *free > 0).collect()
}

/// Why a lease ends this round, if it does. `node` is `None` when the node is
/// missing from the view.
fn lease_verdict(lease: &LeasedTask, node: Option<&NodeSlot<'_>>, now_ms: u64) -> Option<RequeueReason> {
    match node {
        Some(node) if !node.lost => (lease.lease_deadline_ms < now_ms).then_some(RequeueReason::LeaseExpired),
        _ => Some(RequeueReason::NodeLost),
    }
}

/// `priority` plus one level per `aging_ms_per_level` waited; 0 disables aging.
fn effective_priority(task: &QueuedTask, now_ms: u64, aging_ms_per_level: u64) -> u64 {
    let waited = now_ms.saturating_sub(task.enqueued_at_ms);
    u64::from(task.priority).saturating_add(waited.checked_div(aging_ms_per_level).unwrap_or(0))
}

/// A tenant's place in the fair-share heap; smaller `running / weight` first,
/// then the tenant name.
#[derive(Debug, Clone, Copy)]
struct Share<'a> {
    running: u64,
    /// Always >= 1.
    weight: u64,
    name: &'a str,
    queue: usize,
}

impl Ord for Share<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // running/weight compared without division or overflow.
        let lhs = u128::from(self.running) * u128::from(other.weight);
        let rhs = u128::from(other.running) * u128::from(self.weight);
        lhs.cmp(&rhs).then_with(|| self.name.cmp(other.name))
    }
}

impl PartialOrd for Share<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Share<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Share<'_> {}

struct TenantQueue<'a> {
    name: &'a str,
    /// `(effective priority, task)`, most urgent first.
    tasks: Vec<(u64, &'a QueuedTask)>,
    /// Everything before the cursor was assigned or found unplaceable.
    cursor: usize,
}

struct NodeSlot<'a> {
    view: &'a NodeView,
    /// Dead, or silent past the recovery timeout: its leases are requeued.
    lost: bool,
    /// May receive new work: alive, not draining, not lost.
    open: bool,
    /// Leases kept this round plus assignments made this round.
    busy: u64,
    /// Leases it may hold: its worker slots times the prefetch.
    capacity: u64,
}

impl NodeSlot<'_> {
    fn free(&self) -> u64 {
        if self.open { self.capacity.saturating_sub(self.busy) } else { 0 }
    }

    /// Placement order: least busy/slots, then least CPU load, then lowest id.
    fn load_cmp(&self, other: &Self) -> Ordering {
        let lhs = u128::from(self.busy) * u128::from(other.view.worker_slots);
        let rhs = u128::from(other.busy) * u128::from(self.view.worker_slots);
        lhs.cmp(&rhs).then(self.view.cpu_load.total_cmp(&other.view.cpu_load)).then(self.view.id.cmp(&other.view.id))
    }
}

struct Nodes<'a> {
    /// One entry per distinct node id, first occurrence wins.
    all: Vec<NodeSlot<'a>>,
    index: HashMap<u64, usize>,
    /// Sum of `free()` over all nodes once leases are counted; kept exact as
    /// slots are taken.
    free_total: u64,
}

impl<'a> Nodes<'a> {
    fn new(views: &'a [NodeView], now_ms: u64, params: &Params) -> Self {
        let recovery_timeout_ms = params.recovery_timeout_ms;
        let prefetch = u64::from(params.prefetch.max(1));
        let mut all = Vec::with_capacity(views.len());
        let mut index = HashMap::with_capacity(views.len());
        for view in views {
            if index.contains_key(&view.id) {
                continue;
            }
            index.insert(view.id, all.len());
            let lost =
                view.liveness == Liveness::Dead || now_ms.saturating_sub(view.last_heartbeat_ms) > recovery_timeout_ms;
            let open = !lost && view.liveness == Liveness::Alive && !view.draining;
            all.push(NodeSlot {
                view,
                lost,
                open,
                busy: 0,
                capacity: u64::from(view.worker_slots).saturating_mul(prefetch),
            });
        }
        Self { all, index, free_total: 0 }
    }

    fn take_slot(&mut self, node: usize) {
        self.all[node].busy = self.all[node].busy.saturating_add(1);
        self.free_total = self.free_total.saturating_sub(1);
    }
}

/// A task's type, required labels and required capabilities.
type ClassKey<'a> = (&'a str, &'a BTreeMap<String, String>, &'a BTreeSet<String>);

/// Tasks with the same type, required labels and required capabilities fit
/// the same nodes; a class's
/// node list is computed the first time one of its tasks is examined.
#[derive(Default)]
struct Classes<'a> {
    index: HashMap<ClassKey<'a>, usize>,
    /// Indices into `Nodes::all` that are open and fit the class; emptied
    /// once none of them has a free slot (it cannot get one back this round).
    fitting: Vec<Vec<usize>>,
}

impl<'a> Classes<'a> {
    /// The least-loaded node with a free slot that fits `task`.
    fn place(&mut self, task: &'a QueuedTask, nodes: &Nodes<'_>) -> Option<usize> {
        let class = *self.index.entry((&task.task_type, &task.required_labels, &task.requires)).or_insert_with(|| {
            let fit = nodes.all.iter().enumerate().filter(|(_, n)| n.open && fits(n.view, task)).map(|(i, _)| i);
            self.fitting.push(fit.collect());
            self.fitting.len() - 1
        });
        let fitting = &mut self.fitting[class];
        let best = fitting
            .iter()
            .map(|&i| (i, &nodes.all[i]))
            .filter(|(_, n)| n.free() > 0)
            .min_by(|a, b| a.1.load_cmp(b.1))
            .map(|(i, _)| i);
        if best.is_none() {
            fitting.clear();
        }
        best
    }
}

/// Static fit: the node runs the task type, carries every required label and
/// offers every required capability.
pub(crate) fn fits(node: &NodeView, task: &QueuedTask) -> bool {
    node.task_types.contains(&task.task_type)
        && task.required_labels.iter().all(|(k, v)| node.labels.get(k) == Some(v))
        && task.requires.is_subset(&node.capabilities)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> NodeView {
        NodeView {
            id,
            liveness: Liveness::Alive,
            draining: false,
            labels: BTreeMap::new(),
            task_types: ["echo".to_string()].into(),
            capabilities: BTreeSet::new(),
            worker_slots: 4,
            cpu_load: 0.0,
            last_heartbeat_ms: 1_000,
        }
    }

    fn task(priority: u8, enqueued_at_ms: u64) -> QueuedTask {
        QueuedTask {
            tenant: "t".into(),
            id: "x".into(),
            task_type: "echo".into(),
            priority,
            required_labels: BTreeMap::new(),
            requires: BTreeSet::new(),
            enqueued_at_ms,
            not_before_ms: 0,
        }
    }

    /// With a prefetch of 2 a node with 4 slots is leased 8 tasks, the
    /// leases it already holds counted; with 1 (the control), 4.
    #[test]
    fn prefetch_leases_that_many_tasks_per_slot() {
        let queued: Vec<QueuedTask> = (0..12).map(|i| QueuedTask { id: format!("q{i:02}"), ..task(5, 100) }).collect();
        let leased =
            vec![LeasedTask { tenant: "t".into(), id: "held".into(), node_id: 1, epoch: 1, lease_deadline_ms: 50_000 }];
        let view = View { nodes: vec![node(1)], queued, leased, ..View::default() };
        let assigned = |prefetch| {
            let params = Params { prefetch, ..Params::default() };
            let d = decide(&view, 1_000, &params);
            assert_eq!(leftover_slots(&view, &d, 1_000, &params), [], "every slot taken");
            d.len()
        };
        assert_eq!(assigned(2), 7);
        assert_eq!(assigned(1), 3);
        assert_eq!(assigned(0), 3, "0 counts as 1");
        let few = View { queued: view.queued[..2].to_vec(), ..view.clone() };
        let params = Params { prefetch: 2, ..Params::default() };
        let d = decide(&few, 1_000, &params);
        assert_eq!(leftover_slots(&few, &d, 1_000, &params), [(1, 5)]);
    }

    #[test]
    fn effective_priority_table() {
        // (priority, enqueued_at, now, aging, expected)
        let cases: &[(u8, u64, u64, u64, u64)] = &[
            (5, 100, 100, 10, 5),                // no wait
            (0, 0, 99, 10, 9),                   // 99ms / 10 = 9 levels
            (0, 0, 100, 10, 10),                 // exactly 10 levels, beyond 9 is fine
            (3, 200, 100, 10, 3),                // enqueued in the future: no wait
            (7, 0, u64::MAX, 1, u64::MAX),       // saturates
            (2, 0, 1_000_000, 0, 2),             // aging disabled
            (9, 0, u64::MAX, u64::MAX, 10),      // huge step
            (u8::MAX, 0, 0, 10, u8::MAX as u64), // out-of-range priority kept
        ];
        for &(priority, enqueued, now, aging, expected) in cases {
            let got = effective_priority(&task(priority, enqueued), now, aging);
            assert_eq!(got, expected, "priority {priority} enqueued {enqueued} now {now} aging {aging}");
        }
    }

    #[test]
    fn lease_verdict_table() {
        let lease = LeasedTask { tenant: "t".into(), id: "x".into(), node_id: 1, epoch: 3, lease_deadline_ms: 1_000 };
        let mut dead = node(1);
        dead.liveness = Liveness::Dead;
        let mut suspect = node(1);
        suspect.liveness = Liveness::Suspect;
        let mut draining = node(1);
        draining.draining = true;
        /// (case, node or missing, now, recovery timeout, expected)
        type Case = (&'static str, Option<NodeView>, u64, u64, Option<RequeueReason>);
        let cases: Vec<Case> = vec![
            ("healthy, at deadline", Some(node(1)), 1_000, 5_000, None),
            ("healthy, past deadline", Some(node(1)), 1_001, 5_000, Some(RequeueReason::LeaseExpired)),
            ("missing node", None, 500, 5_000, Some(RequeueReason::NodeLost)),
            ("dead node", Some(dead), 500, 5_000, Some(RequeueReason::NodeLost)),
            ("suspect keeps lease", Some(suspect.clone()), 500, 5_000, None),
            ("suspect, past deadline", Some(suspect), 2_000, 5_000, Some(RequeueReason::LeaseExpired)),
            ("draining keeps lease", Some(draining), 500, 5_000, None),
            ("silent exactly the timeout", Some(node(1)), 6_000, 5_000, Some(RequeueReason::LeaseExpired)),
            ("silent past the timeout", Some(node(1)), 6_001, 5_000, Some(RequeueReason::NodeLost)),
            ("heartbeat from the future", Some(node(1)), 0, 0, None),
        ];
        for (case, view, now, timeout, expected) in cases {
            let views: Vec<NodeView> = view.into_iter().collect();
            let nodes = Nodes::new(&views, now, &Params { recovery_timeout_ms: timeout, ..Params::default() });
            let slot = nodes.all.first();
            assert_eq!(lease_verdict(&lease, slot, now), expected, "{case}");
        }
    }

    #[test]
    fn share_order_table() {
        let share = |running, weight, name| Share { running, weight, name, queue: 0 };
        // (a, b, expected a.cmp(b))
        let cases = [
            (share(0, 1, "b"), share(1, 1, "a"), Ordering::Less),
            (share(3, 3, "a"), share(1, 1, "b"), Ordering::Less), // equal ratio, name decides
            (share(2, 3, "z"), share(1, 1, "a"), Ordering::Less), // 0.67 < 1
            (share(u64::MAX, 1, "a"), share(u64::MAX, 2, "b"), Ordering::Greater),
            (share(4, 2, "a"), share(2, 1, "a"), Ordering::Equal),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.cmp(&b), expected, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn node_load_order_table() {
        let slot = |id, slots, busy, cpu| {
            let mut view = node(id);
            view.worker_slots = slots;
            view.cpu_load = cpu;
            (view, busy)
        };
        // (a, b, expected a.load_cmp(b))
        let cases = [
            (slot(1, 4, 1, 0.9), slot(2, 4, 2, 0.0), Ordering::Less), // fraction busy first
            (slot(1, 8, 2, 0.5), slot(2, 4, 1, 0.1), Ordering::Greater), // 1/4 == 1/4, cpu decides
            (slot(2, 4, 1, 0.5), slot(1, 8, 2, 0.5), Ordering::Greater), // all equal, id decides
            (slot(1, 4, 0, f64::NAN), slot(2, 4, 0, 0.5), Ordering::Greater), // NaN load sorts last
        ];
        for ((va, busy_a), (vb, busy_b), expected) in cases {
            let a = NodeSlot { view: &va, lost: false, open: true, busy: busy_a, capacity: u64::from(va.worker_slots) };
            let b = NodeSlot { view: &vb, lost: false, open: true, busy: busy_b, capacity: u64::from(vb.worker_slots) };
            assert_eq!(a.load_cmp(&b), expected, "node {} vs node {}", va.id, vb.id);
        }
    }

    #[test]
    fn fits_table() {
        let mut gpu = node(1);
        gpu.labels.insert("gpu".into(), "a100".into());
        gpu.labels.insert("zone".into(), "eu".into());
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // (task type, required labels, expected)
        let cases: Vec<(&str, BTreeMap<String, String>, bool)> = vec![
            ("echo", labels(&[]), true),
            ("echo", labels(&[("gpu", "a100")]), true),
            ("echo", labels(&[("gpu", "a100"), ("zone", "eu")]), true),
            ("echo", labels(&[("gpu", "h100")]), false),
            ("echo", labels(&[("disk", "ssd")]), false),
            ("embed", labels(&[]), false),
        ];
        for (task_type, required_labels, expected) in cases {
            let t = QueuedTask { task_type: task_type.into(), required_labels: required_labels.clone(), ..task(0, 0) };
            assert_eq!(fits(&gpu, &t), expected, "{task_type} {required_labels:?}");
        }
    }

    #[test]
    fn free_slots_never_underflow_and_closed_nodes_have_none() {
        let v = node(1);
        let over = NodeSlot { view: &v, lost: false, open: true, busy: 10, capacity: 4 };
        assert_eq!(over.free(), 0);
        let closed = NodeSlot { view: &v, lost: false, open: false, busy: 0, capacity: 4 };
        assert_eq!(closed.free(), 0);
        let open = NodeSlot { view: &v, lost: false, open: true, busy: 1, capacity: 4 };
        assert_eq!(open.free(), 3);
    }

    #[test]
    fn params_default_values() {
        let p = Params::default();
        assert_eq!(
            (p.lease_ms, p.aging_ms_per_level, p.max_assignments, p.recovery_timeout_ms),
            (30_000, 10_000, 256, 5_000)
        );
    }
}
