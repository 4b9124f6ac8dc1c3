//! Synod's chaos harness (not built yet; arrives with the chaos issue).
//!
//! It will start real `synod` processes on 127.0.0.x, route every directed
//! Raft link through its own TCP proxy (partitions without root), inject
//! faults (kill -9, SIGSTOP, partitions, membership changes, snapshot
//! pressure) from seeded generators, record histories of invocations and
//! completions (ok / fail / indeterminate), and check them: no acknowledged
//! task lost, no task completed twice, stale leases fenced, linearizable
//! registers, identical state digests after heal.
//!
//! Black-box: it drives `synod` only through its public API.
