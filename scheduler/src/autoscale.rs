//! The cluster autoscaler (leader only): from backlog and utilisation it
//! computes how many nodes the cluster should have, within
//! `scaling.min_nodes..=max_nodes`, shows it in `/cluster/status` and
//! `synod_cluster_desired_nodes`, and when it changes runs `scaling.hook`
//! with the number as its last argument (never more often than
//! `scaling.cooldown`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::Liveness;
use crate::host::{Host, liveness, now_ms, worker_slots};

/// Target share of worker slots in use.
const TARGET_UTILISATION: f64 = 0.8;

/// Desired node count from demand (queued + running tasks), the slots of
/// the live nodes, and their CPU load. Pure, for tests.
pub fn desired_nodes(
    demand: u64,
    live_nodes: usize,
    live_slots: u64,
    avg_cpu: f64,
    cpu_high: f64,
    min: usize,
    max: usize,
) -> usize {
    let per_node = if live_nodes == 0 { 1.0 } else { (live_slots as f64 / live_nodes as f64).max(1.0) };
    let mut want = (demand as f64 / (per_node * TARGET_UTILISATION)).ceil() as usize;
    // cpu_high = 1 turns the CPU rule off (a load average can exceed 1).
    if live_nodes > 0 && cpu_high < 1.0 && avg_cpu > cpu_high {
        want = want.max(live_nodes + 1);
    }
    want.clamp(min.max(1), max.max(min.max(1)))
}

pub async fn run<H: Host>(host: Arc<H>) {
    let sc = host.config().scaling.clone();
    let mut last_hook: Option<(usize, Instant)> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !host.is_leader() {
            host.desired_nodes().store(0, Relaxed);
            continue;
        }
        let Ok(records) = host.store().list_nodes() else { continue };
        let now = now_ms();
        let live: Vec<_> =
            records.iter().filter(|r| liveness(host.config(), r.last_heartbeat_ms, now) == Liveness::Alive).collect();
        let slots: u64 = live.iter().map(|r| u64::from(worker_slots(r))).sum();
        let avg_cpu = if live.is_empty() {
            0.0
        } else {
            live.iter().map(|r| r.load.map(|l| l.cpu_load).unwrap_or(0.0)).sum::<f64>() / live.len() as f64
        };
        let Ok(demand) = host.store().count_tasks(&["queued", "assigned", "running"]) else { continue };
        let desired = desired_nodes(demand, live.len(), slots, avg_cpu, sc.cpu_high, sc.min_nodes, sc.max_nodes);
        host.desired_nodes().store(desired, Relaxed);
        metrics::gauge!("synod_cluster_desired_nodes").set(desired as f64);
        let Some(hook) = &sc.hook else { continue };
        let due = match last_hook {
            None => true,
            Some((n, at)) => n != desired && at.elapsed() >= sc.cooldown.get(),
        };
        if !due {
            continue;
        }
        last_hook = Some((desired, Instant::now()));
        let line = format!("{hook} {desired}");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("sh").arg("-c").arg(&line).output(),
        )
        .await;
        let ok = matches!(&out, Ok(Ok(o)) if o.status.success());
        metrics::counter!("synod_cluster_scale_hook_runs_total", "outcome" => if ok { "ok" } else { "error" })
            .increment(1);
        match out {
            Ok(Ok(o)) if o.status.success() => tracing::info!(desired, hook = %line, "scale hook ran"),
            Ok(Ok(o)) => {
                tracing::warn!(desired, hook = %line, status = %o.status, stderr = %String::from_utf8_lossy(&o.stderr), "scale hook failed")
            }
            Ok(Err(e)) => tracing::warn!(desired, hook = %line, error = %e, "scale hook did not start"),
            Err(_) => tracing::warn!(desired, hook = %line, "scale hook timed out after 60 s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::desired_nodes;

    #[test]
    fn desired_nodes_follows_backlog_cpu_and_bounds() {
        // (demand, live nodes, live slots, avg cpu) -> desired, with min 1, max 7, cpu_high 0.85
        let table = [
            ((0, 3, 96, 0.1), 1),
            ((20, 3, 96, 0.1), 1),
            ((26, 1, 32, 0.1), 2),
            ((200, 3, 96, 0.1), 7),
            ((60, 3, 96, 0.1), 3),
            ((0, 3, 96, 0.95), 4),
            ((10, 0, 0, 0.0), 7),
        ];
        for ((demand, nodes, slots, cpu), want) in table {
            assert_eq!(desired_nodes(demand, nodes, slots, cpu, 0.85, 1, 7), want, "{demand} {nodes} {slots} {cpu}");
        }
        assert_eq!(desired_nodes(0, 3, 96, 0.1, 0.85, 2, 5), 2, "min bound");
        assert_eq!(desired_nodes(1000, 3, 96, 0.1, 0.85, 2, 5), 5, "max bound");
    }
}
