//! Synod's scheduler: which queued task runs where, and running it.
//!
//! At its heart is [`core`], the pure scheduling core. [`decide`] takes a
//! [`View`] of the cluster (nodes with liveness, labels, plugins, slots and
//! load; queued and leased tasks; tenant weights), the leader's `now_ms` and
//! [`Params`], and returns [`Decision`]s: requeue lost or expired leases, then
//! assign queued tasks by priority with aging, weighted fair share across
//! tenants, and placement by capability and load, never onto suspect, dead or
//! draining nodes. It does no I/O, reads no clock and draws no randomness, so
//! the same view always yields the same decisions.
//!
//! Around that core, generic over a [`Host`] (what the node offers: its
//! store, plugins, config, leadership, applied index and a way to propose
//! commands — the `synod` binary implements it over Raft):
//! - [`leader::run`], the leader's loop: builds the view from the replicated
//!   state, runs [`decide`] and proposes the decisions in batches;
//! - [`placer::Placer`], the leader's ledger of free slots a submit's tasks
//!   may take as it is proposed, in the submit's own log entry;
//! - [`worker::run`], the node-side processor: runs this node's leased tasks
//!   on a bounded, self-sizing pool through the plugin registry, renews
//!   leases and reports starts and completions with their epoch;
//! - [`autoscale::run`], the cluster autoscaler: the desired node count and
//!   the `scaling.hook`;
//! - [`retention::run`], the leader's deletion of finished tasks past
//!   `storage.retention.finished_tasks`.
//!
//! [`core`] depends on nothing but serde. The loops read `synod-store`
//! records and never touch Raft, HTTP or gRPC.
//!
//! Key types: [`View`], [`NodeView`], [`QueuedTask`], [`LeasedTask`],
//! [`Params`], [`Decision`], [`RequeueReason`], [`Host`].
//!
//! ```
//! use std::collections::{BTreeMap, BTreeSet};
//! use synod_scheduler::{Decision, Liveness, NodeView, Params, QueuedTask, View, decide};
//!
//! let node = NodeView {
//!     id: 1,
//!     liveness: Liveness::Alive,
//!     draining: false,
//!     labels: BTreeMap::new(),
//!     task_types: ["echo".to_string()].into(),
//!     capabilities: BTreeSet::new(),
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
//!     requires: BTreeSet::new(),
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

pub mod autoscale;
pub mod core;
pub mod host;
pub mod leader;
pub mod placer;
pub mod retention;
pub mod worker;

pub use crate::core::{Decision, LeasedTask, Liveness, NodeView, Params, QueuedTask, RequeueReason, View, decide};
pub use crate::host::{Host, StorePointError, VectorPoint, liveness, now_ms, worker_slots};
pub use crate::placer::Placer;
