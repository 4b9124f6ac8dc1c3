//! Tasks in the service layer: submit, status, result (long poll), list,
//! cancel. REST, gRPC and the CLI reach tasks only through these.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use synod_store::pb::{self, TaskState, command::Kind, command_result::Outcome};
use synod_store::tasks::{is_terminal, state_name};

use crate::auth::AuthContext;
use crate::error::{ApiError, Result};
use crate::service::{Node, command, now_ms};

/// Most tasks in one batch submit.
pub const MAX_BATCH: usize = 1000;

/// A task as a client submits it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default = "default_priority")]
    pub priority: u32,
    pub idempotency_key: Option<String>,
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub backoff: Option<BackoffRequest>,
}

/// The priority of a task that names none (REST and gRPC alike).
pub const DEFAULT_PRIORITY: u32 = 5;

/// The backoff multiplier of a retry policy that names none.
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffRequest {
    pub initial_ms: u64,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    #[serde(default)]
    pub max_ms: u64,
}

/// The longest retry delay a task may ask for: one day.
pub const MAX_BACKOFF_MS: u64 = 86_400_000;

fn default_multiplier() -> f64 {
    DEFAULT_BACKOFF_MULTIPLIER
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitResponse {
    pub id: String,
    /// `queued`, or `assigned` when the task took a free worker slot as it
    /// was submitted; for a duplicate, the first task's state now.
    pub state: String,
    /// True when an earlier submit with the same idempotency key made this task.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub node_id: u64,
    pub epoch: u64,
    pub assigned_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub error: Option<String>,
    /// Taken back by the cluster (node lost, lease run out, drain
    /// deadline): not counted against `max_attempts`.
    #[serde(default)]
    pub lost: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    pub id: String,
    pub tenant: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub state: String,
    pub priority: u32,
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub labels: BTreeMap<String, String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub node_id: Option<u64>,
    pub lease_epoch: u64,
    pub attempts: Vec<AttemptView>,
    pub cancel_requested: bool,
    pub error: Option<String>,
    /// In a task's status always; in lists only when asked (`payloads=true`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub payload: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultView {
    pub id: String,
    pub state: String,
    pub finished: bool,
    pub result: Option<Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

pub fn view(store: &synod_store::Store, rec: &pb::TaskRecord) -> Result<TaskView> {
    let payload = store.task_payload(rec)?;
    Ok(TaskView { payload: json_of(&payload), ..view_without_payload(rec) })
}

/// [`view`] without reading the payload (which may be in a blob).
fn view_without_payload(rec: &pb::TaskRecord) -> TaskView {
    let spec = rec.spec.clone().unwrap_or_default();
    let state = TaskState::try_from(rec.state).unwrap_or(TaskState::Unspecified);
    TaskView {
        id: spec.id,
        tenant: spec.tenant,
        task_type: spec.task_type,
        state: state_name(state).to_string(),
        priority: spec.priority,
        idempotency_key: Some(spec.idempotency_key).filter(|k| !k.is_empty()),
        max_attempts: spec.max_attempts,
        timeout_ms: spec.timeout_ms,
        labels: spec.labels,
        created_at_ms: rec.created_at_ms,
        updated_at_ms: rec.updated_at_ms,
        node_id: Some(rec.node_id).filter(|n| *n != 0),
        lease_epoch: rec.lease_epoch,
        attempts: rec
            .attempts
            .iter()
            .map(|a| AttemptView {
                node_id: a.node_id,
                epoch: a.epoch,
                assigned_at_ms: a.assigned_at_ms,
                started_at_ms: Some(a.started_at_ms).filter(|t| *t != 0),
                ended_at_ms: Some(a.ended_at_ms).filter(|t| *t != 0),
                error: Some(a.error.clone()).filter(|e| !e.is_empty()),
                lost: a.lost,
            })
            .collect(),
        cancel_requested: rec.cancel_requested,
        error: Some(rec.error.clone()).filter(|e| !e.is_empty()),
        payload: Value::Null,
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh task id: time-ordered, unique per node (`<ms hex>-<node>-<seq>-<rand>`).
fn new_task_id(node: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.load(Ordering::Relaxed));
    let rand = h.finish() as u32;
    format!("{:012x}-{node:x}-{:x}-{rand:08x}", now_ms(), SEQ.fetch_add(1, Ordering::Relaxed))
}

fn validate(ctx: &AuthContext, node: &Node, req: &SubmitRequest) -> Result<pb::TaskSpec> {
    let limits = &node.cfg.storage;
    if req.priority > 9 {
        return Err(ApiError::InvalidArgument(format!("priority {} is out of range 0..=9", req.priority)));
    }
    let max_attempts = req.max_attempts.unwrap_or(3);
    if !(1..=100).contains(&max_attempts) {
        return Err(ApiError::InvalidArgument(format!("max_attempts {max_attempts} is out of range 1..=100")));
    }
    let timeout_ms = req.timeout_ms.unwrap_or(300_000);
    if !(1..=86_400_000).contains(&timeout_ms) {
        return Err(ApiError::InvalidArgument(format!("timeout_ms {timeout_ms} is out of range 1..=86400000")));
    }
    if let Some(k) = &req.idempotency_key
        && (k.is_empty() || k.len() > 256)
    {
        return Err(ApiError::InvalidArgument("idempotency_key must be 1 to 256 bytes".into()));
    }
    if let Some(b) = &req.backoff
        && (!b.multiplier.is_finite() || b.multiplier < 1.0 || b.multiplier > 100.0)
    {
        return Err(ApiError::InvalidArgument(format!("backoff.multiplier {} must be within 1..=100", b.multiplier)));
    }
    if let Some(b) = &req.backoff
        && (b.initial_ms > MAX_BACKOFF_MS || b.max_ms > MAX_BACKOFF_MS)
    {
        return Err(ApiError::InvalidArgument(format!(
            "backoff.initial_ms and backoff.max_ms are at most {MAX_BACKOFF_MS} (one day)"
        )));
    }
    let payload = serde_json::to_vec(&req.payload).expect("a JSON value serializes");
    if payload.len() as u64 > limits.max_payload_size.as_u64() {
        return Err(ApiError::PayloadTooLarge(format!(
            "payload of {} bytes exceeds storage.max_payload_size ({})",
            payload.len(),
            limits.max_payload_size
        )));
    }
    node.plugins.validate(&req.task_type, &req.payload).map_err(|e| match e {
        synod_plugins::PluginError::UnknownType(t) => ApiError::InvalidArgument(format!(
            "unknown task type {t:?}; known: {}",
            node.plugins.names().into_iter().collect::<Vec<_>>().join(", ")
        )),
        other => ApiError::InvalidArgument(format!("task type {:?}: {other}", req.task_type)),
    })?;
    // A loaded plugin this node has applied the unload of, but not yet
    // dropped from its registry (the sync loop runs twice a second).
    if node.plugins.get(&req.task_type).is_some_and(|p| p.info().kind == "wasm")
        && node.raft.store.get_plugin(&req.task_type)?.is_none()
    {
        return Err(ApiError::InvalidArgument(format!(
            "unknown task type {:?}: the plugin was unloaded",
            req.task_type
        )));
    }
    let requires = node.plugins.requirements(&req.task_type, &req.payload);
    node.check_offered(&requires)?;
    for (k, v) in &req.labels {
        if k.is_empty() || k.len() > 253 || v.len() > 1024 {
            return Err(ApiError::InvalidArgument(format!("label {k:?}: keys 1..=253 bytes, values up to 1024")));
        }
    }
    let backoff = req.backoff.clone().unwrap_or(BackoffRequest {
        initial_ms: 500,
        multiplier: DEFAULT_BACKOFF_MULTIPLIER,
        max_ms: 60_000,
    });
    Ok(pb::TaskSpec {
        id: new_task_id(node.id()),
        tenant: ctx.tenant.clone(),
        task_type: req.task_type.clone(),
        payload,
        priority: req.priority,
        idempotency_key: req.idempotency_key.clone().unwrap_or_default(),
        max_attempts,
        backoff: Some(pb::Backoff {
            initial_ms: backoff.initial_ms,
            multiplier: backoff.multiplier,
            // 0 ("no cap") is capped at a day like everything else.
            max_ms: if backoff.max_ms == 0 { MAX_BACKOFF_MS } else { backoff.max_ms },
        }),
        timeout_ms,
        labels: req.labels.clone(),
        requires,
        plugin_version: node.plugins.get(&req.task_type).and_then(|p| p.info().sha256).unwrap_or_default(),
    })
}

/// Validates every task first (one bad task refuses the whole batch and
/// stores nothing), then submits them in one replicated command.
pub async fn do_submit_tasks(ctx: &AuthContext, node: &Node, reqs: Vec<SubmitRequest>) -> Result<Vec<SubmitResponse>> {
    if reqs.is_empty() {
        return Err(ApiError::InvalidArgument("no tasks to submit".into()));
    }
    if reqs.len() > MAX_BATCH {
        return Err(ApiError::InvalidArgument(format!("{} tasks in one batch; at most {MAX_BATCH}", reqs.len())));
    }
    let specs = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| validate(ctx, node, r).map_err(|e| if reqs.len() > 1 { prefix(e, i) } else { e }))
        .collect::<Result<Vec<_>>>()?;
    let n = specs.len();
    let submit = pb::SubmitTasks {
        tasks: specs,
        max_queued: node.cfg.security.tenant_max_queued_tasks,
        max_storage_bytes: node.cfg.security.tenant_max_storage_bytes.as_u64(),
        // The leader adds these as it proposes (see synod_scheduler::placer).
        placements: Vec::new(),
    };
    let out = node.raft.write(&command(Kind::SubmitTasks(submit))).await?;
    let Some(Outcome::Batch(b)) = out.result.outcome else {
        return Err(ApiError::Internal(format!("unexpected submit outcome {:?}", out.result.outcome)));
    };
    metrics::counter!("synod_tasks_submitted_total").increment(n as u64);
    b.items
        .into_iter()
        .map(|item| match item.rejected {
            Some(r) if r.code == pb::RejectCode::QuotaExceeded as i32 => {
                Err(ApiError::RateLimited { message: r.message, retry_after_s: 1 })
            }
            Some(r) => Err(ApiError::InvalidArgument(r.message)),
            // A duplicate answers the first task as it stands now (it may
            // have finished long ago); this node has applied the write, so
            // the task is in its store.
            None if item.duplicate => {
                let state = match node.raft.store.get_task(&ctx.tenant, &item.id)? {
                    Some(rec) => state_name(TaskState::try_from(rec.state).unwrap_or(TaskState::Unspecified)),
                    None => "queued",
                };
                Ok(SubmitResponse { id: item.id, state: state.into(), duplicate: true })
            }
            // Placed: leased to a node in the submit's own entry.
            None => {
                let state = if item.placed { "assigned" } else { "queued" };
                Ok(SubmitResponse { id: item.id, state: state.into(), duplicate: false })
            }
        })
        .collect()
}

fn prefix(e: ApiError, i: usize) -> ApiError {
    match e {
        ApiError::InvalidArgument(m) => ApiError::InvalidArgument(format!("tasks[{i}]: {m}")),
        ApiError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(format!("tasks[{i}]: {m}")),
        other => other,
    }
}

/// The caller's task `id`; another tenant's task is as absent as one that
/// never existed. A task this node has not applied yet (submitted a moment
/// ago, through it or another node) is waited for through the read index,
/// so a client reads its own acknowledged submit anywhere.
async fn load(ctx: &AuthContext, node: &Node, id: &str) -> Result<pb::TaskRecord> {
    if let Some(rec) = node.raft.store.get_task(&ctx.tenant, id)? {
        return Ok(rec);
    }
    node.raft.read_barrier().await?;
    node.raft.store.get_task(&ctx.tenant, id)?.ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))
}

pub async fn do_task_status(ctx: &AuthContext, node: &Node, id: &str) -> Result<TaskView> {
    view(&node.raft.store, &load(ctx, node, id).await?)
}

fn result_view(store: &synod_store::Store, rec: &pb::TaskRecord) -> Result<ResultView> {
    let state = TaskState::try_from(rec.state).unwrap_or(TaskState::Unspecified);
    let result = match state {
        TaskState::Succeeded => Some(json_of(&store.task_result(rec)?)),
        _ => None,
    };
    Ok(ResultView {
        id: rec.spec.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
        state: state_name(state).to_string(),
        finished: is_terminal(state),
        result,
        error: Some(rec.error.clone()).filter(|e| !e.is_empty() && is_terminal(state)),
    })
}

/// The result when the task is finished; with `wait`, long-polls up to that
/// long for it to finish (at most 60 s).
pub async fn do_task_result(ctx: &AuthContext, node: &Node, id: &str, wait: Duration) -> Result<ResultView> {
    let deadline = Instant::now() + wait.min(Duration::from_secs(60));
    let mut changes = node.raft.changes();
    loop {
        let v = result_view(&node.raft.store, &load(ctx, node, id).await?)?;
        if v.finished || Instant::now() >= deadline {
            return Ok(v);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        changes.next(remaining.min(Duration::from_millis(200))).await;
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<String>,
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// Include each task's payload (off: lists stay small).
    #[serde(default)]
    pub payloads: bool,
}

pub fn do_list_tasks(ctx: &AuthContext, node: &Node, q: ListQuery) -> Result<TaskList> {
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            (1..=7)
                .filter_map(|i| TaskState::try_from(i).ok())
                .find(|t| state_name(*t) == s)
                .ok_or_else(|| ApiError::InvalidArgument(format!("unknown state {s:?}")))?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidArgument(format!("limit {limit} is out of range 1..=1000")));
    }
    let ty = q.task_type.clone().filter(|t| !t.is_empty());
    let of_type = |r: &pb::TaskRecord| ty.as_ref().is_none_or(|t| r.spec.as_ref().is_some_and(|s| &s.task_type == t));
    let store = &node.raft.store;
    // A state filter reads the task state index: no other state's task is
    // scanned, however many there are.
    let (recs, next) = match state {
        Some(s) => store.list_tasks_in_state(&ctx.tenant, s, q.cursor.as_deref(), limit, 100_000, of_type)?,
        None => store.list_tasks(&ctx.tenant, q.cursor.as_deref(), limit, 100_000, of_type)?,
    };
    // A page ends early, with a cursor to the rest, before its answer
    // outgrows node.max_response_size.
    let cap = node.cfg.node.max_response_size.as_u64() as usize;
    let (mut tasks, mut bytes, mut next) = (Vec::with_capacity(recs.len()), 0usize, next);
    for r in &recs {
        let v = if q.payloads { view(&node.raft.store, r)? } else { view_without_payload(r) };
        let size = serde_json::to_vec(&v).map_or(0, |b| b.len()) + 1;
        if bytes + size > cap && !tasks.is_empty() {
            next = tasks.last().map(|t: &TaskView| t.id.clone());
            break;
        }
        bytes += size;
        tasks.push(v);
    }
    Ok(TaskList { tasks, next_cursor: next })
}

pub async fn do_cancel_task(ctx: &AuthContext, node: &Node, id: &str) -> Result<TaskView> {
    let out = node
        .raft
        .write(&command(Kind::CancelTask(pb::CancelTask { tenant: ctx.tenant.clone(), id: id.to_string() })))
        .await?;
    match out.result.outcome {
        Some(Outcome::Task(rec)) => {
            crate::service::authn::audit("task_cancelled", &ctx.subject, &format!("{} in {}", id, ctx.tenant));
            view(&node.raft.store, &rec)
        }
        Some(Outcome::Rejected(r)) if r.code == pb::RejectCode::NotFound as i32 => Err(ApiError::NotFound(r.message)),
        Some(Outcome::Rejected(r)) => Err(ApiError::FailedPrecondition { message: r.message, details: None }),
        other => Err(ApiError::Internal(format!("unexpected cancel outcome {other:?}"))),
    }
}

/// Open watch streams per tenant on this node (`node.max_watch_streams_per_tenant`).
#[derive(Debug, Default)]
pub struct WatchSlots(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>);

/// One open watch stream; its slot is given back when it is dropped.
#[derive(Debug)]
pub struct WatchSlot {
    slots: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    tenant: String,
}

impl WatchSlots {
    /// A slot for one more stream of `tenant`, unless it holds `max` already.
    pub fn take(&self, tenant: &str, max: usize) -> Result<WatchSlot> {
        let mut open = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(tenant.to_string()).or_default();
        if *n >= max {
            return Err(ApiError::RateLimited {
                message: format!(
                    "tenant {tenant} holds {max} watch streams on this node (node.max_watch_streams_per_tenant)"
                ),
                retry_after_s: 5,
            });
        }
        *n += 1;
        Ok(WatchSlot { slots: self.0.clone(), tenant: tenant.to_string() })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_watch_slots_and_gets_them_back() {
        let slots = WatchSlots::default();
        let a1 = slots.take("a", 2).unwrap();
        let _a2 = slots.take("a", 2).unwrap();
        assert!(matches!(slots.take("a", 2), Err(ApiError::RateLimited { .. })));
        let _b = slots.take("b", 2).expect("another tenant is not limited by a's streams");
        drop(a1);
        assert!(slots.take("a", 2).is_ok(), "a closed stream gives its slot back");
    }
}
