//! One run: start a cluster, drive a workload from several client
//! processes while the nemeses inject faults, heal, read the final state
//! from every node, check the history, and write the run's folder:
//! `history.jsonl`, `results.json`, `timeline.svg` and the nodes' logs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::cluster::{Cluster, Reply};
use crate::history::{History, Kind, Recorder, classify};
use crate::nemesis::{self, Nemesis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Queue,
    Register,
    Set,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Queue => "queue",
            Workload::Register => "register",
            Workload::Set => "set",
        }
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "queue" => Ok(Workload::Queue),
            "register" => Ok(Workload::Register),
            "set" => Ok(Workload::Set),
            _ => Err(format!("unknown workload {s:?} (expected one of: queue, register, set)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Opts {
    /// The `synod` binary to run.
    pub bin: PathBuf,
    pub workload: Workload,
    pub nemeses: Vec<Nemesis>,
    pub nodes: usize,
    /// How long the workload and the faults run (before heal and drain).
    pub time_limit: Duration,
    pub seed: u64,
    /// Client processes.
    pub clients: usize,
    /// The register and set workloads' reads: `linearizable` (the
    /// default), or `leader` / `local` to watch the checker catch stale
    /// reads.
    pub read_consistency: String,
    /// The run's folder (created).
    pub dir: PathBuf,
    /// A soak: a short retention, and memory and disk sampled and checked
    /// for bounded growth (see [`crate::soak`]).
    pub soak: bool,
}

impl Opts {
    /// A short name: `queue-kill,partition-n3-s42`.
    pub fn name(&self) -> String {
        let nem: Vec<&str> = self.nemeses.iter().map(|n| n.name()).collect();
        let nem = if nem.is_empty() { "none".to_string() } else { nem.join(",") };
        let soak = if self.soak { "soak-" } else { "" };
        format!("{soak}{}-{}-n{}-s{}", self.workload.name(), nem, self.nodes, self.seed)
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub name: String,
    pub valid: bool,
    pub errors: Vec<String>,
    /// Counts and fault installs, as written to `results.json`.
    pub results: Value,
}

/// The per-node configuration of a run (after `voters: N`): fast failure
/// detection and short leases so faults show within seconds, and frequent
/// snapshots so a restarted or cut-off node often catches up by snapshot;
/// and `GET /debug/digest` for comparing the nodes' states after heal.
const NODE_CONFIG: &str = "  node_heartbeat_interval: 300ms
  suspect_after: 1s
  dead_after: 2s
  snapshot_logs_threshold: 200
  logs_to_keep: 50
scaling:
  task_lease: 3s
  recovery_timeout: 1s
observability:
  debug_endpoints: true
";

/// A client's deadline for one operation: past the server's 5 s write
/// timeout, so a slow commit is answered rather than cut off.
const OP_TIMEOUT: Duration = Duration::from_secs(8);

pub async fn run(o: &Opts) -> RunOutcome {
    let name = o.name();
    let started = Instant::now();
    let fail = |errors: Vec<String>, results: Value| RunOutcome { name: name.clone(), valid: false, errors, results };
    // A rerun of the same name and seed replaces the old folder (data dirs
    // included: nodes must start empty).
    if o.dir.join("nodes").exists() && std::fs::remove_dir_all(&o.dir).is_err() {
        return fail(vec![format!("cannot remove the old run folder {}", o.dir.display())], Value::Null);
    }
    if let Err(e) = std::fs::create_dir_all(&o.dir) {
        return fail(vec![format!("cannot create {}: {e}", o.dir.display())], Value::Null);
    }
    let mut config = format!("  voters: {}\n{NODE_CONFIG}", o.nodes);
    if o.soak {
        config.push_str(crate::soak::SOAK_CONFIG);
    }
    let clocks = o.nemeses.contains(&Nemesis::Clock);
    let cluster = match Cluster::start_with(&o.bin, &o.dir.join("nodes"), o.nodes, o.seed, &config, clocks).await {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(vec![format!("the cluster did not start: {e}")], Value::Null),
    };
    if o.workload == Workload::Set
        && let Err(e) = create_collection(&cluster).await
    {
        return fail(vec![e], Value::Null);
    }
    let rec = Arc::new(Recorder::default());
    let deadline = Instant::now() + o.time_limit;
    let sampler = tokio::spawn(sample_leaders(cluster.clone(), rec.clone(), deadline));
    let faults = tokio::spawn(nemesis::run(cluster.clone(), rec.clone(), o.nemeses.clone(), o.seed, deadline));
    let soak = o.soak.then(|| tokio::spawn(crate::soak::sample(cluster.clone(), rec.clone(), deadline)));
    let shared = Arc::new(Shared::default());
    let mut clients = Vec::new();
    for p in 1..=o.clients as u64 {
        let (c, r, s) = (cluster.clone(), rec.clone(), shared.clone());
        let seed = o.seed ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        clients.push(match o.workload {
            Workload::Queue => tokio::spawn(queue_client(c, r, s, p, seed, deadline)),
            Workload::Register => tokio::spawn(register_client(c, r, o.read_consistency.clone(), p, seed, deadline)),
            Workload::Set => tokio::spawn(set_client(c, r, o.read_consistency.clone(), p, seed, deadline)),
        });
    }
    if o.workload == Workload::Queue {
        let (c, r, s) = (cluster.clone(), rec.clone(), shared.clone());
        clients.push(tokio::spawn(probe(c, r, s, o.seed, deadline)));
    }
    let mut client_errors = Vec::new();
    for c in clients {
        if let Err(e) = c.await {
            client_errors.push(format!("a client task failed: {e}"));
        }
    }
    let installed = faults.await.unwrap_or_default();
    let soak_samples = match soak {
        Some(s) => s.await.ok(),
        None => None,
    };
    let _ = sampler.await;
    nemesis::heal_all(&cluster);

    let mut errors = client_errors;
    for i in 0..cluster.nodes.len() {
        if let Err(e) = cluster.wait_ready(i, Duration::from_secs(90)).await {
            errors.push(format!("after heal: {e}"));
        }
    }
    let mut results = json!({
        "name": name,
        "workload": o.workload.name(),
        "nemeses": o.nemeses.iter().map(|n| n.name()).collect::<Vec<_>>(),
        "nodes": o.nodes,
        "seed": o.seed,
        "time_limit_s": o.time_limit.as_secs_f64(),
        "installed": installed,
    });
    if errors.is_empty() {
        match o.workload {
            Workload::Queue => {
                // Faults that never take a node away (clock skew) leave
                // nothing to excuse a slow schedule or a requeue.
                let gentle = o.nemeses.iter().all(|n| *n == Nemesis::Clock);
                let expect = crate::queue::Expect {
                    max_queue_wait_ms: gentle.then_some(MAX_QUEUE_WAIT_MS),
                    no_requeues: gentle,
                    retention_ms: o.soak.then_some(crate::soak::SOAK_RETENTION_MS),
                };
                finish_queue(&cluster, &rec, &shared, expect, &mut errors, &mut results).await
            }
            Workload::Register => finish_register(&cluster, &rec, &o.read_consistency, &mut errors, &mut results).await,
            Workload::Set => finish_set(&cluster, &rec, &mut errors, &mut results).await,
        }
    }
    if errors.is_empty() {
        compare_digests(&cluster, &mut errors, &mut results).await;
    }
    if let Some(samples) = soak_samples {
        let (soak_errors, summary) = crate::soak::check(&samples, o.time_limit.as_secs_f64());
        errors.extend(soak_errors);
        results["soak"] = summary;
    }
    let history = rec.history();
    for n in &o.nemeses {
        if installed.get(n.name()).copied().unwrap_or(0) == 0 {
            errors.push(format!("unknown: the {} nemesis was never installed (raise --time-limit)", n.name()));
        }
    }
    // The clients' own operations (not the final reads after heal).
    let clients = 1..=o.clients as u64;
    let oks = history.ops.iter().filter(|op| op.kind == Kind::Ok && clients.contains(&op.process)).count();
    if oks < 20 {
        errors.push(format!("unknown: only {oks} client operations succeeded, too few to say anything"));
    }
    for id in cluster.died() {
        errors.push(format!("node {id} exited on its own during the run (a crash nobody injected): see its log"));
    }
    results["snapshots"] = cluster_logs_check(&cluster, &mut errors);
    drop(cluster); // the last reference: kills every node
    results["ok_operations"] = json!(oks);
    results["operations"] = json!(history.ops.iter().filter(|op| op.kind == Kind::Invoke).count());
    results["seconds"] = json!(started.elapsed().as_secs_f64());
    results["valid"] = json!(errors.is_empty());
    results["errors"] = json!(errors);
    let _ = history.write_jsonl(&o.dir.join("history.jsonl"));
    let _ = std::fs::write(o.dir.join("results.json"), serde_json::to_string_pretty(&results).unwrap_or_default());
    let _ = std::fs::write(o.dir.join("timeline.svg"), crate::timeline::svg(&history, &name));
    RunOutcome { name, valid: errors.is_empty(), errors, results }
}

/// After heal, the nodes' state digests: nodes at one applied index must
/// have one digest. Background writes (node heartbeats) keep the index
/// moving, so it asks until every node answers at the same index.
async fn compare_digests(c: &Cluster, errors: &mut Vec<String>, results: &mut Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut at: BTreeMap<u64, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
        for (i, n) in c.nodes.iter().enumerate() {
            match c.call(i, "GET", "/debug/digest", &[], None, Duration::from_secs(5)).await {
                Reply::Answer { status: 200, body, .. } => {
                    let index = body["applied_index"].as_u64().unwrap_or(0);
                    let digest = body["digest"].as_str().unwrap_or("").to_string();
                    at.entry(index).or_default().entry(digest).or_default().push(n.id);
                }
                other => {
                    errors.push(format!("GET /debug/digest on node {}: {other:?}", n.id));
                    return;
                }
            }
        }
        for (index, digests) in &at {
            if digests.len() > 1 {
                errors.push(format!("state digests differ at applied index {index}: {digests:?}"));
                return;
            }
        }
        if let Some((index, digests)) = at.iter().next()
            && at.len() == 1
        {
            results["digest"] = json!({"applied_index": index, "digest": digests.keys().next()});
            return;
        }
        if Instant::now() > deadline {
            errors.push(format!("unknown: the nodes were never at one applied index in 30 s: {at:?}"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails the run on any panic in any node's log; counts the snapshots
/// built and installed (logs survive restarts, metrics do not).
fn cluster_logs_check(c: &Cluster, errors: &mut Vec<String>) -> Value {
    let (mut built, mut installed, mut rebuilt, mut refused) = (0, 0, 0, 0);
    for n in &c.nodes {
        let text = std::fs::read_to_string(&n.log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("panicked at")) {
            errors.push(format!("node {} panicked: {}", n.id, line.chars().take(300).collect::<String>()));
        }
        built += text.matches("snapshot built").count();
        installed += text.matches("snapshot installed").count();
        rebuilt += text.matches("current snapshot file is damaged").count();
        refused += text.matches("received snapshot refused before install").count();
    }
    json!({"built": built, "installed": installed, "damaged_rebuilt": rebuilt, "refused_before_install": refused})
}

/// State the clients share: idempotency keys whose submit was
/// indeterminate, to retry after heal.
#[derive(Default)]
struct Shared {
    unresolved: Mutex<Vec<String>>,
}

/// The history's process ids of the leader samplers (one per node).
const SAMPLER: u64 = 2_000_000;

/// Every 250 ms, which leader each node names: the timeline's bottom rows.
async fn sample_leaders(c: Arc<Cluster>, rec: Arc<Recorder>, deadline: Instant) {
    while Instant::now() < deadline {
        for i in 0..c.nodes.len() {
            let leader = match c.call(i, "GET", "/cluster/status", &[], None, Duration::from_millis(200)).await {
                Reply::Answer { status: 200, body, .. } => body["leader_id"].as_u64(),
                _ => None,
            };
            rec.record(SAMPLER + c.nodes[i].id, Kind::Ok, "leader", json!({"node": c.nodes[i].id, "leader": leader}));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Records an invocation and its completion from a reply: `ok` builds the
/// completion's value from an answer in 2xx.
fn complete(rec: &Recorder, p: u64, f: &str, invoke: &Value, reply: &Reply, ok: impl Fn(&Value) -> Value) -> Kind {
    let kind = classify(reply.outcome());
    let value = match (kind, reply) {
        (Kind::Ok, Reply::Answer { body, .. }) => ok(body),
        (_, Reply::Answer { status, body, .. }) => {
            let mut v = invoke.clone();
            v["status"] = json!(status);
            v["error"] = body["error"]["message"].clone();
            v
        }
        _ => {
            let mut v = invoke.clone();
            v["error"] = json!(format!("{:?}", reply.outcome()));
            v
        }
    };
    rec.record(p, kind, f, value);
    kind
}

async fn submit(c: &Cluster, rec: &Recorder, p: u64, node: usize, key: &str, ms: u64) -> Kind {
    submit_id(c, rec, p, node, key, ms).await.0
}

/// [`submit`], with the task id when acknowledged.
async fn submit_id(c: &Cluster, rec: &Recorder, p: u64, node: usize, key: &str, ms: u64) -> (Kind, Option<String>) {
    let invoke = json!({"key": key, "node": c.nodes[node].id});
    rec.record(p, Kind::Invoke, "submit", invoke.clone());
    let body = json!({"type": "sleep", "payload": {"ms": ms}, "idempotency_key": key, "max_attempts": 100});
    let reply = c.call(node, "POST", "/tasks/submit", &[], Some(&body), OP_TIMEOUT).await;
    let kind = complete(
        rec,
        p,
        "submit",
        &invoke,
        &reply,
        |b| json!({"key": key, "task": b["id"], "duplicate": b["duplicate"]}),
    );
    let id = match &reply {
        Reply::Answer { status: 200..=299, body, .. } => body["id"].as_str().map(str::to_string),
        _ => None,
    };
    (kind, id)
}

/// In a run whose faults never take a node away, the longest a probe task
/// may wait in `queued` (harness time, acknowledgement to leaving the
/// queue, as the submitting node shows it): the scheduler runs every
/// 10 ms and workers are free, so this leaves room for a loaded debug
/// build on 2 cores, not for a clock.
const MAX_QUEUE_WAIT_MS: u64 = 2_000;

/// The history's process id of the queue-wait probe.
pub const PROBE: u64 = 500_000;

/// How long the probe watches one task before it records it as stuck.
const PROBE_PATIENCE: Duration = Duration::from_secs(10);

/// Every 200 to 500 ms, a 1 ms task through a random node, then how long
/// (harness time, from the acknowledgement) until that node shows it left
/// `queued`: a `scheduled` op with `wait_ms`, or Info when it was still
/// queued after [`PROBE_PATIENCE`]. A node whose clock runs ahead or behind
/// must not delay its submissions (issue 13).
async fn probe(c: Arc<Cluster>, rec: Arc<Recorder>, s: Arc<Shared>, seed: u64, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0070_726f_6265);
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let node = rng.random_range(0..c.nodes.len());
        let key = format!("probe-{n}");
        let (kind, id) = submit_id(&c, &rec, PROBE, node, &key, 1).await;
        if kind == Kind::Info {
            s.unresolved.lock().expect("lock").push(key.clone());
        }
        if let Some(id) = id {
            let acked = Instant::now();
            let invoke = json!({"key": key, "task": id, "node": c.nodes[node].id});
            rec.record(PROBE, Kind::Invoke, "scheduled", invoke.clone());
            let path = format!("/tasks/{id}/status");
            let mut left = None;
            while acked.elapsed() < PROBE_PATIENCE {
                if let Reply::Answer { status: 200, body, .. } =
                    c.call(node, "GET", &path, &[], None, Duration::from_secs(1)).await
                    && body["state"].as_str().is_some_and(|st| st != "queued")
                {
                    left = Some(acked.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let mut done = invoke;
            match left {
                Some(wait) => {
                    done["wait_ms"] = json!(wait.as_millis() as u64);
                    rec.record(PROBE, Kind::Ok, "scheduled", done);
                }
                None => {
                    done["error"] = json!(format!("still queued after {} s", PROBE_PATIENCE.as_secs()));
                    rec.record(PROBE, Kind::Info, "scheduled", done);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..500))).await;
    }
}

/// Unique submits (sleep tasks of 20 to 300 ms) to random nodes, with
/// their idempotency keys; an indeterminate one is retried later with the
/// same key, sometimes during the faults and always after heal.
async fn queue_client(c: Arc<Cluster>, rec: Arc<Recorder>, s: Arc<Shared>, p: u64, seed: u64, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let node = rng.random_range(0..c.nodes.len());
        let retry = rng.random_bool(0.2).then(|| s.unresolved.lock().expect("lock").pop()).flatten();
        let retrying = retry.is_some();
        let key = retry.unwrap_or_else(|| {
            n += 1;
            format!("p{p}-{n}")
        });
        // A key stays unresolved until a submit with it is acknowledged: a
        // retry refused outright says nothing about the first attempt.
        let kind = submit(&c, &rec, p, node, &key, rng.random_range(20..300)).await;
        if kind == Kind::Info || (retrying && kind != Kind::Ok) {
            s.unresolved.lock().expect("lock").push(key);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..80))).await;
    }
}

/// Every task the cluster holds, as node `i` reads it, in the checker's
/// shape.
async fn read_tasks(c: &Cluster, i: usize) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(k) => format!("/tasks?limit=1000&cursor={k}"),
            None => "/tasks?limit=1000".to_string(),
        };
        let body = match c.call(i, "GET", &path, &[], None, Duration::from_secs(30)).await {
            Reply::Answer { status: 200, body, .. } => body,
            other => return Err(format!("GET {path} on node {}: {other:?}", c.nodes[i].id)),
        };
        for t in body["tasks"].as_array().into_iter().flatten() {
            let attempts: Vec<Value> = t["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    json!({
                        "epoch": a["epoch"],
                        "node": a["node_id"],
                        "ended_at_ms": a["ended_at_ms"],
                        "error": a["error"],
                        "lost": a["lost"],
                    })
                })
                .collect();
            out.push(json!({
                "task": t["id"],
                "key": t["idempotency_key"],
                "state": t["state"],
                "lease_epoch": t["lease_epoch"],
                "attempts": attempts,
            }));
        }
        match body["next_cursor"].as_str() {
            Some(k) => cursor = Some(k.to_string()),
            None => return Ok(out),
        }
    }
}

const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "dead_lettered"];

/// After heal: retry every unresolved submit with its key, wait for every
/// task to finish and every node to apply the same index, then read every
/// node's tasks (they must agree) and check.
async fn finish_queue(
    c: &Cluster,
    rec: &Recorder,
    s: &Shared,
    expect: crate::queue::Expect,
    errors: &mut Vec<String>,
    results: &mut Value,
) {
    let keys: Vec<String> = std::mem::take(&mut *s.unresolved.lock().expect("lock"));
    for key in keys {
        for attempt in 0..5 {
            if submit(c, rec, 0, attempt % c.nodes.len(), &key, 20).await == Kind::Ok {
                break;
            }
        }
    }
    // Node 0 reads its own applied state: first let it apply every submit
    // acknowledged so far (a retried submit may have gone through another
    // node a moment ago), or it could call the queue drained while it does
    // not list that task yet, and the final reads would catch it mid-run.
    if let Err(e) = wait_converged(c).await {
        errors.push(e);
        return;
    }
    let drained = c
        .wait(Duration::from_secs(180), "every task to finish", |c| async move {
            let tasks = read_tasks(c, 0).await.ok()?;
            tasks.iter().all(|t| TERMINAL.contains(&t["state"].as_str().unwrap_or(""))).then_some(())
        })
        .await;
    if let Err(e) = drained {
        errors.push(format!("{e} after heal"));
    }
    if let Err(e) = wait_converged(c).await {
        errors.push(e);
        return;
    }
    let mut reads = Vec::new();
    for i in 0..c.nodes.len() {
        match read_tasks(c, i).await {
            Ok(t) => reads.push(t),
            Err(e) => {
                errors.push(format!("final read: {e}"));
                return;
            }
        }
    }
    for (i, r) in reads.iter().enumerate().skip(1) {
        if *r != reads[0] {
            let differ = r.iter().zip(&reads[0]).find(|(a, b)| a != b);
            errors.push(format!(
                "node {}'s final read differs from node {}'s ({} and {} tasks; first difference: {differ:?})",
                c.nodes[i].id,
                c.nodes[0].id,
                r.len(),
                reads[0].len()
            ));
        }
    }
    rec.record(0, Kind::Ok, "read", json!({"tasks": reads[0]}));
    let mut stale = 0u64;
    for i in 0..c.nodes.len() {
        stale += metric(c, i, "synod_tasks_stale_reports_total").await.unwrap_or(0.0) as u64;
    }
    rec.record(0, Kind::Ok, "stale_reports", json!({"refused": stale}));
    if expect.retention_ms.is_some() {
        // Read after the final read (`/metrics` exports the replicated
        // counters as it answers): the count only grows, so it covers every
        // task purged before the read.
        let count = metric(c, 0, "synod_tasks_purged").await.unwrap_or(0.0);
        rec.record(0, Kind::Ok, "purged", json!({"count": count as u64}));
    }
    let report = crate::queue::check_with(&rec.history(), expect);
    errors.extend(report.errors.iter().cloned());
    results["queue"] = json!({
        "acknowledged": report.acknowledged,
        "succeeded": report.succeeded,
        "indeterminate_submits": report.indeterminate_submits,
        "executed_more_than_once": report.executed_more_than_once,
        "refused_completions": report.refused_completions,
        "requeued_attempts": report.requeued_attempts,
        "purged": report.purged,
        "tasks": reads[0].len(),
        "probes": report.probes,
        "probe_wait_p50_ms": report.probe_wait_p50_ms,
        "probe_wait_max_ms": report.probe_wait_max_ms,
    });
}

/// A counter summed over its label sets, from node `i`'s `/metrics`.
async fn metric(c: &Cluster, i: usize, name: &str) -> Option<f64> {
    // As admin: an anonymous scrape leaves out the per-tenant series.
    let raw = c.text(i, "/metrics").await.ok()?;
    Some(
        raw.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Waits until every node has applied the leader's commit index as it is
/// now (node heartbeats keep committing, so the indexes never stand
/// still; everything the final read depends on is below this one).
async fn wait_converged(c: &Cluster) -> Result<(), String> {
    let target = c
        .wait(Duration::from_secs(30), "a leader's commit index", |c| async move {
            let i = c.leader_index().await?;
            let (_, s) = c.get(i, "/cluster/status").await.ok()?;
            s["commit_index"].as_u64()
        })
        .await
        .map_err(|e| e.to_string())?;
    c.wait(Duration::from_secs(60), "every node to apply the leader's commit index", |c| async move {
        for i in 0..c.nodes.len() {
            let (_, s) = c.get(i, "/cluster/status").await.ok()?;
            if s["applied_index"].as_u64()? < target {
                return None;
            }
        }
        Some(())
    })
    .await
    .map_err(|e| e.to_string())
}

/// Reads, writes and compare-and-sets on the node records' labels (one
/// register per node record), each to a random node. A CAS expects the
/// version this client last saw for the key.
async fn register_client(
    c: Arc<Cluster>,
    rec: Arc<Recorder>,
    consistency: String,
    p: u64,
    seed: u64,
    deadline: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last_seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        let node = rng.random_range(0..c.nodes.len());
        let key = c.nodes[rng.random_range(0..c.nodes.len())].id;
        let roll = rng.random_range(0..100);
        if roll < 40 || !last_seen.contains_key(&key) {
            if let Ok(v) = register_read(&c, &rec, p, node, key, &consistency).await {
                last_seen.insert(key, v);
            }
        } else {
            n += 1;
            let value = format!("{p}-{n}");
            let expect = (roll >= 70).then(|| last_seen[&key]);
            if let Some(v) = register_write(&c, &rec, p, node, key, &value, expect).await {
                last_seen.insert(key, v);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..50))).await;
    }
}

/// A read of register `key` on node index `node`: its version, or what
/// came back instead.
async fn register_read(
    c: &Cluster,
    rec: &Recorder,
    p: u64,
    node: usize,
    key: u64,
    consistency: &str,
) -> Result<u64, String> {
    let invoke = json!({"key": key.to_string(), "node": c.nodes[node].id});
    rec.record(p, Kind::Invoke, "read", invoke.clone());
    let path = format!("/cluster/nodes/{key}?consistency={consistency}");
    let reply = c.call(node, "GET", &path, &[], None, OP_TIMEOUT).await;
    // A read changes nothing: one without an answer simply failed.
    let reply = if reply == Reply::NoAnswer { Reply::NotSent } else { reply };
    let kind = complete(
        rec,
        p,
        "read",
        &invoke,
        &reply,
        |b| json!({"key": key.to_string(), "value": b["labels"]["v"], "version": b["record_version"]}),
    );
    match (kind, reply) {
        (Kind::Ok, Reply::Answer { body, .. }) => {
            body["record_version"].as_u64().ok_or_else(|| format!("no version in {body}"))
        }
        (_, Reply::Answer { status, body, .. }) => Err(format!("{status} {body}")),
        (_, Reply::NotSent) => Err("connection refused".into()),
        (_, Reply::NoAnswer) => Err(format!("no answer within {OP_TIMEOUT:?}")),
    }
}

async fn register_write(
    c: &Cluster,
    rec: &Recorder,
    p: u64,
    node: usize,
    key: u64,
    value: &str,
    expect: Option<u64>,
) -> Option<u64> {
    let f = if expect.is_some() { "cas" } else { "write" };
    let mut invoke = json!({"key": key.to_string(), "value": value, "node": c.nodes[node].id});
    let mut headers = Vec::new();
    if let Some(e) = expect {
        invoke["expect"] = json!(e);
        headers.push(("If-Match", format!("\"{e}\"")));
    }
    rec.record(p, Kind::Invoke, f, invoke.clone());
    let path = format!("/cluster/nodes/{key}/labels");
    let reply = c.call(node, "PUT", &path, &headers, Some(&json!({"v": value})), OP_TIMEOUT).await;
    let kind = complete(
        rec,
        p,
        f,
        &invoke,
        &reply,
        |b| json!({"key": key.to_string(), "value": value, "version": b["record_version"]}),
    );
    match (kind, reply) {
        (Kind::Ok, Reply::Answer { body, .. }) => body["record_version"].as_u64(),
        // A refused CAS: read again before the next one.
        _ => None,
    }
}

/// After heal: a linearizable read of every register on every node, then
/// the check.
async fn finish_register(
    c: &Cluster,
    rec: &Recorder,
    consistency: &str,
    errors: &mut Vec<String>,
    results: &mut Value,
) {
    for i in 0..c.nodes.len() {
        for key in c.nodes.iter().map(|n| n.id) {
            if let Err(e) = register_read(c, rec, 0, i, key, consistency).await {
                errors.push(format!("final read of register {key} on node {} failed: {e}", c.nodes[i].id));
            }
        }
    }
    let report = crate::register::check(&rec.history());
    errors.extend(report.errors.iter().cloned());
    results["register"] = json!({
        "read_consistency": consistency,
        "reads": report.reads,
        "writes": report.writes,
        "cas_ok": report.cas_ok,
        "cas_refused": report.cas_refused,
        "indeterminate": report.indeterminate,
    });
}

/// The set workload's collection.
const COLLECTION: &str = "jepsen";

async fn create_collection(c: &Cluster) -> Result<(), String> {
    let body = json!({"name": COLLECTION, "dimension": 4, "metric": "l2"});
    c.wait(Duration::from_secs(30), "the set workload's collection", |c| {
        let body = body.clone();
        async move {
            match c.call(0, "POST", "/collections", &[], Some(&body), OP_TIMEOUT).await {
                Reply::Answer { status: 200 | 409, .. } => Some(()),
                _ => None,
            }
        }
    })
    .await
    .map_err(|e| e.to_string())
}

/// Unique point inserts to random nodes; now and then a linearizable
/// search, on another random node, for a point whose add has completed
/// (by its own vector and a filter on its id, so the answer is exact).
async fn set_client(c: Arc<Cluster>, rec: Arc<Recorder>, consistency: String, p: u64, seed: u64, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    let mut last: Option<(String, Vec<f32>)> = None;
    while Instant::now() < deadline {
        let node = rng.random_range(0..c.nodes.len());
        match &last {
            Some((id, vector)) if rng.random_bool(0.3) => {
                let invoke = json!({"id": id, "node": c.nodes[node].id});
                rec.record(p, Kind::Invoke, "search", invoke.clone());
                let body = json!({
                    "collection": COLLECTION, "vector": vector, "top_k": 1, "consistency": consistency,
                    "filter": {"must": [{"key": "id", "match": id}]},
                });
                let reply = c.call(node, "POST", "/vector/search", &[], Some(&body), OP_TIMEOUT).await;
                let reply = if reply == Reply::NoAnswer { Reply::NotSent } else { reply };
                complete(
                    &rec,
                    p,
                    "search",
                    &invoke,
                    &reply,
                    |b| json!({"id": id, "found": b["results"][0]["id"].as_str() == Some(id.as_str())}),
                );
            }
            _ => {
                n += 1;
                let id = format!("p{p}-{n}");
                let vector: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
                let invoke = json!({"id": id, "node": c.nodes[node].id});
                rec.record(p, Kind::Invoke, "add", invoke.clone());
                let body = json!({"points": [{"id": id, "vector": vector, "metadata": {"id": id}}]});
                let path = format!("/collections/{COLLECTION}/points");
                let reply = c.call(node, "POST", &path, &[], Some(&body), OP_TIMEOUT).await;
                if complete(&rec, p, "add", &invoke, &reply, |_| json!({"id": id})) == Kind::Ok {
                    last = Some((id, vector));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..50))).await;
    }
}

/// After heal: every node's copy of every attempted id, and its count.
async fn finish_set(c: &Cluster, rec: &Recorder, errors: &mut Vec<String>, results: &mut Value) {
    if let Err(e) = wait_converged(c).await {
        errors.push(e);
        return;
    }
    let ids: std::collections::BTreeSet<String> = rec
        .history()
        .ops
        .iter()
        .filter(|o| o.f == "add" && o.kind == Kind::Invoke)
        .filter_map(|o| o.value["id"].as_str().map(str::to_string))
        .collect();
    for i in 0..c.nodes.len() {
        let mut present = Vec::new();
        for id in &ids {
            let path = format!("/collections/{COLLECTION}/points/{id}");
            match c.call(i, "GET", &path, &[], None, Duration::from_secs(10)).await {
                Reply::Answer { status: 200, .. } => present.push(id.clone()),
                Reply::Answer { status: 404, .. } => {}
                other => {
                    errors.push(format!("final read of {id} on node {}: {other:?}", c.nodes[i].id));
                    return;
                }
            }
        }
        let count = match c.call(i, "GET", &format!("/collections/{COLLECTION}"), &[], None, OP_TIMEOUT).await {
            Reply::Answer { status: 200, body, .. } => body["points"].as_u64().unwrap_or(0),
            other => {
                errors.push(format!("final count on node {}: {other:?}", c.nodes[i].id));
                return;
            }
        };
        rec.record(0, Kind::Ok, "read", json!({"node": c.nodes[i].id, "present": present, "count": count}));
    }
    let report = crate::set::check(&rec.history(), c.nodes.len());
    errors.extend(report.errors.iter().cloned());
    results["set"] = json!({
        "acknowledged": report.acknowledged,
        "indeterminate": report.indeterminate,
        "indeterminate_present": report.indeterminate_present,
        "searches": report.searches,
    });
}

/// Loads a run's history back (for `check` on a saved folder).
pub fn load(dir: &std::path::Path) -> std::io::Result<History> {
    History::read_jsonl(&dir.join("history.jsonl"))
}
