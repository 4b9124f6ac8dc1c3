//! Synod's chaos harness, black-box against real `synod` processes. Built
//! so far: the process runner with every Raft link through its own proxy
//! ([`cluster`]), the per-link TCP proxy ([`proxy`]), and the queue
//! workload's history and checker ([`history`], [`queue`]). Still to come
//! (see the chaos issue): nemeses, generators, the register and set
//! workloads, the CLI and the timeline picture.
//!
//! It will start real `synod` processes on 127.0.0.x, route every directed
//! Raft link through its own TCP proxy (partitions without root), inject
//! faults (kill -9, SIGSTOP, partitions, membership changes, snapshot
//! pressure) from seeded generators, record histories of invocations and
//! completions (ok / fail / indeterminate), and check them: no acknowledged
//! task lost, no task completed twice, stale leases fenced, linearizable
//! registers, identical state digests after heal.

pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod queue;
pub mod register;
pub mod run;
pub mod timeline;
