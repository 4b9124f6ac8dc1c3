//! Synod's scheduler (not built yet; arrives with the tasks issue).
//!
//! It will hold the pure placement core `decide(view, now) -> Vec<Command>`
//! (priorities, weighted fair share across tenants, aging, placement by
//! capability and load, never onto suspect, dead or draining nodes), the
//! leader loop that feeds it and proposes its commands in batches, and the
//! node-side processor: a bounded, auto-scaling worker pool that runs
//! assignments through the plugin registry, renews leases and proposes
//! completions with their lease epoch.
//!
//! Must not depend on `synod-api`: it proposes through a trait of its own.
