//! Synod's chaos harness, black-box against real `synod` processes: it
//! starts nodes on 127.0.0.1 with every Raft link through its own TCP proxy
//! ([`cluster`], [`proxy`]), injects faults from a seeded schedule
//! ([`nemesis`]: kill -9, SIGSTOP, partitions, membership changes, snapshot
//! pressure), drives a workload and records its history of invocations and
//! completions (ok / fail / indeterminate, [`history`]), heals, reads the
//! final state from every node and checks it ([`queue`], [`register`],
//! [`set`]), and
//! writes the run's folder with a timeline picture ([`run`], [`timeline`]).
//! A soak ([`soak`]) runs long at steady load and checks memory and disk
//! stay bounded.

pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod queue;
pub mod register;
pub mod run;
pub mod set;
pub mod soak;
pub mod timeline;
