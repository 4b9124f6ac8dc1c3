//! Builders for views and a tiny simulator that feeds decisions back.

use std::collections::BTreeMap;

use synod_scheduler::{Decision, LeasedTask, Liveness, NodeView, Params, QueuedTask, RequeueReason, View, decide};

/// The `now_ms` most tests run at.
pub const NOW: u64 = 1_000_000;

/// An alive, idle node with `slots` workers that runs `echo`, heartbeating at [`NOW`].
pub fn node(id: u64, slots: u32) -> NodeView {
    NodeView {
        id,
        liveness: Liveness::Alive,
        draining: false,
        labels: BTreeMap::new(),
        task_types: ["echo".to_string()].into(),
        capabilities: Default::default(),
        worker_slots: slots,
        cpu_load: 0.0,
        last_heartbeat_ms: NOW,
    }
}

/// A priority-0 `echo` task enqueued at [`NOW`], eligible at once.
pub fn task(tenant: &str, id: &str) -> QueuedTask {
    QueuedTask {
        tenant: tenant.into(),
        id: id.into(),
        task_type: "echo".into(),
        priority: 0,
        required_labels: BTreeMap::new(),
        requires: Default::default(),
        enqueued_at_ms: NOW,
        not_before_ms: 0,
    }
}

/// A lease of epoch 1 running until well after [`NOW`].
pub fn lease(tenant: &str, id: &str, node_id: u64) -> LeasedTask {
    LeasedTask { tenant: tenant.into(), id: id.into(), node_id, epoch: 1, lease_deadline_ms: NOW + 30_000 }
}

/// `n` tasks `{prefix}-{i:05}` of one tenant.
pub fn tasks(tenant: &str, prefix: &str, n: usize) -> Vec<QueuedTask> {
    (0..n).map(|i| task(tenant, &format!("{prefix}-{i:05}"))).collect()
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn view(nodes: Vec<NodeView>, queued: Vec<QueuedTask>, leased: Vec<LeasedTask>) -> View {
    View { nodes, queued, leased, tenant_weights: BTreeMap::new() }
}

/// `decide` at [`NOW`] with default params.
pub fn decide_now(view: &View) -> Vec<Decision> {
    decide(view, NOW, &Params::default())
}

/// `(tenant, id, node)` of every assignment, in decision order.
pub fn assigned(decisions: &[Decision]) -> Vec<(String, String, u64)> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Assign { tenant, id, node_id, .. } => Some((tenant.clone(), id.clone(), *node_id)),
            Decision::Requeue { .. } => None,
        })
        .collect()
}

/// Ids of every assignment, in decision order.
pub fn assigned_ids(decisions: &[Decision]) -> Vec<String> {
    assigned(decisions).into_iter().map(|(_, id, _)| id).collect()
}

/// `(tenant, id, reason)` of every requeue, in decision order.
pub fn requeued(decisions: &[Decision]) -> Vec<(String, String, RequeueReason)> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Requeue { tenant, id, reason, .. } => Some((tenant.clone(), id.clone(), *reason)),
            Decision::Assign { .. } => None,
        })
        .collect()
}

/// Number of assignments per tenant.
pub fn per_tenant(decisions: &[Decision]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (tenant, _, _) in assigned(decisions) {
        *counts.entry(tenant).or_insert(0) += 1;
    }
    counts
}

/// A cluster whose state follows the decisions, as the replicated state would.
pub struct Sim {
    pub view: View,
    /// Every task ever submitted, to rebuild a queued entry on requeue.
    catalog: BTreeMap<(String, String), QueuedTask>,
    next_epoch: u64,
}

impl Sim {
    pub fn new(view: View) -> Self {
        let catalog = view.queued.iter().map(|t| ((t.tenant.clone(), t.id.clone()), t.clone())).collect();
        Self { view, catalog, next_epoch: 1 }
    }

    pub fn submit(&mut self, task: QueuedTask) {
        self.catalog.insert((task.tenant.clone(), task.id.clone()), task.clone());
        self.view.queued.push(task);
    }

    /// Runs one round and applies its decisions; panics if a decision names a
    /// task that is not where the decision says it is.
    pub fn must_round(&mut self, now_ms: u64, params: &Params) -> Vec<Decision> {
        let decisions = decide(&self.view, now_ms, params);
        for decision in &decisions {
            match decision {
                Decision::Assign { tenant, id, node_id, lease_deadline_ms } => {
                    let pos = self
                        .view
                        .queued
                        .iter()
                        .position(|t| &t.tenant == tenant && &t.id == id)
                        .unwrap_or_else(|| panic!("assigned {tenant}/{id} is not queued"));
                    self.view.queued.remove(pos);
                    self.view.leased.push(LeasedTask {
                        tenant: tenant.clone(),
                        id: id.clone(),
                        node_id: *node_id,
                        epoch: self.next_epoch,
                        lease_deadline_ms: *lease_deadline_ms,
                    });
                    self.next_epoch += 1;
                }
                Decision::Requeue { tenant, id, epoch, .. } => {
                    let pos = self
                        .view
                        .leased
                        .iter()
                        .position(|l| &l.tenant == tenant && &l.id == id && l.epoch == *epoch)
                        .unwrap_or_else(|| panic!("requeued {tenant}/{id} epoch {epoch} is not leased"));
                    self.view.leased.remove(pos);
                    let task = self.catalog.get(&(tenant.clone(), id.clone())).expect("requeued task was submitted");
                    self.view.queued.push(task.clone());
                }
            }
        }
        decisions
    }

    /// Every node heartbeats at `now_ms`.
    pub fn heartbeat_all(&mut self, now_ms: u64) {
        for node in &mut self.view.nodes {
            node.last_heartbeat_ms = now_ms;
        }
    }

    /// Completes the `n` oldest leases (lowest epoch first).
    pub fn complete_oldest(&mut self, n: usize) {
        self.view.leased.sort_by_key(|l| l.epoch);
        let n = n.min(self.view.leased.len());
        self.view.leased.drain(..n);
    }
}
