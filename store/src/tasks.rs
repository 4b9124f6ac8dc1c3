//! Tasks: submit, assign, start, renew, complete, cancel, requeue.
//!
//! ```text
//!            submit                assign (epoch+1)        start
//!  (none) ──────────► queued ─────────────────► assigned ────────► running
//!                       ▲  ▲                       │                 │
//!                       │  └── requeue (epoch) ────┴─────────────────┤ lease lost / node lost
//!                       └───── complete: retryable error, attempts left (backoff)
//!  complete(epoch): result ─► succeeded │ error, not retryable ─► failed
//!                  retryable, no attempts left ─► dead_lettered │ cancel requested ─► cancelled
//!  cancel: queued ─► cancelled; assigned/running ─► cancel requested (the worker stops it)
//! ```
//!
//! Fencing: every assignment bumps the task's lease epoch; start, renew,
//! complete and requeue carry the epoch and are rejected when it is not the
//! current one, so completion is exactly-once however often a task ran.

use prost::Message;
use rocksdb::{Direction, IteratorMode};

use crate::Store;
use crate::db::bounded;
use crate::error::{Error, Result};
use crate::pb::{self, CommandResult, ItemResult, RejectCode, TaskRecord, TaskState, command_result::Outcome};
use crate::schema::*;
use crate::state_machine::BatchCtx;

fn item_rejected(id: &str, code: RejectCode, message: impl Into<String>) -> ItemResult {
    ItemResult {
        id: id.to_string(),
        ok: false,
        duplicate: false,
        rejected: Some(pb::Rejection { code: code as i32, message: message.into(), current_version: None }),
        placed: false,
    }
}

fn item_ok(id: &str) -> ItemResult {
    ItemResult { id: id.to_string(), ok: true, duplicate: false, rejected: None, placed: false }
}

fn batch(items: Vec<ItemResult>) -> CommandResult {
    CommandResult { outcome: Some(Outcome::Batch(pb::BatchResult { items })) }
}

/// Names used in keys: non-empty, at most 128 bytes, no `/` or NUL.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.bytes().any(|b| b == b'/' || b == 0)
}

fn state(rec: &TaskRecord) -> TaskState {
    TaskState::try_from(rec.state).unwrap_or(TaskState::Unspecified)
}

pub fn is_terminal(s: TaskState) -> bool {
    matches!(s, TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::DeadLettered)
}

/// The delay before retry number `attempt` (1-based count of attempts made):
/// `initial_ms · multiplier^(attempt-1)`, at most `max_ms`.
///
/// Runs in `apply()`, so in integers: the multiplier is taken in
/// thousandths (one correctly rounded multiplication, the same on every
/// platform) and applied step by step, rounding down each time. `f64::powi`
/// is not specified to give the same bits everywhere.
pub fn backoff_ms(b: Option<&pb::Backoff>, attempt: usize) -> u64 {
    let Some(b) = b else { return 0 };
    let milli = if b.multiplier.is_finite() && b.multiplier >= 1.0 {
        (b.multiplier * 1000.0).round().min(1e15) as u64
    } else {
        1000
    };
    let max = if b.max_ms == 0 { u64::MAX } else { b.max_ms };
    let mut delay = b.initial_ms.min(max);
    for _ in 1..attempt.min(64) {
        if delay >= max || milli == 1000 {
            break;
        }
        delay = (u128::from(delay) * u128::from(milli) / 1000).min(u128::from(max)) as u64;
    }
    delay
}

/// A replicated counter's value.
pub(crate) fn counter(ctx: &BatchCtx<'_>, tenant: &str, name: &str) -> Result<u64> {
    match ctx.get(&stats_key(tenant, name))? {
        None => Ok(0),
        Some(b) => {
            Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::corrupt("task counter", "not 8 bytes"))?))
        }
    }
}

/// Adds `delta` to a replicated counter.
pub(crate) fn bump(ctx: &mut BatchCtx<'_>, tenant: &str, name: &str, delta: i64) -> Result<()> {
    let next = counter(ctx, tenant, name)?.saturating_add_signed(delta);
    ctx.put(stats_key(tenant, name), next.to_be_bytes().to_vec());
    Ok(())
}

/// Saves a record and moves the per-state counters from `old` to its state.
fn save_counted(ctx: &mut BatchCtx<'_>, rec: &TaskRecord, old: Option<TaskState>) -> Result<()> {
    save(ctx, rec);
    let new = state(rec);
    if old != Some(new) {
        let tenant = rec.spec.as_ref().map(|s| s.tenant.clone()).unwrap_or_default();
        let id = rec.spec.as_ref().map(|s| s.id.as_str()).unwrap_or_default();
        if let Some(o) = old {
            ctx.delete(task_state_key(&tenant, o as i32, id));
        }
        ctx.put(task_state_key(&tenant, new as i32, id), Vec::new());
        if is_terminal(new) && !old.is_some_and(is_terminal) {
            // Retention finds it here, oldest first.
            ctx.put(finished_key(rec.updated_at_ms, &tenant, id), Vec::new());
        }
        if let Some(o) = old {
            bump(ctx, &tenant, state_name(o), -1)?;
        }
        bump(ctx, &tenant, state_name(new), 1)?;
        match new {
            TaskState::Queued if old.is_some() => bump(ctx, &tenant, "retries", 1)?,
            TaskState::DeadLettered => bump(ctx, &tenant, "dead_letters", 1)?,
            TaskState::Assigned => bump(ctx, &tenant, "attempts", 1)?,
            _ => {}
        }
    }
    Ok(())
}

fn load(ctx: &BatchCtx<'_>, tenant: &str, id: &str) -> Result<Option<TaskRecord>> {
    ctx.get_msg::<TaskRecord>(&task_key(tenant, id), "task record")
}

fn save(ctx: &mut BatchCtx<'_>, rec: &TaskRecord) {
    let spec = rec.spec.as_ref().expect("stored tasks always carry their spec");
    ctx.put(task_key(&spec.tenant, &spec.id), rec.encode_to_vec());
}

fn enqueue(ctx: &mut BatchCtx<'_>, rec: &mut TaskRecord, now: u64, not_before: u64) {
    let spec = rec.spec.as_ref().expect("stored tasks always carry their spec");
    rec.state = TaskState::Queued as i32;
    rec.node_id = 0;
    rec.lease_deadline_ms = 0;
    rec.enqueued_at_ms = now;
    rec.not_before_ms = not_before;
    let entry = pb::QueuedEntry {
        task_type: spec.task_type.clone(),
        priority: spec.priority,
        labels: spec.labels.clone(),
        enqueued_at_ms: now,
        not_before_ms: not_before,
        requires: spec.requires.clone(),
    };
    ctx.put(queued_key(&spec.tenant, spec.priority, now, &spec.id), entry.encode_to_vec());
}

fn dequeue(ctx: &mut BatchCtx<'_>, rec: &TaskRecord) {
    let spec = rec.spec.as_ref().expect("stored tasks always carry their spec");
    ctx.delete(queued_key(&spec.tenant, spec.priority, rec.enqueued_at_ms, &spec.id));
}

fn put_lease(ctx: &mut BatchCtx<'_>, rec: &TaskRecord) {
    let spec = rec.spec.as_ref().expect("stored tasks always carry their spec");
    let entry = pb::LeaseEntry {
        epoch: rec.lease_epoch,
        deadline_ms: rec.lease_deadline_ms,
        task_type: spec.task_type.clone(),
        running: state(rec) == TaskState::Running,
        cancel_requested: rec.cancel_requested,
    };
    ctx.put(leased_key(rec.node_id, &spec.tenant, &spec.id), entry.encode_to_vec());
}

fn drop_lease(ctx: &mut BatchCtx<'_>, rec: &TaskRecord) {
    let spec = rec.spec.as_ref().expect("stored tasks always carry their spec");
    ctx.delete(leased_key(rec.node_id, &spec.tenant, &spec.id));
}

/// How an unsuccessful attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The attempt ran and failed; counts against `max_attempts`.
    Failed { retryable: bool },
    /// The cluster took the lease back (an unchecked requeue of an older
    /// proposer): counts against `max_attempts`, retried without backoff.
    Requeued,
    /// A checked requeue: the attempt is marked lost and does not count;
    /// the task is dead-lettered once lost `max_lost` times (0 = no limit).
    Lost { max_lost: u32 },
}

/// Closes the current attempt and decides where the task goes after an
/// unsuccessful one.
fn after_failure(ctx: &mut BatchCtx<'_>, rec: &mut TaskRecord, now: u64, error: &str, ending: Ending) {
    drop_lease(ctx, rec);
    if let Some(a) = rec.attempts.last_mut() {
        a.ended_at_ms = now;
        a.error = error.to_string();
        a.lost = matches!(ending, Ending::Lost { .. });
        if a.started_at_ms == 0 {
            a.started_at_ms = now;
        }
    }
    rec.error = error.to_string();
    let max_attempts = rec.spec.as_ref().map(|s| s.max_attempts.max(1)).unwrap_or(1) as usize;
    let made = rec.attempts.iter().filter(|a| !a.lost).count();
    let lost = rec.attempts.iter().filter(|a| a.lost).count();
    let retryable = !matches!(ending, Ending::Failed { retryable: false });
    if rec.cancel_requested {
        rec.state = TaskState::Cancelled as i32;
        rec.node_id = 0;
    } else if !retryable {
        rec.state = TaskState::Failed as i32;
        rec.node_id = 0;
    } else if let Ending::Lost { max_lost } = ending {
        if max_lost > 0 && lost >= max_lost as usize {
            rec.state = TaskState::DeadLettered as i32;
            rec.node_id = 0;
            rec.error = format!("{error}; lost {lost} times, the most allowed (scaling.max_lost_attempts)");
        } else {
            // The task did nothing wrong: back in the queue at once.
            enqueue(ctx, rec, now, now);
        }
    } else if made < max_attempts {
        let delay = match ending {
            Ending::Requeued => 0,
            _ => backoff_ms(rec.spec.as_ref().and_then(|s| s.backoff.as_ref()), made),
        };
        enqueue(ctx, rec, now, now.saturating_add(delay));
    } else {
        rec.state = TaskState::DeadLettered as i32;
        rec.node_id = 0;
    }
}

fn check_lease(rec: &TaskRecord, r: &pb::TaskRef, node: Option<u64>) -> Option<ItemResult> {
    let s = state(rec);
    if is_terminal(s) {
        return Some(item_rejected(
            &r.id,
            RejectCode::AlreadyDone,
            format!("task {} is already {}", r.id, state_name(s)),
        ));
    }
    let leased = matches!(s, TaskState::Assigned | TaskState::Running);
    if !leased || rec.lease_epoch != r.epoch || node.is_some_and(|n| n != rec.node_id) {
        return Some(item_rejected(
            &r.id,
            RejectCode::StaleEpoch,
            format!(
                "task {} lease epoch {} is not current (epoch {}, state {})",
                r.id,
                r.epoch,
                rec.lease_epoch,
                state_name(s)
            ),
        ));
    }
    None
}

/// The task `r` names, if it exists and `r` holds its current lease (on
/// `node`, when given); otherwise the item's rejection.
fn load_leased(ctx: &BatchCtx<'_>, r: &pb::TaskRef, node: Option<u64>) -> Result<Result<TaskRecord, ItemResult>> {
    let Some(rec) = load(ctx, &r.tenant, &r.id)? else {
        return Ok(Err(item_rejected(&r.id, RejectCode::NotFound, "no such task")));
    };
    Ok(match check_lease(&rec, r, node) {
        Some(rejected) => Err(rejected),
        None => Ok(rec),
    })
}

pub fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Unspecified => "unspecified",
        TaskState::Queued => "queued",
        TaskState::Assigned => "assigned",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
        TaskState::DeadLettered => "dead_lettered",
    }
}

pub(crate) fn submit(ctx: &mut BatchCtx<'_>, c: pb::SubmitTasks, now: u64) -> Result<CommandResult> {
    if c.max_storage_bytes > 0 {
        let mut per_tenant = std::collections::BTreeMap::<&str, u64>::new();
        for spec in &c.tasks {
            *per_tenant.entry(spec.tenant.as_str()).or_default() += spec.payload.len() as u64;
        }
        for (tenant, n) in per_tenant {
            let stored = counter(ctx, tenant, STORAGE_BYTES_COUNTER)?;
            if stored.saturating_add(n) > c.max_storage_bytes {
                let message = format!(
                    "tenant {tenant} stores {stored} bytes; {n} more would pass its quota of {} \
                     (security.tenant_max_storage_bytes)",
                    c.max_storage_bytes
                );
                return Ok(batch(
                    c.tasks.iter().map(|s| item_rejected(&s.id, RejectCode::QuotaExceeded, &*message)).collect(),
                ));
            }
        }
    }
    if c.max_queued > 0 {
        let mut per_tenant = std::collections::BTreeMap::<&str, u64>::new();
        for spec in &c.tasks {
            *per_tenant.entry(spec.tenant.as_str()).or_default() += 1;
        }
        for (tenant, n) in per_tenant {
            let queued = counter(ctx, tenant, "queued")?;
            if queued + n > c.max_queued {
                let message = format!(
                    "tenant {tenant} has {queued} tasks queued; {n} more would pass its quota of {}",
                    c.max_queued
                );
                return Ok(batch(
                    c.tasks.iter().map(|s| item_rejected(&s.id, RejectCode::QuotaExceeded, &*message)).collect(),
                ));
            }
        }
    }
    let mut placements: std::collections::HashMap<(String, String), pb::Assignment> =
        c.placements.into_iter().map(|a| ((a.tenant.clone(), a.id.clone()), a)).collect();
    let mut items = Vec::with_capacity(c.tasks.len());
    for spec in c.tasks {
        if !valid_name(&spec.tenant) || !valid_name(&spec.id) || spec.task_type.is_empty() || spec.priority > 9 {
            items.push(item_rejected(
                &spec.id,
                RejectCode::Invalid,
                "task needs a tenant, an id, a type and priority 0..=9",
            ));
            continue;
        }
        if !spec.idempotency_key.is_empty() {
            let k = idem_key(&spec.tenant, &spec.idempotency_key);
            if let Some(existing) = ctx.get(&k)? {
                let id = String::from_utf8(existing).map_err(|e| Error::corrupt("idempotency index", e))?;
                items.push(ItemResult { id, ok: true, duplicate: true, rejected: None, placed: false });
                continue;
            }
            ctx.put(k, spec.id.clone().into_bytes());
        }
        if ctx.get(&task_key(&spec.tenant, &spec.id))?.is_some() {
            // The same id proposed twice (a retried forward): one task.
            items.push(ItemResult { id: spec.id.clone(), ok: true, duplicate: true, rejected: None, placed: false });
            continue;
        }
        let id = spec.id.clone();
        let placed = placements.remove(&(spec.tenant.clone(), spec.id.clone())).filter(|a| a.node_id != 0);
        let mut spec = spec;
        let payload_bytes = spec.payload.len() as u64;
        bump(ctx, &spec.tenant, STORAGE_BYTES_COUNTER, payload_bytes as i64)?;
        let payload_in_blob = spec.payload.len() > INLINE_LIMIT;
        if payload_in_blob {
            ctx.put_blob(blob_key(&spec.tenant, &spec.id, "payload"), &spec.payload);
            spec.payload = Vec::new();
        }
        let mut rec = TaskRecord {
            spec: Some(spec),
            created_at_ms: now,
            updated_at_ms: now,
            payload_in_blob,
            payload_bytes,
            ..Default::default()
        };
        let is_placed = placed.is_some();
        match placed {
            // Leased at once: the queue index is never written.
            Some(a) => {
                rec.enqueued_at_ms = now;
                lease_to(&mut rec, &a, now);
                put_lease(ctx, &rec);
            }
            None => enqueue(ctx, &mut rec, now, now),
        }
        save_counted(ctx, &rec, None)?;
        items.push(ItemResult { placed: is_placed, ..item_ok(&id) });
    }
    Ok(batch(items))
}

/// Leases `rec` to the assignment's node under a new epoch (the record
/// only; the caller writes the lease index and saves).
fn lease_to(rec: &mut TaskRecord, a: &pb::Assignment, now: u64) {
    rec.state = TaskState::Assigned as i32;
    rec.lease_epoch += 1;
    rec.node_id = a.node_id;
    rec.lease_deadline_ms = if a.lease_ms > 0 { now.saturating_add(a.lease_ms) } else { a.lease_deadline_ms };
    rec.updated_at_ms = now;
    rec.attempts.push(pb::Attempt {
        node_id: a.node_id,
        epoch: rec.lease_epoch,
        assigned_at_ms: now,
        ..Default::default()
    });
}

pub(crate) fn assign(ctx: &mut BatchCtx<'_>, c: pb::AssignTasks, now: u64) -> Result<CommandResult> {
    let mut items = Vec::with_capacity(c.assignments.len());
    for a in c.assignments {
        let Some(mut rec) = load(ctx, &a.tenant, &a.id)? else {
            items.push(item_rejected(&a.id, RejectCode::NotFound, "no such task"));
            continue;
        };
        if state(&rec) != TaskState::Queued || rec.cancel_requested || a.node_id == 0 {
            items.push(item_rejected(
                &a.id,
                RejectCode::StaleEpoch,
                format!("task {} is {}, not queued", a.id, state_name(state(&rec))),
            ));
            continue;
        }
        dequeue(ctx, &rec);
        let old = state(&rec);
        lease_to(&mut rec, &a, now);
        put_lease(ctx, &rec);
        save_counted(ctx, &rec, Some(old))?;
        items.push(item_ok(&a.id));
    }
    Ok(batch(items))
}

pub(crate) fn start(ctx: &mut BatchCtx<'_>, c: pb::StartTasks, now: u64) -> Result<CommandResult> {
    let mut items = Vec::with_capacity(c.tasks.len());
    for r in c.tasks {
        let mut rec = match load_leased(ctx, &r, Some(c.node_id))? {
            Ok(rec) => rec,
            Err(rejected) => {
                items.push(rejected);
                continue;
            }
        };
        if state(&rec) == TaskState::Assigned {
            rec.state = TaskState::Running as i32;
            if let Some(a) = rec.attempts.last_mut() {
                a.started_at_ms = now;
            }
            rec.updated_at_ms = now;
            put_lease(ctx, &rec);
            save_counted(ctx, &rec, Some(TaskState::Assigned))?;
        }
        items.push(item_ok(&r.id));
    }
    Ok(batch(items))
}

pub(crate) fn renew(ctx: &mut BatchCtx<'_>, c: pb::RenewLeases, now: u64) -> Result<CommandResult> {
    let mut items = Vec::with_capacity(c.renewals.len());
    for rn in c.renewals {
        let r = rn.task.unwrap_or_default();
        let mut rec = match load_leased(ctx, &r, Some(c.node_id))? {
            Ok(rec) => rec,
            Err(rejected) => {
                items.push(rejected);
                continue;
            }
        };
        let deadline = if rn.lease_ms > 0 { now.saturating_add(rn.lease_ms) } else { rn.lease_deadline_ms };
        rec.lease_deadline_ms = rec.lease_deadline_ms.max(deadline);
        put_lease(ctx, &rec);
        save(ctx, &rec);
        items.push(item_ok(&r.id));
    }
    Ok(batch(items))
}

pub(crate) fn complete(ctx: &mut BatchCtx<'_>, c: pb::CompleteTasks, now: u64) -> Result<CommandResult> {
    let mut items = Vec::with_capacity(c.completions.len());
    for done in c.completions {
        let r = done.task.unwrap_or_default();
        let mut rec = match load_leased(ctx, &r, Some(c.node_id))? {
            Ok(rec) => rec,
            Err(rejected) => {
                items.push(rejected);
                continue;
            }
        };
        rec.updated_at_ms = now;
        let old = state(&rec);
        match done.result {
            Some(result) => {
                drop_lease(ctx, &rec);
                if let Some(a) = rec.attempts.last_mut() {
                    a.ended_at_ms = now;
                    if a.started_at_ms == 0 {
                        // A quick task is not reported as started separately.
                        a.started_at_ms = now;
                    }
                }
                rec.state = TaskState::Succeeded as i32;
                rec.error.clear();
                rec.result_bytes = result.len() as u64;
                bump(ctx, &r.tenant, STORAGE_BYTES_COUNTER, result.len() as i64)?;
                if result.len() > INLINE_LIMIT {
                    ctx.put_blob(blob_key(&r.tenant, &r.id, "result"), &result);
                    rec.result = Vec::new();
                    rec.result_in_blob = true;
                } else {
                    rec.result = result;
                }
            }
            None => after_failure(ctx, &mut rec, now, &done.error, Ending::Failed { retryable: done.retryable }),
        }
        save_counted(ctx, &rec, Some(old))?;
        items.push(item_ok(&r.id));
    }
    Ok(batch(items))
}

/// Fails every queued task whose queue entry matches `orphaned`: tasks that
/// no node can ever run (their plugin, or the plugin version they were
/// submitted under, is gone). Not retried: another attempt cannot succeed.
/// Returns how many.
pub(crate) fn fail_queued(
    ctx: &mut BatchCtx<'_>,
    now: u64,
    error: &str,
    orphaned: impl Fn(&pb::QueuedEntry) -> bool,
) -> Result<u64> {
    let mut failed = 0;
    for (key, value) in ctx.scan_prefix(PREFIX_QUEUED)? {
        let entry = pb::QueuedEntry::decode(value.as_slice()).map_err(|e| Error::corrupt("queue entry", e))?;
        if !orphaned(&entry) {
            continue;
        }
        let Some((tenant, id)) = parse_queued_key(&key) else { continue };
        let Some(mut rec) = load(ctx, &tenant, &id)? else { continue };
        if state(&rec) != TaskState::Queued {
            continue;
        }
        dequeue(ctx, &rec);
        rec.state = TaskState::Failed as i32;
        rec.error = error.to_owned();
        rec.updated_at_ms = now;
        save_counted(ctx, &rec, Some(TaskState::Queued))?;
        failed += 1;
    }
    Ok(failed)
}

pub(crate) fn cancel(ctx: &mut BatchCtx<'_>, c: pb::CancelTask, now: u64) -> Result<CommandResult> {
    let Some(mut rec) = load(ctx, &c.tenant, &c.id)? else {
        return Ok(crate::state_machine::rejected(RejectCode::NotFound, format!("task {} not found", c.id)));
    };
    let s = state(&rec);
    if is_terminal(s) {
        return Ok(crate::state_machine::rejected(
            RejectCode::AlreadyDone,
            format!("task {} is already {}", c.id, state_name(s)),
        ));
    }
    rec.updated_at_ms = now;
    if s == TaskState::Queued {
        dequeue(ctx, &rec);
        rec.state = TaskState::Cancelled as i32;
        rec.error = "cancelled".into();
    } else if s == TaskState::Assigned {
        // Not reported as started: it ends here. The lease goes, so its
        // node never starts it, or stops a run it began a moment ago; a
        // start or completion it still reports is refused as already done.
        drop_lease(ctx, &rec);
        if let Some(a) = rec.attempts.last_mut() {
            a.ended_at_ms = now;
            a.error = "cancelled before it started".into();
        }
        rec.state = TaskState::Cancelled as i32;
        rec.node_id = 0;
        rec.cancel_requested = true;
        rec.error = "cancelled".into();
    } else {
        rec.cancel_requested = true;
        put_lease(ctx, &rec);
    }
    save_counted(ctx, &rec, Some(s))?;
    Ok(CommandResult { outcome: Some(Outcome::Task(rec)) })
}

pub(crate) fn requeue(ctx: &mut BatchCtx<'_>, c: pb::RequeueTasks, now: u64) -> Result<CommandResult> {
    let reason = match pb::RequeueReason::try_from(c.reason).unwrap_or(pb::RequeueReason::Unspecified) {
        pb::RequeueReason::LeaseExpired => "lease expired",
        pb::RequeueReason::NodeLost => "node lost",
        pb::RequeueReason::Drained => "node drained",
        pb::RequeueReason::Unspecified => "requeued",
    };
    let mut items = Vec::with_capacity(c.tasks.len());
    for r in &c.tasks {
        let mut rec = match load_leased(ctx, r, None)? {
            Ok(rec) => rec,
            Err(rejected) => {
                items.push(rejected);
                continue;
            }
        };
        if c.checked
            && let Some(live) = lease_still_live(ctx, &rec, &c, now)?
        {
            items.push(item_rejected(&r.id, RejectCode::LeaseLive, live));
            continue;
        }
        rec.updated_at_ms = now;
        let old = state(&rec);
        let tenant = r.tenant.clone();
        bump(ctx, &tenant, "requeues", 1)?;
        // A lost attempt is retried without backoff: the task did nothing wrong.
        let node = rec.node_id;
        let ending = if c.checked { Ending::Lost { max_lost: c.max_lost } } else { Ending::Requeued };
        after_failure(ctx, &mut rec, now, &format!("{reason} (node {node})"), ending);
        save_counted(ctx, &rec, Some(old))?;
        items.push(item_ok(&r.id));
    }
    Ok(batch(items))
}

/// Deletes finished tasks that ended more than `c.retention_ms` before
/// `now`, oldest first, at most `c.max_tasks`: the record, its blobs, its
/// finished-index entry and its idempotency key (so the key may be used
/// again). Counters: the terminal state's count goes down, `purged` up, and
/// the tenant's stored bytes down.
pub(crate) fn purge_finished(ctx: &mut BatchCtx<'_>, c: pb::PurgeFinished, now: u64) -> Result<CommandResult> {
    let cutoff = now.saturating_sub(c.retention_ms);
    let max = (c.max_tasks as usize).clamp(1, 100_000);
    let (mut purged, mut bytes, mut more) = (0u64, 0u64, false);
    for (key, _) in ctx.scan_prefix_first(PREFIX_FINISHED, max + 1)? {
        let Some((ended_at, tenant, id)) = parse_finished_key(&key) else {
            return Err(Error::corrupt("finished index key", format!("{key:?}")));
        };
        if ended_at >= cutoff {
            break;
        }
        if purged as usize == max {
            more = true;
            break;
        }
        ctx.delete(key);
        purged += 1;
        let Some(rec) = load(ctx, &tenant, &id)? else { continue };
        let s = state(&rec);
        if !is_terminal(s) {
            continue; // never happens: tasks do not leave a terminal state
        }
        let spec = rec.spec.as_ref().expect("stored tasks always carry their spec");
        if !spec.idempotency_key.is_empty() {
            let k = idem_key(&tenant, &spec.idempotency_key);
            if ctx.get(&k)?.is_some_and(|v| v == id.as_bytes()) {
                ctx.delete(k);
            }
        }
        if rec.payload_in_blob {
            ctx.delete_blob(blob_key(&tenant, &id, "payload"));
        }
        if rec.result_in_blob {
            ctx.delete_blob(blob_key(&tenant, &id, "result"));
        }
        ctx.delete(task_key(&tenant, &id));
        ctx.delete(task_state_key(&tenant, s as i32, &id));
        let freed = rec.payload_bytes.saturating_add(rec.result_bytes);
        bytes = bytes.saturating_add(freed);
        bump(ctx, &tenant, STORAGE_BYTES_COUNTER, -(freed as i64))?;
        bump(ctx, &tenant, state_name(s), -1)?;
        bump(ctx, &tenant, "purged", 1)?;
    }
    Ok(CommandResult { outcome: Some(Outcome::Purge(pb::PurgeResult { purged, bytes, more })) })
}

/// Why a checked requeue must not end `rec`'s lease at `now`, if it must not:
/// the replicated state, not the leader's possibly stale view, decides.
fn lease_still_live(ctx: &BatchCtx<'_>, rec: &TaskRecord, c: &pb::RequeueTasks, now: u64) -> Result<Option<String>> {
    let id = rec.spec.as_ref().map(|s| s.id.as_str()).unwrap_or_default();
    let node = ctx.get_msg::<pb::NodeRecord>(&crate::schema::node_key(rec.node_id), "node record")?;
    Ok(match pb::RequeueReason::try_from(c.reason).unwrap_or(pb::RequeueReason::Unspecified) {
        pb::RequeueReason::LeaseExpired if rec.lease_deadline_ms >= now => Some(format!(
            "task {id}: its lease runs {} ms more (renewed after the leader decided)",
            rec.lease_deadline_ms - now
        )),
        pb::RequeueReason::NodeLost => match node {
            Some(n) if now.saturating_sub(n.last_heartbeat_ms) <= c.node_silence_ms => Some(format!(
                "task {id}: node {} heartbeated {} ms ago, within {} ms",
                rec.node_id,
                now.saturating_sub(n.last_heartbeat_ms),
                c.node_silence_ms
            )),
            _ => None,
        },
        pb::RequeueReason::Drained => match node {
            Some(n) if !n.draining || now.saturating_sub(n.draining_since_ms) <= c.drain_deadline_ms => {
                Some(format!("task {id}: node {} is not past its drain deadline", rec.node_id))
            }
            _ => None,
        },
        _ => None,
    })
}

/// [`Store::ready_tasks`] reads at most this many queue entries per task it
/// may return, per tenant.
pub const READY_SCAN_FACTOR: usize = 64;

/// One queued task as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct QueuedTask {
    pub tenant: String,
    pub id: String,
    pub entry: pb::QueuedEntry,
}

/// One leased task, from the lease index.
#[derive(Debug, Clone)]
pub struct LeasedTask {
    pub node_id: u64,
    pub tenant: String,
    pub id: String,
    pub entry: pb::LeaseEntry,
}

impl Store {
    pub fn get_task(&self, tenant: &str, id: &str) -> Result<Option<TaskRecord>> {
        match self.get(CF_SM_DATA, &task_key(tenant, id))? {
            None => Ok(None),
            Some(v) => TaskRecord::decode(v.as_slice()).map(Some).map_err(|e| Error::corrupt("task record", e)),
        }
    }

    /// A task's payload, wherever it is kept.
    pub fn task_payload(&self, rec: &TaskRecord) -> Result<Vec<u8>> {
        let spec = rec.spec.as_ref().ok_or_else(|| Error::corrupt("task record", "missing spec"))?;
        if !rec.payload_in_blob {
            return Ok(spec.payload.clone());
        }
        self.get(CF_BLOBS, &blob_key(&spec.tenant, &spec.id, "payload"))?
            .ok_or_else(|| Error::corrupt("task payload blob", format!("missing for {}", spec.id)))
    }

    /// A task's result, wherever it is kept (empty until it succeeded).
    pub fn task_result(&self, rec: &TaskRecord) -> Result<Vec<u8>> {
        let spec = rec.spec.as_ref().ok_or_else(|| Error::corrupt("task record", "missing spec"))?;
        if !rec.result_in_blob {
            return Ok(rec.result.clone());
        }
        self.get(CF_BLOBS, &blob_key(&spec.tenant, &spec.id, "result"))?
            .ok_or_else(|| Error::corrupt("task result blob", format!("missing for {}", spec.id)))
    }

    /// [`Store::list_tasks`] over the tasks in `state` only, through the
    /// task state index: the scan never reads another state's tasks.
    pub fn list_tasks_in_state(
        &self,
        tenant: &str,
        state: TaskState,
        after: Option<&str>,
        limit: usize,
        scan_limit: usize,
        keep: impl Fn(&TaskRecord) -> bool,
    ) -> Result<(Vec<TaskRecord>, Option<String>)> {
        let prefix = task_state_prefix(tenant, state as i32);
        let start = match after {
            Some(a) => {
                let mut k = task_state_key(tenant, state as i32, a);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let (mut out, mut scanned) = (Vec::new(), 0);
        let _read = self.read_gate();
        let data = self.cf(CF_SM_DATA);
        for item in self.db.iterator_cf_opt(data, bounded(&prefix), IteratorMode::From(&start, Direction::Forward)) {
            let (k, _) = item.map_err(Error::rocks("scan task states"))?;
            if !k.starts_with(&prefix) {
                return Ok((out, None));
            }
            let id = std::str::from_utf8(&k[prefix.len()..]).map_err(|e| Error::corrupt("task state key", e))?;
            scanned += 1;
            // The record may have moved on since the index was read: `keep`
            // sees it as it is now.
            if let Some(v) = self.db.get_cf(data, task_key(tenant, id)).map_err(Error::rocks("get task"))? {
                let rec = TaskRecord::decode(v.as_slice()).map_err(|e| Error::corrupt("task record", e))?;
                if rec.state == state as i32 && keep(&rec) {
                    out.push(rec);
                    if out.len() >= limit {
                        return Ok((out, Some(id.to_owned())));
                    }
                }
            }
            if scanned >= scan_limit {
                return Ok((out, Some(id.to_owned())));
            }
        }
        Ok((out, None))
    }

    /// Deletes the task state index and its marker, leaving the store as a
    /// version without the index wrote it. For upgrade tests.
    #[doc(hidden)]
    pub fn forget_task_state_index(&self) -> Result<()> {
        let data = self.cf(CF_SM_DATA);
        let mut b = rocksdb::WriteBatch::default();
        b.delete_range_cf(data, PREFIX_TASK_STATE, b"_sys/task-state0");
        b.delete_cf(data, KEY_TASK_STATE_INDEXED);
        self.write(b, true)
    }

    /// Builds the task state index from the task records unless it is
    /// known to be complete: at open, and after a snapshot install, for
    /// state written by a version without it. Every node builds the same
    /// keys from the same records.
    pub(crate) fn ensure_task_state_index(&self) -> Result<()> {
        let data = self.cf(CF_SM_DATA);
        if self.db.get_cf(data, KEY_TASK_STATE_INDEXED).map_err(Error::rocks("get"))?.is_some() {
            return Ok(());
        }
        let mut b = rocksdb::WriteBatch::default();
        let mut n = 0usize;
        for item in self.db.iterator_cf_opt(
            data,
            bounded(PREFIX_TASK_STATE),
            IteratorMode::From(PREFIX_TASK_STATE, Direction::Forward),
        ) {
            let (k, _) = item.map_err(Error::rocks("scan task states"))?;
            if !k.starts_with(PREFIX_TASK_STATE) {
                break;
            }
            b.delete_cf(data, k);
        }
        for item in self.db.iterator_cf_opt(data, bounded(b"t/"), IteratorMode::From(b"t/", Direction::Forward)) {
            let (k, v) = item.map_err(Error::rocks("scan tasks"))?;
            let Some(rest) = k.strip_prefix(b"t/") else { break };
            let Some(slash) = rest.iter().position(|c| *c == b'/') else { continue };
            let Some(id) = rest[slash + 1..].strip_prefix(b"task/") else { continue };
            let (Ok(tenant), Ok(id)) = (std::str::from_utf8(&rest[..slash]), std::str::from_utf8(id)) else { continue };
            let rec = TaskRecord::decode(&*v).map_err(|e| Error::corrupt("task record", e))?;
            b.put_cf(data, task_state_key(tenant, rec.state, id), b"");
            n += 1;
            if b.len() >= 50_000 {
                self.write(std::mem::take(&mut b), false)?;
            }
        }
        b.put_cf(data, KEY_TASK_STATE_INDEXED, b"1");
        self.write(b, true)?;
        if n > 0 {
            tracing::info!(tasks = n, "built the task state index of a data dir written without it");
        }
        Ok(())
    }

    /// A page of one tenant's tasks in id order, after `after` (exclusive),
    /// keeping those `keep` accepts; scans at most `scan_limit` records.
    pub fn list_tasks(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
        scan_limit: usize,
        keep: impl Fn(&TaskRecord) -> bool,
    ) -> Result<(Vec<TaskRecord>, Option<String>)> {
        let prefix = task_prefix(tenant);
        let start = match after {
            Some(a) => {
                let mut k = task_key(tenant, a);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let mut scanned = 0;
        let _read = self.read_gate();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_SM_DATA),
            bounded(&prefix),
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, v) = item.map_err(Error::rocks("scan tasks"))?;
            if !k.starts_with(&prefix) {
                return Ok((out, None));
            }
            let rec = TaskRecord::decode(&*v).map_err(|e| Error::corrupt("task record", e))?;
            let last_seen = rec.spec.as_ref().map(|s| s.id.clone());
            scanned += 1;
            if keep(&rec) {
                out.push(rec);
                if out.len() >= limit {
                    return Ok((out, last_seen));
                }
            }
            if scanned >= scan_limit {
                return Ok((out, last_seen));
            }
        }
        Ok((out, None))
    }

    /// Queued tasks: the first `per_tenant` of every tenant, in queue
    /// order (most urgent, then oldest). Read from the in-memory mirror of
    /// the queue index.
    pub fn queued_tasks(&self, per_tenant: usize) -> Result<Vec<QueuedTask>> {
        self.ready_tasks(per_tenant, u64::MAX)
    }

    /// As [`Store::queued_tasks`], counting only tasks eligible at `now`
    /// (`not_before_ms <= now`): tasks waiting out a retry backoff are
    /// skipped, so however many there are they never hide a tenant's ready
    /// ones. At most `per_tenant` × [`READY_SCAN_FACTOR`] entries are read
    /// per tenant.
    pub fn ready_tasks(&self, per_tenant: usize, now: u64) -> Result<Vec<QueuedTask>> {
        let scan_limit = per_tenant.saturating_mul(READY_SCAN_FACTOR);
        let mut out = Vec::new();
        let mut seek = PREFIX_QUEUED.to_vec();
        loop {
            let (mut taken, mut scanned) = (0, 0);
            let mut tenant_prefix: Option<Vec<u8>> = None;
            self.mirror.scan(PREFIX_QUEUED, &seek, |k, v| {
                let (tenant, id) = parse_queued_key(k).ok_or_else(|| Error::corrupt("queue key", format!("{k:?}")))?;
                let tp = queued_tenant_prefix(&tenant);
                if tenant_prefix.as_ref().is_some_and(|p| *p != tp) || taken >= per_tenant || scanned >= scan_limit {
                    return Ok(false);
                }
                tenant_prefix = Some(tp);
                scanned += 1;
                let entry = pb::QueuedEntry::decode(v).map_err(|e| Error::corrupt("queue entry", e))?;
                if entry.not_before_ms <= now {
                    out.push(QueuedTask { tenant, id, entry });
                    taken += 1;
                }
                Ok(true)
            })?;
            match tenant_prefix {
                // Next tenant: just past this tenant's NUL separator.
                Some(mut p) => {
                    *p.last_mut().expect("prefix ends with NUL") = 1;
                    seek = p;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// When the oldest finished task still stored ended (on the leader's
    /// timeline), if there is one: retention is due once that is older
    /// than the retention period.
    pub fn oldest_finished_ms(&self) -> Result<Option<u64>> {
        let mode = IteratorMode::From(PREFIX_FINISHED, Direction::Forward);
        let _read = self.read_gate();
        match self.db.iterator_cf_opt(self.cf(CF_SM_DATA), bounded(PREFIX_FINISHED), mode).next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item.map_err(Error::rocks("scan finished index"))?;
                let (at, _, _) =
                    parse_finished_key(&k).ok_or_else(|| Error::corrupt("finished index key", format!("{k:?}")))?;
                Ok(Some(at))
            }
        }
    }

    /// The sum of the named counters over every tenant (e.g. `["queued"]`).
    pub fn count_tasks(&self, names: &[&str]) -> Result<u64> {
        Ok(self.task_counters()?.iter().filter(|(_, n, _)| names.contains(&n.as_str())).map(|(_, _, v)| *v).sum())
    }

    /// The replicated task counters: (tenant, name, value).
    pub fn task_counters(&self) -> Result<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        let _read = self.read_gate();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_SM_DATA),
            bounded(PREFIX_STATS),
            IteratorMode::From(PREFIX_STATS, Direction::Forward),
        ) {
            let (k, v) = item.map_err(Error::rocks("scan counters"))?;
            let Some(rest) = k.strip_prefix(PREFIX_STATS) else { break };
            let nul =
                rest.iter().position(|b| *b == 0).ok_or_else(|| Error::corrupt("counter key", format!("{k:?}")))?;
            let value =
                u64::from_be_bytes(v.as_ref().try_into().map_err(|_| Error::corrupt("task counter", "not 8 bytes"))?);
            out.push((
                String::from_utf8_lossy(&rest[..nul]).into_owned(),
                String::from_utf8_lossy(&rest[nul + 1..]).into_owned(),
                value,
            ));
        }
        Ok(out)
    }

    /// Every leased task (all nodes), or one node's. Read from the
    /// in-memory mirror of the lease index.
    pub fn leased_tasks(&self, node: Option<u64>) -> Result<Vec<LeasedTask>> {
        let prefix = match node {
            Some(n) => leased_node_prefix(n),
            None => PREFIX_LEASED.to_vec(),
        };
        let mut out = Vec::new();
        self.mirror.scan(&prefix, &prefix, |k, v| {
            let (node_id, tenant, id) =
                parse_leased_key(k).ok_or_else(|| Error::corrupt("lease key", format!("{k:?}")))?;
            let entry = pb::LeaseEntry::decode(v).map_err(|e| Error::corrupt("lease entry", e))?;
            out.push(LeasedTask { node_id, tenant, id, entry });
            Ok(true)
        })?;
        Ok(out)
    }
}
