//! The node-side processor: runs the tasks leased to this node on a bounded
//! pool through the plugin registry, renews their leases, and reports
//! starts and completions (with their epoch) in batched Raft writes.
//!
//! ```text
//!  applied index changes ─► scan my leases ─► new lease? ─► permit ─► plugin.execute (blocking pool, timeout)
//!                                │ lease gone / cancel requested ─► cancel token        │
//!  reports (start, done) ──────► flusher: one StartTasks / CompleteTasks write per batch ◄┘
//!  every lease/3 ─► RenewLeases for everything in flight
//! ```
//!
//! Execution is at-least-once (a lost node's task runs again elsewhere);
//! completion is exactly-once because apply() fences on the lease epoch.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use synod_plugins::{CancelToken, TaskContext};
use synod_store::pb::{self, command::Kind};
use tokio::sync::{Semaphore, mpsc};

use crate::host::Host;

type Key = (String, String);

struct InFlight {
    epoch: u64,
    cancel: CancelToken,
    /// The run ended and its report is on its way: the lease stays until
    /// the completion is applied, and the task must not run again here.
    finished: bool,
}

/// A waiting lease: (epoch, the task's priority, arrival: the scan that
/// first saw it wait).
type Waiting = (u64, u32, u64);

enum Report {
    Start(pb::TaskRef),
    Done(pb::Completion),
}

pub struct Worker<H> {
    node: Arc<H>,
    slots: Arc<Semaphore>,
    inflight: Arc<Mutex<HashMap<Key, InFlight>>>,
    /// Leases held here that wait for a free slot (prefetched, the pool
    /// shrank, or the leader counted slots a moment before a run ended):
    /// key -> (epoch, the task's priority, the scan that first saw it
    /// wait). They are renewed like running ones, so they wait instead of
    /// running out.
    waiting: Arc<Mutex<HashMap<Key, Waiting>>>,
    /// Scans that found more leases than free slots, ever: the arrival
    /// order of waiting leases.
    scans: Arc<std::sync::atomic::AtomicU64>,
    /// A run ended and its worker is free: a waiting lease may start now,
    /// before the next entry is applied.
    freed: Arc<tokio::sync::Notify>,
    tx: mpsc::Sender<Report>,
}

/// A task still running after this long is reported as running.
const START_REPORT_AFTER: Duration = Duration::from_millis(20);

// Not derived: a derive would require `H: Clone`, and the host is shared.
impl<H> Clone for Worker<H> {
    fn clone(&self) -> Self {
        Worker {
            node: self.node.clone(),
            slots: self.slots.clone(),
            inflight: self.inflight.clone(),
            waiting: self.waiting.clone(),
            scans: self.scans.clone(),
            freed: self.freed.clone(),
            tx: self.tx.clone(),
        }
    }
}

/// The node-side processor; runs on every node.
pub async fn run<H: Host>(node: Arc<H>) {
    let (tx, rx) = mpsc::channel(65_536);
    let worker = Worker {
        slots: Arc::new(Semaphore::new(node.pool_size().load(Relaxed))),
        inflight: Default::default(),
        waiting: Default::default(),
        scans: Default::default(),
        freed: Default::default(),
        tx,
        node: node.clone(),
    };
    metrics::gauge!("synod_worker_pool_size").set(node.pool_size().load(Relaxed) as f64);
    // Helpers stop with the worker, as dropping the set aborts them (a
    // supervisor restart must not double them).
    let mut helpers = tokio::task::JoinSet::new();
    helpers.spawn(flusher(node.clone(), rx));
    helpers.spawn(worker.clone().renewer());
    helpers.spawn(worker.clone().autoscale());
    let mut last_scan = Instant::now();
    let mut scanned_at_index = None;
    let mut freed = false;
    loop {
        // Leases change only when entries are applied: skip the scan when
        // nothing was and no worker freed up, but rescan every 100 ms
        // regardless.
        let applied = node.applied_index();
        if freed || scanned_at_index != Some(applied) || last_scan.elapsed() >= Duration::from_millis(100) {
            scanned_at_index = Some(applied);
            last_scan = Instant::now();
            if let Err(e) = worker.scan() {
                tracing::warn!(error = %e, "scanning leases");
            }
            metrics::histogram!("synod_worker_scan_seconds").record(last_scan.elapsed().as_secs_f64());
        }
        freed = tokio::select! {
            _ = node.wait_applied(applied, Duration::from_millis(100)) => false,
            _ = worker.freed.notified() => true,
        };
    }
}

impl<H: Host> Worker<H> {
    /// Grows the pool (doubling, up to `scaling.max_workers`) while every
    /// worker is busy, tasks wait in the queue and the CPU has room; shrinks
    /// it (halving, down to `min_workers`) after `scale_down_idle` at under
    /// half use. Never more often than `scaling.cooldown`. The heartbeat
    /// advertises the size, so the leader places no more than that here.
    async fn autoscale(self) {
        let sc = self.node.config().scaling.clone();
        let (min, max) = (sc.min_workers.clamp(1, sc.max_workers.max(1)), sc.max_workers.max(1));
        let mut last_change = Instant::now();
        let mut busy_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let size = self.node.pool_size().load(Relaxed);
            let in_flight = self.running();
            if in_flight * 2 > size {
                busy_since = Instant::now();
            }
            if last_change.elapsed() < sc.cooldown.get() {
                continue;
            }
            let Ok(queued) = self.node.store().count_tasks(&["queued"]) else { continue };
            let nodes = self.node.member_count().max(1) as u64;
            let backlog_per_worker = queued / nodes / size.max(1) as u64;
            let new = if in_flight >= size
                && backlog_per_worker >= sc.scale_up_queue_depth as u64
                && (sc.cpu_high >= 1.0 || self.node.cpu_load() < sc.cpu_high)
                && size < max
            {
                (size * 2).min(max)
            } else if size > min && busy_since.elapsed() >= sc.scale_down_idle.get() {
                (size / 2).max(min)
            } else {
                continue;
            };
            if new > size {
                self.slots.add_permits(new - size);
            } else {
                // Permits in use come back later; take what is free now and
                // the rest as runs finish.
                let slots = self.slots.clone();
                let excess = size - new;
                tokio::spawn(async move {
                    if let Ok(p) = slots.acquire_many_owned(excess as u32).await {
                        p.forget();
                    }
                });
            }
            self.node.pool_size().store(new, Relaxed);
            last_change = Instant::now();
            metrics::gauge!("synod_worker_pool_size").set(new as f64);
            tracing::info!(from = size, to = new, queued, in_flight, "worker pool resized");
        }
    }

    fn scan(&self) -> anyhow::Result<()> {
        let leases = self.node.store().leased_tasks(Some(self.node.node_id()))?;
        let mut inflight = self.inflight.lock().expect("worker map lock is never poisoned");
        let mut waiting = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        // Leases to start here, in lease-key order (per tenant, oldest id first).
        let mut fresh = Vec::new();
        for l in leases {
            let key = (l.tenant.clone(), l.id.clone());
            seen.insert(key.clone());
            if let Some(f) = inflight.get(&key) {
                if f.epoch == l.entry.epoch {
                    if l.entry.cancel_requested {
                        f.cancel.cancel();
                    }
                    continue;
                }
                f.cancel.cancel();
            }
            fresh.push((key, l, 0, 0));
        }
        // More of them than free slots (prefetched leases): the highest
        // priority starts first, as the queue would have handed them out,
        // and equal priorities in the order they arrived here (a lease that
        // waited since an earlier scan first; lease-key order within one
        // scan), so no tenant's leases wait behind another's for good. A
        // lease that waited last scan has its priority already; a new one
        // costs one read.
        if fresh.len() > self.slots.available_permits() {
            let scan = self.scans.fetch_add(1, Relaxed);
            let known = self.waiting.lock().expect("worker map lock is never poisoned");
            for (key, _, priority, arrival) in fresh.iter_mut() {
                (*priority, *arrival) = match known.get(key) {
                    Some((_, p, a)) => (*p, *a),
                    None => {
                        let task = self.node.store().get_task(&key.0, &key.1).ok().flatten();
                        (task.and_then(|r| r.spec).map_or(0, |s| s.priority), scan)
                    }
                };
            }
            drop(known);
            fresh.sort_by_key(|(_, _, priority, arrival)| (std::cmp::Reverse(*priority), *arrival));
        }
        for (key, l, priority, arrival) in fresh {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                waiting.insert(key, (l.entry.epoch, priority, arrival));
                continue;
            };
            let cancel = CancelToken::new();
            if l.entry.cancel_requested {
                // Cancelled before it started: the run ends as cancelled at
                // once (the plugin is never called) and reports so.
                cancel.cancel();
            }
            inflight.insert(key.clone(), InFlight { epoch: l.entry.epoch, cancel: cancel.clone(), finished: false });
            let this = self.clone();
            tokio::spawn(async move {
                this.run_task(key, l.entry.epoch, cancel).await;
                drop(permit);
                if !this.waiting.lock().expect("worker map lock is never poisoned").is_empty() {
                    this.freed.notify_one();
                }
            });
        }
        metrics::gauge!("synod_worker_leases_waiting").set(waiting.len() as f64);
        *self.waiting.lock().expect("worker map lock is never poisoned") = waiting;
        // Leases taken away (requeued, node drained, or completed): stop
        // those runs and forget them.
        inflight.retain(|k, f| {
            if seen.contains(k) {
                true
            } else {
                f.cancel.cancel();
                false
            }
        });
        Ok(())
    }

    async fn run_task(&self, key: Key, epoch: u64, cancel: CancelToken) {
        let (tenant, id) = key.clone();
        let tref = pb::TaskRef { tenant: tenant.clone(), id: id.clone(), epoch };
        let rec = match self.node.store().get_task(&tenant, &id) {
            Ok(Some(r)) => r,
            _ => {
                self.forget(&key, epoch);
                return;
            }
        };
        let spec = rec.spec.clone().unwrap_or_default();
        let started = Instant::now();
        if rec.enqueued_at_ms > 0 {
            let wait = self.node.cluster_now_ms().saturating_sub(rec.enqueued_at_ms) as f64 / 1000.0;
            metrics::histogram!("synod_tasks_queue_wait_seconds").record(wait);
        }
        let payload: serde_json::Value = match self.node.store().task_payload(&rec) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            Err(e) => {
                tracing::error!(task = %id, error = %e, "task payload unreadable");
                let error = format!("payload unreadable on node {}: {e}", self.node.node_id());
                let _ = self
                    .tx
                    .send(Report::Done(pb::Completion { task: Some(tref), result: None, error, retryable: true }))
                    .await;
                self.forget(&key, epoch);
                return;
            }
        };
        let ctx = TaskContext {
            task_id: id.clone(),
            tenant: tenant.clone(),
            attempt: rec.attempts.len() as u32,
            plugin_version: Some(spec.plugin_version.clone()).filter(|v| !v.is_empty()),
            cancel,
        };
        let timeout = Duration::from_millis(spec.timeout_ms.max(1));
        // Report "running" only for tasks that take a while: a trivial task
        // then costs one Raft write less (apply stamps its start at completion).
        let exec = self.node.plugins().execute(&spec.task_type, payload, ctx, timeout);
        tokio::pin!(exec);
        let outcome = tokio::select! {
            out = &mut exec => out,
            _ = tokio::time::sleep(START_REPORT_AFTER) => {
                let _ = self.tx.send(Report::Start(tref.clone())).await;
                exec.await
            }
        };
        metrics::histogram!("synod_tasks_run_seconds", "type" => spec.task_type.clone())
            .record(started.elapsed().as_secs_f64());
        // A vector naming a collection is stored there before the task
        // counts as done; a refused upsert fails the task for good (the same
        // input would be refused again), an unavailable cluster for a retry.
        let outcome = match outcome {
            Ok(v) => match self.store_vector(&tenant, &id, &v).await {
                Ok(()) => Ok(v),
                Err((error, retryable)) => {
                    let _ = self
                        .tx
                        .send(Report::Done(pb::Completion { task: Some(tref), result: None, error, retryable }))
                        .await;
                    self.forget(&key, epoch);
                    return;
                }
            },
            Err(e) => Err(e),
        };
        if outcome.is_ok() && rec.created_at_ms > 0 {
            let e2e = self.node.cluster_now_ms().saturating_sub(rec.created_at_ms) as f64 / 1000.0;
            metrics::histogram!("synod_tasks_end_to_end_seconds").record(e2e);
        }
        let completion = match outcome {
            Ok(v) => pb::Completion {
                task: Some(tref),
                result: Some(serde_json::to_vec(&v).expect("a JSON value serializes")),
                error: String::new(),
                retryable: false,
            },
            Err(e) => pb::Completion { task: Some(tref), result: None, error: e.to_string(), retryable: e.retryable() },
        };
        let _ = self.tx.send(Report::Done(completion)).await;
        self.forget(&key, epoch);
    }

    /// Marks a run as ended (unless a newer attempt of the same task took
    /// its place). The entry stays until the next scan finds the lease gone,
    /// so a completion still on its way does not make the task run twice.
    fn forget(&self, key: &Key, epoch: u64) {
        let mut inflight = self.inflight.lock().expect("worker map lock is never poisoned");
        if let Some(f) = inflight.get_mut(key)
            && f.epoch == epoch
        {
            f.finished = true;
        }
    }

    /// Upserts the vector of a task result that names a `collection` (the
    /// `vectorize` plugin passes `collection`, `id`, `text` and `metadata`
    /// through) into that collection of the task's tenant. The point's id is
    /// the result's `id`, else the task id. Idempotent: a rerun replaces it.
    async fn store_vector(
        &self,
        tenant: &str,
        task_id: &str,
        result: &serde_json::Value,
    ) -> Result<(), (String, bool)> {
        let Some(collection) = result.get("collection").and_then(|c| c.as_str()) else { return Ok(()) };
        let Some(vector) = result.get("vector").and_then(|v| v.as_array()) else {
            return Err((format!("the result names collection {collection} but has no vector"), false));
        };
        let vector: Vec<f32> = vector.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect();
        let point = crate::VectorPoint {
            id: result.get("id").and_then(|i| i.as_str()).unwrap_or(task_id).to_string(),
            vector,
            text: result.get("text").and_then(|t| t.as_str()).map(str::to_string),
            metadata: result.get("metadata").filter(|m| m.is_object()).cloned(),
        };
        self.node
            .store_point(tenant, collection, point)
            .await
            .map_err(|e| (format!("storing the vector in {collection}: {}", e.message), e.retryable))
    }

    /// Runs that have not ended yet.
    fn running(&self) -> usize {
        self.inflight.lock().expect("worker map lock is never poisoned").values().filter(|f| !f.finished).count()
    }

    async fn renewer(self) {
        // A live worker renews every third of `scaling.task_lease`; a dead
        // node's tasks come back sooner, through `scaling.recovery_timeout`.
        let lease = self.node.config().scaling.task_lease.get().as_millis() as u64;
        loop {
            tokio::time::sleep(Duration::from_millis(lease / 3)).await;
            // The deadline is the leader's stamp plus the lease: this
            // node's clock never enters it.
            let renewals: Vec<pb::LeaseRenewal> = {
                let inflight = self.inflight.lock().expect("worker map lock is never poisoned");
                let waiting = self.waiting.lock().expect("worker map lock is never poisoned");
                let running = inflight.iter().filter(|(_, f)| !f.finished).map(|(k, f)| (k, f.epoch));
                running
                    .chain(waiting.iter().map(|(k, (e, _, _))| (k, *e)))
                    .map(|((tenant, id), epoch)| pb::LeaseRenewal {
                        task: Some(pb::TaskRef { tenant: tenant.clone(), id: id.clone(), epoch }),
                        lease_deadline_ms: 0,
                        lease_ms: lease,
                    })
                    .collect()
            };
            if renewals.is_empty() {
                continue;
            }
            let cmd = Kind::RenewLeases(pb::RenewLeases { node_id: self.node.node_id(), renewals });
            if let Err(e) = self.node.propose(cmd).await {
                tracing::warn!(error = %e, "renewing leases");
            }
        }
    }
}

/// Batches reports into one Raft write per kind; retries until accepted.
/// Retrying an indeterminate write is safe: apply() fences on the epoch,
/// so a repeated completion is rejected, never applied twice.
async fn flusher<H: Host>(node: Arc<H>, mut rx: mpsc::Receiver<Report>) {
    while let Some(first) = rx.recv().await {
        let mut reports = vec![first];
        while reports.len() < 1024 {
            match rx.try_recv() {
                Ok(r) => reports.push(r),
                Err(_) => break,
            }
        }
        let mut starts = Vec::new();
        let mut done = Vec::new();
        for r in reports {
            match r {
                Report::Start(t) => starts.push(t),
                Report::Done(c) => done.push(c),
            }
        }
        let n_done = done.len();
        let mut cmds = Vec::new();
        if !starts.is_empty() {
            cmds.push(Kind::StartTasks(pb::StartTasks { node_id: node.node_id(), tasks: starts }));
        }
        if !done.is_empty() {
            cmds.push(Kind::CompleteTasks(pb::CompleteTasks { node_id: node.node_id(), completions: done }));
        }
        for kind in cmds {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match node.propose(kind.clone()).await {
                    Ok(result) => {
                        // Reports for attempts that are no longer current (this
                        // node was presumed lost and the task moved on) are
                        // refused by apply(): count them, they change nothing.
                        if let Some(pb::command_result::Outcome::Batch(b)) = result.outcome {
                            let mut refused = b.items.iter().filter_map(|i| i.rejected.as_ref());
                            if let Some(first) = refused.next() {
                                let stale = 1 + refused.count();
                                metrics::counter!("synod_tasks_stale_reports_total").increment(stale as u64);
                                tracing::info!(stale, first = %first.message, "reports for superseded attempts were refused");
                            }
                        }
                        break;
                    }
                    Err(e) if Instant::now() < deadline => {
                        tracing::warn!(error = %e, "reporting task progress; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "gave up reporting task progress; leases will expire and the tasks rerun");
                        break;
                    }
                }
            }
        }
        metrics::counter!("synod_tasks_reported_total").increment(n_done as u64);
    }
}
