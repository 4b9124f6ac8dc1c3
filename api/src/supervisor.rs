//! Restarts a node's long-lived components (heartbeats, the leader's
//! duties and scheduling loop, the worker) when they panic or stop, with
//! exponential backoff, and reports restarts in `/health` and `/metrics`
//! (`synod_component_restarts_total{component}`).
//!
//! ```text
//!  spawn(name) ─► run ─► panicked / returned ─► restarts += 1 ─► sleep(backoff) ─► run ...
//!                 backoff: 100 ms doubling to 10 s; back to 100 ms after 60 s of health
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ComponentView {
    pub name: String,
    pub running: bool,
    pub restarts: u64,
    pub last_failure: Option<String>,
}

#[derive(Default)]
pub struct Supervisor {
    components: Mutex<BTreeMap<&'static str, ComponentView>>,
}

/// Aborts the wrapped task when dropped, so aborting a supervised component
/// also stops the run in flight (and a component's helpers stop with it).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Supervisor {
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor::default())
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut ComponentView)) {
        let mut map = self.components.lock().expect("supervisor lock is never poisoned");
        let entry = map.entry(name).or_insert_with(|| ComponentView { name: name.to_string(), ..Default::default() });
        f(entry);
    }

    /// Runs `make()` as component `name` until the returned handle is aborted.
    pub fn spawn<F, Fut>(self: &Arc<Self>, name: &'static str, make: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                this.update(name, |c| c.running = true);
                let started = Instant::now();
                let mut run = AbortOnDrop(tokio::spawn(make()));
                let outcome = match (&mut run.0).await {
                    Ok(()) => "stopped unexpectedly".to_string(),
                    Err(e) if e.is_panic() => {
                        let p = e.into_panic();
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".to_string());
                        format!("panicked: {msg}")
                    }
                    Err(_) => return,
                };
                if started.elapsed() > HEALTHY_AFTER {
                    backoff = FIRST_BACKOFF;
                }
                this.update(name, |c| {
                    c.running = false;
                    c.restarts += 1;
                    c.last_failure = Some(outcome.clone());
                });
                metrics::counter!("synod_component_restarts_total", "component" => name).increment(1);
                tracing::error!(component = name, failure = %outcome, backoff_ms = backoff.as_millis() as u64, "component failed; restarting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        })
    }

    pub fn components(&self) -> Vec<ComponentView> {
        self.components.lock().expect("supervisor lock is never poisoned").values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_panicking_component_is_restarted_and_reported() {
        let sup = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let handle = sup.spawn("flaky", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
                std::future::pending::<()>().await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "the component was not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let c = sup.components().into_iter().find(|c| c.name == "flaky").unwrap();
        assert_eq!(c.restarts, 2);
        assert!(c.running);
        assert!(c.last_failure.unwrap().contains("boom"));
        handle.abort();
    }

    #[tokio::test]
    async fn aborting_the_supervisor_stops_the_component() {
        let sup = Supervisor::new();
        let alive = Arc::new(AtomicU32::new(0));
        let a = alive.clone();
        let handle = sup.spawn("ticker", move || {
            let a = a.clone();
            async move {
                loop {
                    a.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle.abort();
        let _ = handle.await;
        let before = alive.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(alive.load(Ordering::SeqCst) <= before + 1, "the component kept running after abort");
    }
}
