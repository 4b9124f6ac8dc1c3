//! Helpers: contexts, must_* runners, a closure-backed test plugin, vector math.

use std::sync::Arc;
use std::time::Duration;

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
