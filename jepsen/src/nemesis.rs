//! Nemeses: the faults a run injects, from a seeded schedule (the same
//! seed gives the same sequence of faults, shapes and targets; the timing
//! of what the nodes do in between is theirs).
//!
//! - `kill`: kill -9 one node, the leader, a minority, or all, then start
//!   them again with their data;
//! - `pause`: SIGSTOP one node or the leader for 0.5 to 5 s (past the
//!   election timeout, and sometimes past the task lease), then SIGCONT;
//! - `partition`: through the link proxies: one node isolated, the leader
//!   isolated (clients still reach it), one-way cuts (a node's outbound or
//!   inbound links), majority/minority halves, and on 5 nodes or more the
//!   ring and bridge shapes;
//! - `membership`: under load, transfer leadership to another voter;
//!   demote a voter to learner and promote it back (`cluster.auto_promote`
//!   may promote it first); or remove a voter and add it back as a learner
//!   (auto-promoted to voter again);
//! - `snapshot`: cut a follower off until the leader has purged the log
//!   past it (up to 30 s; runs snapshot every 200 entries), so that
//!   healing makes it catch up by snapshot;
//! - `crash`: restart one node or the leader with a failpoint armed
//!   (`observability.failpoints`: crash at the Nth log append, vote save,
//!   apply or snapshot install) and count it installed when the node
//!   crashed there; it is then started again without;
//! - `clock`: skew wall clocks through libfaketime (the node processes run
//!   with it preloaded; their monotonic clocks are left alone, as an NTP
//!   step leaves them): ±1–30 s on a minority that includes the leader or
//!   on one node, or a jump of the leader's clock by ±30–120 s, held 4 to
//!   10 s, then set back (itself a jump);
//! - `disk`: make a follower lag behind a snapshot (as `snapshot`), then
//!   before healing either damage the leader's snapshot files (bytes
//!   flipped in the middle, or cut to half their length) or let the
//!   leader's link to it drop connections for 2 s as it heals, cutting the
//!   snapshot stream mid-way. The follower must catch up; no node may stay
//!   down.
//!
//! Each fault is recorded in the history as an invocation when installed
//! and a completion when healed (process [`NEMESIS`]).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cluster::Cluster;
use crate::history::{Kind, Recorder};
use crate::proxy::Fault;

/// The history's process id for faults (and, above it, one per node for
/// the register writes a fault causes).
pub const NEMESIS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Nemesis {
    Kill,
    Pause,
    Partition,
    Membership,
    Snapshot,
    Crash,
    Clock,
    Disk,
}

impl Nemesis {
    pub const ALL: [Nemesis; 8] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::Membership,
        Nemesis::Snapshot,
        Nemesis::Crash,
        Nemesis::Clock,
        Nemesis::Disk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::Membership => "membership",
            Nemesis::Snapshot => "snapshot",
            Nemesis::Crash => "crash",
            Nemesis::Clock => "clock",
            Nemesis::Disk => "disk",
        }
    }
}

impl FromStr for Nemesis {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Nemesis::ALL.into_iter().find(|n| n.name() == s).ok_or_else(|| {
            format!(
                "unknown nemesis {s:?} (expected one of: kill, pause, partition, membership, snapshot, crash, clock, disk)"
            )
        })
    }
}

/// Sleeps `d`, or less if the deadline comes first; false once it has.
async fn sleep_until(d: Duration, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    tokio::time::sleep(d.min(deadline - now)).await;
    Instant::now() < deadline
}

fn secs(rng: &mut StdRng, lo: f64, hi: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(lo..hi))
}

/// Runs faults from `enabled` until `deadline`, healing each before the
/// next, and heals everything at the end. Returns how many times each
/// nemesis was installed.
pub async fn run(
    cluster: Arc<Cluster>,
    rec: Arc<Recorder>,
    enabled: Vec<Nemesis>,
    seed: u64,
    deadline: Instant,
) -> BTreeMap<&'static str, usize> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let mut installed: BTreeMap<&'static str, usize> = enabled.iter().map(|n| (n.name(), 0)).collect();
    let n = cluster.nodes.len();
    let mut turns: Vec<Nemesis> = Vec::new();
    while !enabled.is_empty() {
        let healthy = secs(&mut rng, 1.0, 3.0);
        if !sleep_until(healthy, deadline).await {
            break;
        }
        // Every enabled nemesis in turn, in a seeded order per round, so
        // each one is installed even in a short run.
        if turns.is_empty() {
            turns = enabled.clone();
            for i in (1..turns.len()).rev() {
                turns.swap(i, rng.random_range(0..=i));
            }
        }
        let nemesis = turns.pop().expect("refilled above");
        let pick = rng.random_range(0..n);
        let choice: u32 = rng.random_range(0..100);
        let hold = match nemesis {
            Nemesis::Pause => secs(&mut rng, 0.5, 5.0),
            Nemesis::Clock => secs(&mut rng, 4.0, 10.0),
            _ => secs(&mut rng, 1.0, 5.0),
        };
        let leader = cluster.leader_index().await;
        let mut failpoint = String::new();
        let mut offsets: Vec<i64> = Vec::new();
        let (shape, targets) = match nemesis {
            Nemesis::Kill => match choice {
                0..40 => ("one", vec![pick]),
                40..75 => ("leader", vec![leader.unwrap_or(pick)]),
                75..90 => ("minority", minority(&mut rng, n)),
                _ => ("all", (0..n).collect()),
            },
            Nemesis::Pause => match choice {
                0..50 => ("one", vec![pick]),
                _ => ("leader", vec![leader.unwrap_or(pick)]),
            },
            Nemesis::Partition => {
                let mut shapes = vec!["isolate one", "isolate leader", "one-way out", "one-way in", "halves"];
                if n >= 5 {
                    shapes.extend(["ring", "bridge"]);
                }
                let shape = shapes[choice as usize % shapes.len()];
                let target = if shape == "isolate leader" { leader.unwrap_or(pick) } else { pick };
                (shape, partition(&cluster, shape, target, &mut rng))
            }
            Nemesis::Membership => {
                let l = leader.unwrap_or(pick);
                let other = (l + 1 + rng.random_range(0..n - 1)) % n;
                match choice {
                    0..34 => ("transfer leader", vec![other]),
                    34..67 => ("demote and promote", vec![other]),
                    _ => ("remove and add back", vec![other]),
                }
            }
            Nemesis::Snapshot => {
                let l = leader.unwrap_or(pick);
                ("lag behind a snapshot", vec![(l + 1 + rng.random_range(0..n - 1)) % n])
            }
            Nemesis::Disk => {
                let l = leader.unwrap_or(pick);
                let shape = match choice {
                    0..35 => "corrupt leader snapshot",
                    35..70 => "truncate leader snapshot",
                    _ => "cut snapshot stream",
                };
                (shape, vec![(l + 1 + rng.random_range(0..n - 1)) % n])
            }
            Nemesis::Crash => {
                // Appends and applies happen on every write; votes and
                // snapshot installs are rare, so they are drawn less often
                // and armed on their first hit.
                let (point, at) = match choice {
                    0..45 => ("apply", rng.random_range(1..30)),
                    45..90 => ("log_append", rng.random_range(1..30)),
                    90..97 => ("vote_save", 1),
                    _ => ("snapshot_install", 1),
                };
                failpoint = format!("{point}@{at}");
                let target = if rng.random_bool(0.5) { leader.unwrap_or(pick) } else { pick };
                ("failpoint", vec![target])
            }
            Nemesis::Clock => {
                let l = leader.unwrap_or(pick);
                let sign = |rng: &mut StdRng| if rng.random_bool(0.5) { 1 } else { -1 };
                let (shape, targets) = match choice {
                    0..45 => {
                        // A minority that includes the leader.
                        let mut m = minority(&mut rng, n);
                        if !m.contains(&l) {
                            m[0] = l;
                            m.sort_unstable();
                            m.dedup();
                        }
                        ("skew leader and minority", m)
                    }
                    45..75 => ("skew one", vec![pick]),
                    _ => ("jump leader", vec![l]),
                };
                offsets = targets
                    .iter()
                    .map(|_| {
                        let size = if shape == "jump leader" { 30..=120 } else { 1..=30 };
                        sign(&mut rng) * rng.random_range(size)
                    })
                    .collect();
                (shape, targets)
            }
        };
        let ids: Vec<u64> = targets.iter().map(|i| cluster.nodes[*i].id).collect();
        let mut what = json!({"nemesis": nemesis.name(), "shape": shape, "nodes": ids});
        if nemesis == Nemesis::Crash {
            what["failpoint"] = json!(failpoint);
        }
        if nemesis == Nemesis::Clock {
            what["offsets_s"] = json!(offsets);
        }
        rec.record(NEMESIS, Kind::Invoke, nemesis.name(), what.clone());
        let mut ok = true;
        for (k, t) in targets.iter().enumerate() {
            match nemesis {
                Nemesis::Clock => ok &= cluster.set_clock(*t, offsets[k]).is_ok(),
                Nemesis::Kill => cluster.kill(*t),
                Nemesis::Pause => ok &= cluster.signal(*t, "STOP").is_ok(),
                Nemesis::Partition => {}
                Nemesis::Membership => {
                    let action = match shape {
                        "transfer leader" => "transfer-leader",
                        "demote and promote" => "demote",
                        _ => "remove",
                    };
                    if action == "remove" {
                        // The node's record goes, and comes back at a new
                        // version when it registers again: a write no
                        // client made, of unknown time, to the register
                        // workload's key for that node.
                        let id = cluster.nodes[*t].id;
                        // Indeterminate at once (Info): it may take effect
                        // any time from now, and the next removal of the
                        // same node is a new operation of this process,
                        // not a second invocation of an open one.
                        let write = json!({"key": id.to_string(), "value": null, "by": "registering again"});
                        rec.record(NEMESIS + 1 + id, Kind::Invoke, "write", write.clone());
                        rec.record(NEMESIS + 1 + id, Kind::Info, "write", write);
                    }
                    ok &= admin(&cluster, *t, action).await;
                }
                Nemesis::Snapshot => {
                    cluster.isolate(cluster.nodes[*t].id, Fault::Blackhole);
                    ok &= purged_past(&cluster, *t, Duration::from_secs(30)).await;
                }
                Nemesis::Disk => {
                    let follower = cluster.nodes[*t].id;
                    cluster.isolate(follower, Fault::Blackhole);
                    ok &= purged_past(&cluster, *t, Duration::from_secs(30)).await;
                    let l = cluster.leader_index().await;
                    match (shape, l) {
                        (_, None) => ok = false,
                        ("cut snapshot stream", Some(l)) => {
                            what["leader"] = json!(cluster.nodes[l].id);
                            cluster.heal();
                            let drop = Fault::Drop { probability: 0.2 };
                            cluster.link(cluster.nodes[l].id, follower, drop);
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        (_, Some(l)) => {
                            what["leader"] = json!(cluster.nodes[l].id);
                            let damaged = damage_snapshots(&cluster.nodes[l].data_dir, shape.starts_with("truncate"));
                            what["files"] = json!(damaged);
                            ok &= damaged > 0;
                        }
                    }
                }
                Nemesis::Crash => {
                    cluster.kill(*t);
                    let arg = format!("observability.failpoints={failpoint}");
                    ok &= cluster.spawn_with(*t, &["--set".into(), arg]).is_ok();
                }
            }
        }
        if !matches!(nemesis, Nemesis::Snapshot | Nemesis::Disk) {
            tokio::time::sleep(hold).await;
        }
        if nemesis == Nemesis::Crash {
            // Installed only if the node really crashed at its failpoint.
            ok &= targets.iter().all(|t| cluster.exited(*t));
            what["crashed"] = json!(ok);
        }
        *installed.entry(nemesis.name()).or_default() += usize::from(ok);
        for t in &targets {
            match nemesis {
                Nemesis::Kill => ok &= cluster.spawn(*t).is_ok(),
                Nemesis::Pause => ok &= cluster.signal(*t, "CONT").is_ok(),
                Nemesis::Clock => ok &= cluster.set_clock(*t, 0).is_ok(),
                Nemesis::Membership if shape == "demote and promote" => {
                    // Auto-promotion may have been first: 404 is fine then.
                    admin(&cluster, *t, "promote").await;
                }
                Nemesis::Membership if shape == "remove and add back" => {
                    ok &= add_learner(&cluster, *t).await;
                }
                Nemesis::Crash => {
                    // A late failpoint crash is expected here, not a death.
                    let _ = cluster.exited(*t);
                    cluster.kill(*t);
                    let _ = cluster.spawn(*t);
                }
                _ => {}
            }
        }
        if matches!(nemesis, Nemesis::Partition | Nemesis::Snapshot | Nemesis::Disk) {
            cluster.heal();
        }
        if nemesis == Nemesis::Disk {
            // The follower must catch up (by a good snapshot) soon after.
            let caught_up = caught_up(&cluster, targets[0], Duration::from_secs(20)).await;
            what["caught_up"] = json!(caught_up);
        }
        // A crash failpoint that was not reached is a fault not installed,
        // not a harness failure: record it as info.
        let kind = match (ok, nemesis) {
            (true, _) => Kind::Ok,
            (false, Nemesis::Crash) => Kind::Info,
            (false, _) => Kind::Fail,
        };
        rec.record(NEMESIS, kind, nemesis.name(), what);
    }
    heal_all(&cluster);
    installed
}

/// `POST /cluster/nodes/{id}/{action}` for node index `t`, through the
/// first node that answers (the server forwards to the leader); true on 200.
async fn admin(c: &Cluster, t: usize, action: &str) -> bool {
    let path = format!("/cluster/nodes/{}/{action}", c.nodes[t].id);
    for i in (0..c.nodes.len()).filter(|i| *i != t) {
        match c.call(i, "POST", &path, &[], Some(&json!({})), Duration::from_secs(10)).await {
            crate::cluster::Reply::Answer { status, .. } => return status == 200,
            _ => continue,
        }
    }
    false
}

/// `POST /cluster/add-learner` for node index `t` (with its addresses),
/// through the first other node that answers; true on 200.
async fn add_learner(c: &Cluster, t: usize) -> bool {
    let n = &c.nodes[t];
    let body = json!({"id": n.id, "raft_addr": n.raft, "http_addr": n.http, "grpc_addr": n.grpc});
    for i in (0..c.nodes.len()).filter(|i| *i != t) {
        match c.call(i, "POST", "/cluster/add-learner", &[], Some(&body), Duration::from_secs(10)).await {
            crate::cluster::Reply::Answer { status, .. } => return status == 200,
            _ => continue,
        }
    }
    false
}

/// Waits (up to `within`) until the leader has purged its log past what
/// node `t` has applied: true once `t` can only catch up by snapshot.
async fn purged_past(c: &Cluster, t: usize, within: Duration) -> bool {
    let status = |i: usize| async move {
        match c.call(i, "GET", "/cluster/status", &[], None, Duration::from_secs(1)).await {
            crate::cluster::Reply::Answer { status: 200, body, .. } => Some(body),
            _ => None,
        }
    };
    let Some(applied) = status(t).await.and_then(|s| s["applied_index"].as_u64()) else { return false };
    let deadline = Instant::now() + within;
    let mut filler = 0u64;
    while Instant::now() < deadline {
        if let Some(l) = c.leader_index().await
            && l != t
        {
            if status(l).await.and_then(|s| s["purged_index"].as_u64()).is_some_and(|purged| purged > applied) {
                return true;
            }
            // Push the log on towards the next snapshot and purge, so the
            // fault does not hang on how fast the workload happens to write:
            // points of a collection no workload reads or checks.
            if filler == 0 {
                let body = json!({"name": FILLER, "dimension": 2});
                c.call(l, "POST", "/collections", &[], Some(&body), Duration::from_secs(5)).await;
            }
            let path = format!("/collections/{FILLER}/points");
            for _ in 0..20 {
                filler += 1;
                let body = json!({"points": [{"id": filler, "vector": [1.0, filler as f64]}]});
                c.call(l, "POST", &path, &[], Some(&body), Duration::from_secs(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The collection [`purged_past`] writes to: no workload touches it.
const FILLER: &str = "jepsen-filler";

/// Damages every snapshot file in `data_dir/snapshots`: cut to half its
/// length, or 64 bytes in the middle flipped. Returns how many.
fn damage_snapshots(data_dir: &std::path::Path, truncate: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir.join("snapshots")) else { return 0 };
    let mut n = 0;
    for path in entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|e| e == "snap")) {
        let Ok(mut bytes) = std::fs::read(&path) else { continue };
        if bytes.len() < 2 {
            continue;
        }
        let mid = bytes.len() / 2;
        if truncate {
            bytes.truncate(mid);
        } else {
            for b in bytes.iter_mut().skip(mid).take(64) {
                *b ^= 0xa5;
            }
        }
        if std::fs::write(&path, bytes).is_ok() {
            n += 1;
        }
    }
    n
}

/// Waits (up to `within`) until node `t` has applied the leader's commit
/// index as it was when the wait began.
async fn caught_up(c: &Cluster, t: usize, within: Duration) -> bool {
    let status = |i: usize| async move {
        match c.call(i, "GET", "/cluster/status", &[], None, Duration::from_secs(1)).await {
            crate::cluster::Reply::Answer { status: 200, body, .. } => Some(body),
            _ => None,
        }
    };
    let deadline = Instant::now() + within;
    let mut target = None;
    while Instant::now() < deadline {
        if target.is_none()
            && let Some(l) = c.leader_index().await
        {
            target = status(l).await.and_then(|s| s["commit_index"].as_u64());
        }
        if let Some(want) = target
            && status(t).await.and_then(|s| s["applied_index"].as_u64()).is_some_and(|a| a >= want)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Every link passes, every clock is true, every paused node runs, every
/// killed node is started.
pub fn heal_all(cluster: &Cluster) {
    cluster.heal();
    for i in 0..cluster.nodes.len() {
        let _ = cluster.set_clock(i, 0);
        cluster.check_alive(i);
        if cluster.is_running(i) {
            let _ = cluster.signal(i, "CONT");
        } else {
            let _ = cluster.spawn(i);
        }
    }
}

/// A random set of fewer than half the nodes (at least one).
fn minority(rng: &mut StdRng, n: usize) -> Vec<usize> {
    let size = ((n - 1) / 2).max(1);
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..size {
        let j = rng.random_range(i..n);
        all.swap(i, j);
    }
    all.truncate(size);
    all.sort_unstable();
    all
}

/// Installs a partition shape around `target` (a node index) and returns
/// the nodes it cuts off (for the record).
fn partition(c: &Cluster, shape: &str, target: usize, rng: &mut StdRng) -> Vec<usize> {
    let n = c.nodes.len();
    let id = |i: usize| c.nodes[i].id;
    let cut = |a: usize, b: usize| {
        c.link(id(a), id(b), Fault::Blackhole);
        c.link(id(b), id(a), Fault::Blackhole);
    };
    match shape {
        "isolate one" | "isolate leader" => {
            c.isolate(id(target), Fault::Blackhole);
            vec![target]
        }
        "one-way out" | "one-way in" => {
            for other in (0..n).filter(|o| *o != target) {
                let (from, to) = if shape == "one-way out" { (target, other) } else { (other, target) };
                c.link(id(from), id(to), Fault::Blackhole);
            }
            vec![target]
        }
        "halves" => {
            let small = minority(rng, n);
            for a in &small {
                for b in (0..n).filter(|b| !small.contains(b)) {
                    cut(*a, b);
                }
            }
            small
        }
        "ring" => {
            // Each node hears only its two neighbours: no majority of
            // mutually connected nodes, yet everyone has a majority path.
            for a in 0..n {
                for b in a + 1..n {
                    let adjacent = b - a == 1 || (a == 0 && b == n - 1);
                    if !adjacent {
                        cut(a, b);
                    }
                }
            }
            (0..n).collect()
        }
        "bridge" => {
            // Two halves that only `target` connects.
            let others: Vec<usize> = (0..n).filter(|o| *o != target).collect();
            let (left, right) = others.split_at(others.len() / 2);
            for a in left {
                for b in right {
                    cut(*a, *b);
                }
            }
            vec![target]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for n in Nemesis::ALL {
            assert_eq!(n.name().parse::<Nemesis>(), Ok(n));
        }
        assert!("chaos".parse::<Nemesis>().unwrap_err().contains("membership, snapshot, crash, clock, disk"));
    }

    #[test]
    fn a_minority_is_less_than_half_and_follows_the_seed() {
        for n in [3, 5, 7] {
            let a = minority(&mut StdRng::seed_from_u64(7), n);
            assert!(!a.is_empty() && a.len() * 2 < n, "{a:?}");
            assert_eq!(a, minority(&mut StdRng::seed_from_u64(7), n));
        }
    }
}
