//! The worker against a real store, with apply() run in-process in place of
//! Raft and a stand-in for the leader's lease check.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use prost::Message;
use synod_config::Config;
use synod_plugins::Registry;
use synod_scheduler::{Host, now_ms};
use synod_store::pb::{self, TaskState, command::Kind};
use synod_store::{ApplyEntry, Store, StoreOptions};

/// One node whose proposals apply at once, stamped with its own clock.
struct Single {
    store: Store,
    plugins: Registry,
    config: Config,
    index: std::sync::Mutex<u64>,
    applied: tokio::sync::watch::Sender<u64>,
    pool: AtomicUsize,
    desired: AtomicUsize,
}

impl Single {
    fn apply(&self, kind: Kind) -> pb::CommandResult {
        let mut index = self.index.lock().expect("index lock");
        *index += 1;
        let cmd = pb::Command { format_version: 1, stamped_at_ms: now_ms(), kind: Some(kind) }.encode_to_vec();
        let log_id = format!("log-{index}").into_bytes();
        let entry = ApplyEntry { index: *index, log_id: &log_id, membership: None, command: Some(&cmd) };
        let r = self.store.apply(&[entry]).expect("apply").remove(0);
        self.applied.send_replace(*index);
        r
    }
}

impl Host for Single {
    fn node_id(&self) -> u64 {
        1
    }
    fn store(&self) -> &Store {
        &self.store
    }
    fn plugins(&self) -> &Registry {
        &self.plugins
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn is_leader(&self) -> bool {
        false
    }
    fn leader_term_applied(&self) -> Option<u64> {
        None
    }
    fn cluster_now_ms(&self) -> u64 {
        now_ms()
    }
    fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }
    async fn wait_applied(&self, seen: u64, max: Duration) {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|i| *i != seen)).await;
    }
    fn member_count(&self) -> usize {
        1
    }
    async fn propose(&self, kind: Kind) -> anyhow::Result<pb::CommandResult> {
        Ok(self.apply(kind))
    }
    async fn store_point(
        &self,
        _tenant: &str,
        _collection: &str,
        _point: synod_scheduler::VectorPoint,
    ) -> Result<(), synod_scheduler::StorePointError> {
        Err(synod_scheduler::StorePointError { message: "this test host stores no vectors".into(), retryable: false })
    }
    fn cpu_load(&self) -> f64 {
        0.0
    }
    fn pool_size(&self) -> &AtomicUsize {
        &self.pool
    }
    fn desired_nodes(&self) -> &AtomicUsize {
        &self.desired
    }
}

fn sleep_task(id: &str, ms: u64) -> pb::TaskSpec {
    pb::TaskSpec {
        id: id.into(),
        tenant: "acme".into(),
        task_type: "sleep".into(),
        payload: format!(r#"{{"ms":{ms}}}"#).into_bytes(),
        idempotency_key: id.into(),
        max_attempts: 1,
        timeout_ms: 30_000,
        ..Default::default()
    }
}

/// Issue 13, defect 7: a lease the leader placed on a node with no free
/// slot waited unrenewed, expired, and was requeued (an attempt burnt,
/// the task run late or, with `max_attempts` 1, dead-lettered). Here one
/// slot gets two leases of 600 ms, the first a 2 s task; the leader's
/// check (a checked requeue of every lease past its deadline, every 50 ms)
/// runs throughout. The waiting lease must be renewed and its task run
/// once, after the first. Control: a lease on a node with no worker is
/// requeued by the same check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_waiting_for_a_free_slot_is_renewed_and_runs_once() {
    const LEASE_MS: u64 = 600;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.scaling.task_lease = synod_config::Dur(Duration::from_millis(LEASE_MS));
    config.scaling.min_workers = 1;
    config.scaling.max_workers = 1;
    let node = Arc::new(Single {
        store: Store::open(dir.path(), &StoreOptions { fsync: false, ..Default::default() }).expect("store"),
        plugins: Registry::with_builtins(),
        config,
        index: std::sync::Mutex::new(0),
        applied: tokio::sync::watch::channel(0).0,
        pool: AtomicUsize::new(1),
        desired: AtomicUsize::new(0),
    });
    let tasks = vec![sleep_task("first", 2_000), sleep_task("waits", 10), sleep_task("orphan", 10)];
    node.apply(Kind::SubmitTasks(pb::SubmitTasks { tasks, max_queued: 0, max_storage_bytes: 0, placements: vec![] }));
    let assign = |id: &str, node_id: u64| pb::Assignment {
        tenant: "acme".into(),
        id: id.into(),
        node_id,
        lease_deadline_ms: 0,
        lease_ms: LEASE_MS,
    };
    let assignments = vec![assign("first", 1), assign("waits", 1), assign("orphan", 2)];
    node.apply(Kind::AssignTasks(pb::AssignTasks { assignments }));
    let worker = tokio::spawn(synod_scheduler::worker::run(node.clone()));

    let requeued = Arc::new(AtomicU64::new(0));
    let state = |id: &str| {
        let rec = node.store.get_task("acme", id).expect("read").expect("the task");
        (TaskState::try_from(rec.state).expect("a state"), rec)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The leader's lease check, as it proposes it: apply() refuses
        // the requeue of a lease that is still live.
        let now = now_ms();
        let expired: Vec<pb::TaskRef> = node
            .store
            .leased_tasks(None)
            .expect("leases")
            .into_iter()
            .filter(|l| l.entry.deadline_ms < now)
            .map(|l| pb::TaskRef { tenant: l.tenant, id: l.id, epoch: l.entry.epoch })
            .collect();
        if !expired.is_empty() {
            requeued.fetch_add(expired.len() as u64, Relaxed);
            node.apply(Kind::RequeueTasks(pb::RequeueTasks {
                tasks: expired,
                reason: pb::RequeueReason::LeaseExpired as i32,
                checked: true,
                node_silence_ms: 5_000,
                drain_deadline_ms: 60_000,
                max_lost: 10,
            }));
        }
        let done = [state("first").0, state("waits").0] == [TaskState::Succeeded, TaskState::Succeeded];
        if done && state("orphan").0 == TaskState::Queued {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first {:?}, waits {:?}, orphan {:?}",
            state("first"),
            state("waits"),
            state("orphan")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.abort();
    let (_, first) = state("first");
    let (_, waits) = state("waits");
    assert_eq!(waits.attempts.len(), 1, "the waiting task ran once, never requeued: {waits:?}");
    assert!(!waits.attempts[0].lost);
    assert!(
        waits.attempts[0].started_at_ms >= first.attempts[0].ended_at_ms,
        "it ran once the slot was free: {waits:?} after {first:?}"
    );
    let (_, orphan) = state("orphan");
    assert!(orphan.attempts.first().is_some_and(|a| a.lost), "control: an unrenewed lease was requeued: {orphan:?}");
}
