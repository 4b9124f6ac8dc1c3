//! Helpers: contexts, must_* runners, a closure-backed test plugin, vector
//! math, a recorder of metrics.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, LocalRecorderGuard, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::Value;
use synod_plugins::{Plugin, PluginError, PluginInfo, Registry, TaskContext};

pub const GENEROUS: Duration = Duration::from_secs(30);

pub fn ctx() -> TaskContext {
    TaskContext::new("task-1", "acme", 1)
}

/// Runs `task_type` with a generous timeout and panics unless it succeeds.
pub async fn must_execute(registry: &Registry, task_type: &str, payload: Value) -> Value {
    match registry.execute(task_type, payload.clone(), ctx(), GENEROUS).await {
        Ok(out) => out,
        Err(e) => panic!("{task_type} {payload} failed: {e:?}"),
    }
}

/// Runs `task_type` with a generous timeout and panics unless it fails.
pub async fn must_fail(registry: &Registry, task_type: &str, payload: Value) -> PluginError {
    match registry.execute(task_type, payload.clone(), ctx(), GENEROUS).await {
        Ok(out) => panic!("{task_type} {payload} should fail, returned {out}"),
        Err(e) => e,
    }
}

type RunFn = dyn Fn(&Value, &TaskContext) -> Result<Value, PluginError> + Send + Sync;

/// A plugin whose `run` is a closure; its payload is always valid.
pub struct FnPlugin {
    name: String,
    run: Box<RunFn>,
}

impl FnPlugin {
    pub fn new(
        name: &str,
        run: impl Fn(&Value, &TaskContext) -> Result<Value, PluginError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FnPlugin { name: name.to_owned(), run: Box::new(run) })
    }
}

impl Plugin for FnPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.name.clone(),
            kind: "test".to_owned(),
            version: "0".to_owned(),
            description: "closure-backed test plugin".to_owned(),
            sha256: None,
        }
    }

    fn validate(&self, _payload: &Value) -> Result<(), String> {
        Ok(())
    }

    fn run(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError> {
        (self.run)(payload, ctx)
    }
}

/// The `vector` of a `vectorize` output, panicking if it is not one.
pub fn vector_of(out: &Value) -> Vec<f32> {
    let array = out["vector"].as_array().unwrap_or_else(|| panic!("no `vector` array in {out}"));
    array.iter().map(|x| x.as_f64().unwrap_or_else(|| panic!("non-number {x} in vector")) as f32).collect()
}

pub fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of different dimension");
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    dot / (norm(a) * norm(b))
}

/// A metrics recorder that writes down every update as a line:
/// `synod_plugin_runs_total{outcome=ok,plugin=echo} +1`, labels sorted.
/// Install it for one thread with `metrics::with_local_recorder`.
#[derive(Clone, Default)]
pub struct MetricLog(Arc<Mutex<Vec<String>>>);

impl MetricLog {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("not poisoned").clone()
    }

    fn handle(&self, key: &Key) -> Arc<MetricHandle> {
        let mut labels: Vec<_> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        Arc::new(MetricHandle { key: format!("{}{{{}}}", key.name(), labels.join(",")), log: self.clone() })
    }
}

struct MetricHandle {
    key: String,
    log: MetricLog,
}

impl MetricHandle {
    fn push(&self, what: String) {
        self.log.0.lock().expect("not poisoned").push(format!("{} {what}", self.key));
    }
}

impl CounterFn for MetricHandle {
    fn increment(&self, value: u64) {
        self.push(format!("+{value}"));
    }
    fn absolute(&self, value: u64) {
        self.push(format!("={value}"));
    }
}

impl GaugeFn for MetricHandle {
    fn increment(&self, value: f64) {
        self.push(format!("+{value}"));
    }
    fn decrement(&self, value: f64) {
        self.push(format!("-{value}"));
    }
    fn set(&self, value: f64) {
        self.push(format!("={value}"));
    }
}

impl HistogramFn for MetricHandle {
    fn record(&self, _value: f64) {
        self.push("observed".to_owned());
    }
}

impl Recorder for MetricLog {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

/// Runs `task_type` on a current-thread runtime with `log` as the recorder
/// of the thread that polls `execute` and of the runtime's blocking threads,
/// where plugins run: metrics recorded anywhere in the run end up in `log`.
pub fn execute_recorded(
    log: &MetricLog,
    registry: &Registry,
    task_type: &str,
    payload: Value,
) -> Result<Value, PluginError> {
    thread_local! {
        static GUARD: RefCell<Option<LocalRecorderGuard<'static>>> = const { RefCell::new(None) };
    }
    // A guard needs a recorder that outlives the thread: one small leak per call.
    let for_threads: &'static MetricLog = Box::leak(Box::new(log.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(move || {
            GUARD.with(|g| *g.borrow_mut() = Some(metrics::set_default_local_recorder(for_threads)));
        })
        .on_thread_stop(|| GUARD.with(|g| drop(g.borrow_mut().take())))
        .build()
        .expect("a runtime");
    metrics::with_local_recorder(log, || runtime.block_on(registry.execute(task_type, payload, ctx(), GENEROUS)))
}

/// The models directory `make test` installs all-MiniLM-L6-v2 into
/// (`SYNOD_TEST_MODELS_DIR`). Tests that need the real model fail without it:
/// they test the model, so skipping would pass vacuously.
pub fn must_models_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("SYNOD_TEST_MODELS_DIR").unwrap_or_else(|| {
        panic!("SYNOD_TEST_MODELS_DIR is not set: run `make test`, or `make model` and export the directory it prints")
    });
    let dir = std::path::PathBuf::from(dir);
    assert!(
        dir.join("all-MiniLM-L6-v2").join(synod_plugins::MANIFEST_FILE).is_file(),
        "{} has no all-MiniLM-L6-v2: run `make model`",
        dir.display()
    );
    dir
}

/// `shared/testdata/minilm-reference.json`: sentence-transformers' vectors.
pub fn reference() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/minilm-reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the reference file is JSON")
}
