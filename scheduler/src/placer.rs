//! Placement as the leader proposes a submit: a task that arrives while
//! the last scheduling round left a fitting slot free is leased in the
//! submit's own log entry, instead of waiting in the queue for the next
//! round and a second Raft write.
//!
//! ```text
//!  leader round ─► decide ─► leftover_slots ─► Placer ledger (free slots per open node)
//!  submit proposed on the leader ─► place: fitting node with a slot? ─► SubmitTasks.placements
//!                                    (slot taken; counted in flight until the write is over)
//! ```
//!
//! The ledger only ever holds slots a round left free with no queued task
//! able to take them ([`crate::core::leftover_slots`]), so a placed task
//! never jumps ahead of a queued one it competes with; completions free
//! slots only through the next round. What the ledger gets wrong (a slot
//! counted free that a placement in flight took, a node gone since) costs
//! a lease that waits on its node or is requeued — never a task run twice
//! or lost: apply() treats a placement as an `AssignTasks`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prost::Message;
use synod_store::pb::{self, command::Kind};

use crate::core::{Decision, NodeView, Params, QueuedTask, View, fits, leftover_slots};

/// Field number of `Command.submit_tasks`.
const SUBMIT_TASKS_FIELD: u64 = 16;

/// The leader's ledger of free slots; shared by its scheduling loop (which
/// refreshes it every round) and its proposal path (which spends it).
#[derive(Default)]
pub struct Placer {
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    open: Vec<OpenNode>,
    /// Placements proposed and not yet over, per node: a round that read
    /// the state before they were applied counts their slots as free.
    in_flight: HashMap<u64, u64>,
    lease_ms: u64,
}

struct OpenNode {
    view: NodeView,
    free: u64,
}

/// Slots taken by one proposal; given back to the in-flight count when
/// dropped (the write is over: applied, or never will be).
pub struct Pending {
    placer: Arc<Placer>,
    nodes: Vec<u64>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut ledger = self.placer.lock();
        for node in &self.nodes {
            if let Some(n) = ledger.in_flight.get_mut(node) {
                *n = n.saturating_sub(1);
            }
        }
        ledger.in_flight.retain(|_, n| *n > 0);
    }
}

impl Placer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a round: the slots it left free, less those placements in
    /// flight hold. `enabled` false (a member that cannot apply placements,
    /// or this node not leading) empties the ledger.
    pub fn refresh(&self, view: &View, decisions: &[Decision], now_ms: u64, params: &Params, enabled: bool) {
        let left = if enabled { leftover_slots(view, decisions, now_ms, params) } else { Vec::new() };
        let mut ledger = self.lock();
        ledger.lease_ms = params.lease_ms;
        let open = left
            .into_iter()
            .filter_map(|(id, free)| {
                let free = free.saturating_sub(ledger.in_flight.get(&id).copied().unwrap_or(0));
                let view = view.nodes.iter().find(|n| n.id == id)?.clone();
                (free > 0).then_some(OpenNode { view, free })
            })
            .collect();
        ledger.open = open;
    }

    /// Forgets every free slot (this node stopped leading).
    pub fn clear(&self) {
        self.lock().open.clear();
    }

    /// Free slots in the ledger now, over all nodes.
    pub fn free_slots(&self) -> u64 {
        self.lock().open.iter().map(|n| n.free).sum()
    }

    /// Called with an encoded `pb::Command` the leader is about to
    /// propose. For a submit, places each task that fits a free slot and
    /// appends the placements (and command format 2) to `data`; protobuf
    /// merges them into the submit. Anything else passes untouched.
    pub fn place(self: &Arc<Self>, data: &mut Vec<u8>) -> Option<Pending> {
        if !has_top_level_field(data, SUBMIT_TASKS_FIELD) || self.lock().open.is_empty() {
            return None;
        }
        let Ok(pb::Command { kind: Some(Kind::SubmitTasks(submit)), .. }) = pb::Command::decode(data.as_slice()) else {
            return None;
        };
        let mut placements = Vec::new();
        let mut nodes = Vec::new();
        {
            let mut ledger = self.lock();
            let lease_ms = ledger.lease_ms;
            for spec in submit.tasks {
                let task = QueuedTask {
                    tenant: spec.tenant,
                    id: spec.id,
                    task_type: spec.task_type,
                    priority: spec.priority.min(9) as u8,
                    required_labels: spec.labels.into_iter().collect(),
                    requires: spec.requires.into_iter().collect(),
                    enqueued_at_ms: 0,
                    not_before_ms: 0,
                };
                // The node with the most free slots, then the lowest id.
                let Some(best) = ledger
                    .open
                    .iter_mut()
                    .filter(|n| n.free > 0 && fits(&n.view, &task))
                    .max_by(|a, b| a.free.cmp(&b.free).then(b.view.id.cmp(&a.view.id)))
                else {
                    continue;
                };
                best.free -= 1;
                let node_id = best.view.id;
                *ledger.in_flight.entry(node_id).or_default() += 1;
                nodes.push(node_id);
                placements.push(pb::Assignment {
                    tenant: task.tenant,
                    id: task.id,
                    node_id,
                    lease_deadline_ms: 0,
                    lease_ms,
                });
            }
            ledger.open.retain(|n| n.free > 0);
        }
        if placements.is_empty() {
            return None;
        }
        metrics::counter!("synod_tasks_assigned_total").increment(placements.len() as u64);
        metrics::counter!("synod_tasks_placed_at_submit_total").increment(placements.len() as u64);
        let merge = pb::Command {
            format_version: synod_store::COMMAND_FORMAT_VERSION,
            stamped_at_ms: 0,
            kind: Some(Kind::SubmitTasks(pb::SubmitTasks { placements, ..Default::default() })),
        };
        merge.encode(data).ok()?;
        Some(Pending { placer: self.clone(), nodes })
    }
}

/// Whether the protobuf message in `data` has a top-level field `field`
/// (without decoding the others; false for anything malformed).
fn has_top_level_field(mut data: &[u8], field: u64) -> bool {
    fn varint(data: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = data.split_first()?;
            *data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    while !data.is_empty() {
        let Some(key) = varint(&mut data) else { return false };
        if key >> 3 == field {
            return true;
        }
        let skip = match key & 7 {
            0 => {
                if varint(&mut data).is_none() {
                    return false;
                }
                0
            }
            1 => 8,
            2 => match varint(&mut data).and_then(|n| usize::try_from(n).ok()) {
                Some(n) => n,
                None => return false,
            },
            5 => 4,
            _ => return false,
        };
        let Some(rest) = data.get(skip..) else { return false };
        data = rest;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::core::{LeasedTask, Liveness};

    fn node(id: u64, slots: u32, types: &[&str]) -> NodeView {
        NodeView {
            id,
            liveness: Liveness::Alive,
            draining: false,
            labels: BTreeMap::new(),
            task_types: types.iter().map(|t| t.to_string()).collect(),
            capabilities: BTreeSet::new(),
            worker_slots: slots,
            cpu_load: 0.0,
            last_heartbeat_ms: 10_000,
        }
    }

    fn submit(tasks: &[(&str, &str)]) -> Vec<u8> {
        pb::Command {
            format_version: synod_store::COMMAND_FORMAT_BASE,
            stamped_at_ms: 7,
            kind: Some(Kind::SubmitTasks(pb::SubmitTasks {
                tasks: tasks
                    .iter()
                    .map(|(id, ty)| pb::TaskSpec {
                        id: id.to_string(),
                        tenant: "acme".into(),
                        task_type: ty.to_string(),
                        payload: b"{}".to_vec(),
                        ..Default::default()
                    })
                    .collect(),
                max_queued: 5,
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    fn decoded(data: &[u8]) -> (u32, pb::SubmitTasks) {
        let cmd = pb::Command::decode(data).expect("decodes");
        match cmd.kind {
            Some(Kind::SubmitTasks(s)) => (cmd.format_version, s),
            other => panic!("not a submit: {other:?}"),
        }
    }

    fn leased(id: &str, node_id: u64) -> LeasedTask {
        LeasedTask { tenant: "acme".into(), id: id.into(), node_id, epoch: 1, lease_deadline_ms: 99_000 }
    }

    #[test]
    fn a_submit_takes_the_free_slots_a_round_left_and_no_more() {
        let placer = Arc::new(Placer::default());
        // Node 1 has 2 slots, one leased; node 2 runs another type only.
        let view = View {
            nodes: vec![node(1, 2, &["echo"]), node(2, 4, &["sleep"])],
            leased: vec![leased("old", 1)],
            ..View::default()
        };
        placer.refresh(&view, &[], 10_000, &Params::default(), true);
        assert_eq!(placer.free_slots(), 1 + 4);

        let mut data = submit(&[("a", "echo"), ("b", "echo"), ("c", "sleep")]);
        let pending = placer.place(&mut data).expect("placed");
        let (format, s) = decoded(&data);
        assert_eq!(format, synod_store::COMMAND_FORMAT_VERSION);
        // The proposer's fields survive the merge.
        assert_eq!((s.tasks.len(), s.max_queued), (3, 5));
        assert_eq!(pb::Command::decode(data.as_slice()).unwrap().stamped_at_ms, 7);
        let placed: Vec<(&str, u64)> = s.placements.iter().map(|a| (a.id.as_str(), a.node_id)).collect();
        // "b" found no echo slot left: it stays for the queue.
        assert_eq!(placed, [("a", 1), ("c", 2)]);
        assert!(s.placements.iter().all(|a| a.lease_ms == Params::default().lease_ms));

        // A round that read the state before "a" and "c" were applied sees
        // their slots free; the in-flight count keeps them taken.
        placer.refresh(&view, &[], 10_000, &Params::default(), true);
        assert_eq!(placer.free_slots(), 3);
        drop(pending);
        placer.refresh(&view, &[], 10_000, &Params::default(), true);
        assert_eq!(placer.free_slots(), 5);
    }

    #[test]
    fn nothing_is_placed_while_queued_tasks_could_use_the_slots() {
        let placer = Arc::new(Placer::default());
        let queued = QueuedTask {
            tenant: "acme".into(),
            id: "waiting".into(),
            task_type: "echo".into(),
            priority: 5,
            required_labels: BTreeMap::new(),
            requires: BTreeSet::new(),
            enqueued_at_ms: 1,
            not_before_ms: 0,
        };
        let view = View { nodes: vec![node(1, 1, &["echo"])], queued: vec![queued], ..View::default() };
        let params = Params::default();
        let decisions = crate::decide(&view, 10_000, &params);
        assert_eq!(decisions.len(), 1, "the round places the queued task");
        placer.refresh(&view, &decisions, 10_000, &params, true);
        let mut data = submit(&[("late", "echo")]);
        let before = data.clone();
        assert!(placer.place(&mut data).is_none());
        assert_eq!(data, before, "an unplaced submit is proposed as it came");

        // Control: the same view with a second slot lets the late task in.
        let view = View { nodes: vec![node(1, 2, &["echo"])], ..view };
        let decisions = crate::decide(&view, 10_000, &params);
        placer.refresh(&view, &decisions, 10_000, &params, true);
        assert!(placer.place(&mut data).is_some());
    }

    #[test]
    fn a_round_at_its_assignment_cap_or_a_disabled_ledger_places_nothing() {
        let placer = Arc::new(Placer::default());
        let view = View { nodes: vec![node(1, 8, &["echo"])], ..View::default() };
        let capped = Params { max_assignments: 1, ..Params::default() };
        let one = [Decision::Assign { tenant: "acme".into(), id: "x".into(), node_id: 1, lease_deadline_ms: 1 }];
        placer.refresh(&view, &one, 10_000, &capped, true);
        assert_eq!(placer.free_slots(), 0);
        placer.refresh(&view, &[], 10_000, &Params::default(), false);
        assert_eq!(placer.free_slots(), 0);
        placer.refresh(&view, &[], 10_000, &Params::default(), true);
        assert_eq!(placer.free_slots(), 8);
        placer.clear();
        assert!(placer.place(&mut submit(&[("a", "echo")])).is_none());
    }

    #[test]
    fn commands_other_than_submits_pass_untouched() {
        let placer = Arc::new(Placer::default());
        let view = View { nodes: vec![node(1, 8, &["echo"])], ..View::default() };
        placer.refresh(&view, &[], 10_000, &Params::default(), true);
        let cancel = pb::Command {
            format_version: 1,
            stamped_at_ms: 3,
            kind: Some(Kind::CancelTask(pb::CancelTask { tenant: "acme".into(), id: "a".into() })),
        };
        let mut data = cancel.encode_to_vec();
        assert!(placer.place(&mut data).is_none());
        assert_eq!(data, cancel.encode_to_vec());
        for junk in [&[0xff_u8][..], &[0x82, 0x01, 0x05, 0x00], &[]] {
            let mut data = junk.to_vec();
            assert!(placer.place(&mut data).is_none());
            assert_eq!(data, junk);
        }
        assert_eq!(placer.free_slots(), 8);
    }
}
