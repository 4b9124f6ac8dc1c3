//! Synod's scheduler: which queued task runs where, decided without side effects.
//!
//! What exists now is [`core`], the pure scheduling core. [`decide`] takes a
//! [`View`] of the cluster (nodes with liveness, labels, plugins, slots and
//! load; queued and leased tasks; tenant weights), the leader's `now_ms` and
//! [`Params`], and returns [`Decision`]s: requeue lost or expired leases, then
//! assign queued tasks by priority with aging, weighted fair share across
//! tenants, and placement by capability and load, never onto suspect, dead or
//! draining nodes. It does no I/O, reads no clock and draws no randomness, so
//! the same view always yields the same decisions.
//!
//! Not here yet (they come later, around this core): the leader loop that
//! builds the view from the replicated state and proposes the decisions as
//! commands, and the node-side processor with its worker pool, lease renewal
//! and heartbeats.
//!
//! Must not depend on `synod-store`, `synod-raft` or `synod-api`: callers
//! translate their records into a [`View`] and decisions into commands.
//!
//! Key types: [`View`], [`NodeView`], [`QueuedTask`], [`LeasedTask`],
//! [`Params`], [`Decision`], [`RequeueReason`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use synod_scheduler::{Decision, Liveness, NodeView, Params, QueuedTask, View, decide};
//!
//! let node = NodeView {
//!     id: 1,
//!     liveness: Liveness::Alive,
//!     draining: false,
//!     labels: BTreeMap::new(),
//!     task_types: ["echo".to_string()].into(),
//!     worker_slots: 2,
//!     cpu_load: 0.1,
//!     last_heartbeat_ms: 9_000,
//! };
//! let task = QueuedTask {
//!     tenant: "acme".into(),
//!     id: "t-1".into(),
//!     task_type: "echo".into(),
//!     priority: 5,
//!     required_labels: BTreeMap::new(),
//!     enqueued_at_ms: 8_000,
//!     not_before_ms: 0,
//! };
//! let view = View { nodes: vec![node], queued: vec![task], ..View::default() };
//! let decisions = decide(&view, 10_000, &Params::default());
//! assert_eq!(
//!     decisions,
//!     [Decision::Assign { tenant: "acme".into(), id: "t-1".into(), node_id: 1, lease_deadline_ms: 40_000 }]
//! );
//! ```

pub mod core;

pub use crate::core::{Decision, LeasedTask, Liveness, NodeView, Params, QueuedTask, RequeueReason, View, decide};
