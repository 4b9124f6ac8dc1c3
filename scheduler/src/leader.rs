//! The leader's scheduling loop: builds a [`View`] from the replicated
//! state, runs the pure [`decide`], and proposes its decisions as batched
//! `AssignTasks` / `RequeueTasks` commands. Only the leader runs it; a new
//! leader continues from the replicated state (no task lost, none assigned
//! twice: assignments are fenced by the queue state in apply).

use std::sync::Arc;
use std::time::Duration;

use synod_store::pb::{self, command::Kind};

use crate::core::{Decision, LeasedTask, Liveness, NodeView, Params, QueuedTask, RequeueReason, View, decide};
use crate::host::{Host, liveness, worker_slots};
use crate::placer::Placer;

/// Least time between two rounds that found nothing to do.
const IDLE_ROUND_GAP: Duration = Duration::from_millis(10);

/// Queued tasks per tenant the leader looks at in one round.
const PER_TENANT_WINDOW: usize = 512;

pub fn params(cfg: &synod_config::Config) -> Params {
    Params {
        lease_ms: cfg.scaling.task_lease.get().as_millis() as u64,
        aging_ms_per_level: 10_000,
        max_assignments: 1024,
        recovery_timeout_ms: cfg.scaling.recovery_timeout.get().as_millis() as u64,
        prefetch: cfg.scaling.prefetch,
    }
}

/// The scheduler's view of the replicated state on this node.
///
/// `grace_from` is when this leader became ready (0: no grace). Heartbeats,
/// lease deadlines and drain starts were stamped by earlier leaders, whose
/// clocks may run ahead of or behind this one; so no node counts as silent
/// and no lease as run out for less than a full recovery timeout / lease
/// after this leader took over, however those stamps compare with its clock.
pub fn build_view(host: &impl Host, now: u64, grace_from: u64) -> anyhow::Result<View> {
    let lease_ms = host.config().scaling.task_lease.get().as_millis() as u64;
    let store = host.store();
    let nodes: Vec<NodeView> = store
        .list_nodes()?
        .into_iter()
        .filter_map(|r| {
            let worker_slots = worker_slots(&r);
            let info = r.info?;
            let last_heartbeat_ms = r.last_heartbeat_ms.max(grace_from);
            let liveness = liveness(host.config(), last_heartbeat_ms, now);
            Some(NodeView {
                id: info.id,
                liveness,
                draining: r.draining,
                labels: info.labels,
                task_types: info.task_types.into_iter().collect(),
                capabilities: info.capabilities.into_iter().collect(),
                worker_slots,
                cpu_load: r.load.map(|l| l.cpu_load).unwrap_or(0.0),
                last_heartbeat_ms,
            })
        })
        .collect();
    let leased: Vec<LeasedTask> = store
        .leased_tasks(None)?
        .into_iter()
        .map(|l| LeasedTask {
            tenant: l.tenant,
            id: l.id,
            node_id: l.node_id,
            epoch: l.entry.epoch,
            lease_deadline_ms: if grace_from > 0 {
                l.entry.deadline_ms.max(grace_from.saturating_add(lease_ms))
            } else {
                l.entry.deadline_ms
            },
        })
        .collect();
    // A round cannot place more tasks than there are free slots (prefetch
    // included), so each tenant's window of queued tasks need not be
    // longer than that.
    let prefetch = host.config().scaling.prefetch.max(1) as usize;
    let free: usize = nodes
        .iter()
        .filter(|n| n.liveness == Liveness::Alive && !n.draining)
        .map(|n| {
            let capacity = (n.worker_slots as usize).saturating_mul(prefetch);
            capacity.saturating_sub(leased.iter().filter(|l| l.node_id == n.id).count())
        })
        .sum();
    let window = free.clamp(16, PER_TENANT_WINDOW);
    let queued: Vec<QueuedTask> = store
        .ready_tasks(window, now)?
        .into_iter()
        .map(|q| QueuedTask {
            tenant: q.tenant,
            id: q.id,
            task_type: q.entry.task_type,
            priority: q.entry.priority.min(9) as u8,
            required_labels: q.entry.labels,
            requires: q.entry.requires.into_iter().collect(),
            enqueued_at_ms: q.entry.enqueued_at_ms,
            not_before_ms: q.entry.not_before_ms,
        })
        .collect();
    Ok(View { nodes, queued, leased, tenant_weights: Default::default() })
}

/// Tasks still leased to a node that has been draining for longer than
/// `scaling.drain_deadline` go back to the queue (and so elsewhere).
fn drain_overdue(host: &impl Host, view: &View, decided: &[Decision], now: u64, grace_from: u64) -> Vec<pb::TaskRef> {
    let deadline = host.config().scaling.drain_deadline.get().as_millis() as u64;
    let overdue: std::collections::BTreeSet<u64> = match host.store().list_nodes() {
        Ok(nodes) => nodes
            .iter()
            .filter(|r| {
                r.draining
                    && r.draining_since_ms > 0
                    && now.saturating_sub(r.draining_since_ms.max(grace_from)) > deadline
            })
            .filter_map(|r| r.info.as_ref().map(|i| i.id))
            .collect(),
        Err(_) => return Vec::new(),
    };
    if overdue.is_empty() {
        return Vec::new();
    }
    let already: std::collections::BTreeSet<(&str, &str)> = decided.iter().map(|d| d.task()).collect();
    view.leased
        .iter()
        .filter(|l| overdue.contains(&l.node_id) && !already.contains(&(l.tenant.as_str(), l.id.as_str())))
        .map(|l| pb::TaskRef { tenant: l.tenant.clone(), id: l.id.clone(), epoch: l.epoch })
        .collect()
}

/// A requeue that apply() checks against the replicated state at its stamp
/// (see `RequeueTasks.checked`): a lease renewed, or a node heard from,
/// after this leader decided is left alone.
fn requeue(cfg: &synod_config::Config, tasks: Vec<pb::TaskRef>, reason: pb::RequeueReason) -> Kind {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Kind::RequeueTasks(pb::RequeueTasks {
        tasks,
        reason: reason as i32,
        checked: true,
        node_silence_ms: ms(cfg.scaling.recovery_timeout.get()).min(ms(cfg.cluster.dead_after.get())),
        drain_deadline_ms: ms(cfg.scaling.drain_deadline.get()),
        max_lost: cfg.scaling.max_lost_attempts,
    })
}

fn to_commands(cfg: &synod_config::Config, decisions: Vec<Decision>) -> Vec<Kind> {
    let lease_ms = cfg.scaling.task_lease.get().as_millis() as u64;
    let mut assignments = Vec::new();
    let mut expired = Vec::new();
    let mut lost = Vec::new();
    for d in decisions {
        match d {
            Decision::Assign { tenant, id, node_id, lease_deadline_ms } => {
                assignments.push(pb::Assignment { tenant, id, node_id, lease_deadline_ms, lease_ms })
            }
            Decision::Requeue { tenant, id, epoch, reason } => {
                let r = pb::TaskRef { tenant, id, epoch };
                match reason {
                    RequeueReason::LeaseExpired => expired.push(r),
                    RequeueReason::NodeLost => lost.push(r),
                }
            }
        }
    }
    let mut out = Vec::new();
    if !lost.is_empty() {
        out.push(requeue(cfg, lost, pb::RequeueReason::NodeLost));
    }
    if !expired.is_empty() {
        out.push(requeue(cfg, expired, pb::RequeueReason::LeaseExpired));
    }
    if !assignments.is_empty() {
        out.push(Kind::AssignTasks(pb::AssignTasks { assignments }));
    }
    out
}

/// Whether every member applies placements at submit (command format 2):
/// each has a node record advertising it, and there are as many such
/// records as members.
fn placement_supported(host: &impl Host) -> bool {
    let Ok(nodes) = host.store().list_nodes() else { return false };
    let supporting = nodes
        .iter()
        .filter(|r| r.info.as_ref().is_some_and(|i| i.command_format >= synod_store::COMMAND_FORMAT_VERSION))
        .count();
    supporting == nodes.len() && supporting >= host.member_count()
}

/// The loop; runs on every node and works while this node leads. Each
/// round also refreshes `placer`, the free slots the proposal path may
/// hand to tasks as they are submitted.
///
/// A new leader starts scheduling only once it has applied an entry of its
/// own term: before that its state may lack what earlier leaders committed
/// (renewals, completions, assignments).
pub async fn run<H: Host>(host: Arc<H>, placer: Arc<Placer>) {
    // (term, cluster time when this node became a ready leader in it)
    let mut ready: Option<(u64, u64)> = None;
    loop {
        let Some(term) = host.leader_term_applied() else {
            ready = None;
            placer.clear();
            host.wait_applied(host.applied_index(), Duration::from_millis(if host.is_leader() { 10 } else { 200 }))
                .await;
            continue;
        };
        let now = host.cluster_now_ms();
        let grace_from = match ready {
            Some((t, since)) if t == term => since,
            _ => {
                tracing::info!(term, "leading: scheduling from the replicated state");
                ready = Some((term, now));
                now
            }
        };
        let round = std::time::Instant::now();
        let round_index = host.applied_index();
        let decisions = match build_view(&*host, now, grace_from) {
            Ok(view) => {
                metrics::gauge!("synod_tasks_queued_visible").set(view.queued.len() as f64);
                metrics::gauge!("synod_tasks_leased").set(view.leased.len() as f64);
                let params = params(host.config());
                let d = decide(&view, now, &params);
                placer.refresh(&view, &d, now, &params, placement_supported(&*host));
                let drained = drain_overdue(&*host, &view, &d, now, grace_from);
                (d, drained)
            }
            Err(e) => {
                placer.clear();
                tracing::warn!(error = %e, "building the scheduler view");
                (Vec::new(), Vec::new())
            }
        };
        let (decisions, drained) = decisions;
        metrics::histogram!("synod_scheduler_round_seconds").record(round.elapsed().as_secs_f64());
        if decisions.is_empty() && drained.is_empty() {
            // Nothing to do until something is applied (a submit, a
            // completion) or a timer (backoff, lease, liveness) runs out.
            host.wait_applied(round_index, Duration::from_millis(50)).await;
            // Under a stream of unrelated writes (labels, heartbeats) an idle
            // scheduler would rebuild its view for each one: at most one idle
            // round per IDLE_ROUND_GAP.
            tokio::time::sleep_until((round + IDLE_ROUND_GAP).into()).await;
            continue;
        }
        let mut kinds = to_commands(host.config(), decisions);
        if !drained.is_empty() {
            tracing::info!(tasks = drained.len(), "drain deadline passed; re-queueing");
            kinds.insert(0, requeue(host.config(), drained, pb::RequeueReason::Drained));
        }
        for kind in kinds {
            let label = match &kind {
                Kind::AssignTasks(a) => {
                    metrics::counter!("synod_tasks_assigned_total").increment(a.assignments.len() as u64);
                    "assign"
                }
                Kind::RequeueTasks(r) => {
                    let reason = match pb::RequeueReason::try_from(r.reason) {
                        Ok(pb::RequeueReason::LeaseExpired) => "lease_expired",
                        Ok(pb::RequeueReason::NodeLost) => "node_lost",
                        Ok(pb::RequeueReason::Drained) => "drained",
                        _ => "other",
                    };
                    metrics::counter!("synod_tasks_requeued_total", "reason" => reason).increment(r.tasks.len() as u64);
                    "requeue"
                }
                _ => "other",
            };
            match host.propose(kind).await {
                Ok(pb::CommandResult { outcome: Some(pb::command_result::Outcome::Batch(b)) }) => {
                    let live = b
                        .items
                        .iter()
                        .filter(|i| i.rejected.as_ref().is_some_and(|r| r.code == pb::RejectCode::LeaseLive as i32))
                        .count();
                    if live > 0 {
                        metrics::counter!("synod_tasks_requeues_refused_total").increment(live as u64);
                        tracing::info!(live, "requeues refused by apply: the leases were renewed meanwhile");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, what = label, "proposing scheduler decisions");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
