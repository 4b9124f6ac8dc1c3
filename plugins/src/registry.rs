//! The [`Registry`]: task type → plugin, and the one place plugin code is
//! run (validated, bounded by a timeout, panics contained, measured).
//!
//! ```text
//!  execute(type, payload, ctx, timeout)
//!     │ unknown type ───────────────────────────────► UnknownType
//!     │ ctx.cancel already set ─────────────────────► Cancelled
//!     ▼
//!  spawn_blocking: validate ─ bad ──────────────────► InvalidInput
//!     │            run ─ Ok / Err(plugin's error) ──► as returned
//!     │                  panic ─────────────────────► Panicked   (+ panics_total)
//!     └ timeout elapses first: set ctx.cancel ──────► Timeout    (thread runs on
//!                                                                 until the plugin
//!                                                                 notices or returns)
//! ```

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{debug, error, warn};

use crate::demo::{EchoPlugin, FailPlugin, SleepPlugin};
use crate::pipeline::PipelinePlugin;
use crate::text::{NormalizePlugin, TokenizePlugin};
use crate::vectorize::{HASHING_MODEL, VectorizePlugin};
use crate::{CancelToken, Models, Plugin, PluginError, PluginInfo, RegisterError, TaskContext, metrics};

/// Longest plugin name.
pub const MAX_NAME_LEN: usize = 64;

type PluginMap = RwLock<BTreeMap<String, Arc<dyn Plugin>>>;

/// Task type → plugin. Cloning is cheap and every clone sees the same
/// plugins; registration and lookup are safe from any thread.
#[derive(Clone, Default)]
pub struct Registry {
    plugins: Arc<PluginMap>,
}

/// A handle on a [`Registry`] that does not keep it alive, for a plugin that
/// runs other plugins (`pipeline`): the registry owns that plugin, so a
/// strong handle would be a reference cycle and neither would ever be freed.
#[derive(Clone)]
pub(crate) struct WeakRegistry(Weak<PluginMap>);

impl WeakRegistry {
    /// The registry, unless every [`Registry`] clone has been dropped.
    pub(crate) fn upgrade(&self) -> Option<Registry> {
        self.0.upgrade().map(|plugins| Registry { plugins })
    }
}

/// Every built-in that stands alone, in name order: `echo`, `fail`,
/// `normalize`, `sleep`, `tokenize`, `vectorize`. The `pipeline` built-in
/// runs other plugins, so it needs a registry: [`Registry::with_builtins`]
/// adds it, or register [`PipelinePlugin::new`] yourself.
pub fn builtins() -> Vec<Arc<dyn Plugin>> {
    builtins_with_models(Arc::new(Models::none()), HASHING_MODEL)
}

/// [`builtins`] whose `vectorize` and `tokenize` use the node's `models`,
/// `vectorize` defaulting to `default_model`.
pub fn builtins_with_models(models: Arc<Models>, default_model: &str) -> Vec<Arc<dyn Plugin>> {
    vec![
        Arc::new(EchoPlugin),
        Arc::new(FailPlugin),
        Arc::new(NormalizePlugin),
        Arc::new(SleepPlugin),
        Arc::new(TokenizePlugin::new(models.clone())),
        Arc::new(VectorizePlugin::new(models, default_model)),
    ]
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry holding every built-in: those of [`builtins`] and
    /// `pipeline` ([`PipelinePlugin`]) over this registry.
    pub fn with_builtins() -> Self {
        Registry::with_models(Arc::new(Models::none()), HASHING_MODEL)
    }

    /// [`Registry::with_builtins`] over a node's models: see
    /// [`builtins_with_models`].
    pub fn with_models(models: Arc<Models>, default_model: &str) -> Self {
        let registry = Registry::new();
        for plugin in builtins_with_models(models, default_model) {
            registry.register(plugin).expect("built-in names are valid and distinct");
        }
        registry.register(Arc::new(PipelinePlugin::new(&registry))).expect("`pipeline` is a free, valid name");
        registry
    }

    /// A handle that does not keep this registry alive.
    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.plugins))
    }

    /// Adds `plugin` under `plugin.info().name`. A name already taken is
    /// refused (replacing a plugin under running tasks is a later, explicit
    /// operation), as is a name that cannot be a task type: 1 to 64 of
    /// `a-z 0-9 _ - .`, starting with a letter.
    pub fn register(&self, plugin: Arc<dyn Plugin>) -> Result<(), RegisterError> {
        let name = plugin.info().name;
        check_name(&name)?;
        match self.write().entry(name) {
            Entry::Occupied(e) => Err(RegisterError::AlreadyRegistered { name: e.key().clone() }),
            Entry::Vacant(e) => {
                e.insert(plugin);
                Ok(())
            }
        }
    }

    /// Adds `plugin`, or replaces the plugin of the same name unless that
    /// one is a built-in: how a loaded plugin's new version takes over. Tasks
    /// already running keep the old `Arc` until they finish.
    pub fn replace(&self, plugin: Arc<dyn Plugin>) -> Result<(), RegisterError> {
        let name = plugin.info().name;
        check_name(&name)?;
        let mut map = self.write();
        if let Some(old) = map.get(&name)
            && old.info().kind == "builtin"
        {
            return Err(RegisterError::AlreadyRegistered { name });
        }
        map.insert(name, plugin);
        Ok(())
    }

    /// Removes a loaded plugin; built-ins stay. Returns whether one was removed.
    pub fn unregister(&self, name: &str) -> bool {
        let mut map = self.write();
        match map.get(name) {
            Some(p) if p.info().kind != "builtin" => map.remove(name).is_some(),
            _ => false,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Plugin>> {
        self.read().get(name).cloned()
    }

    /// Every plugin's info, sorted by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        // Plugin code (info) runs outside the lock.
        let plugins: Vec<_> = self.read().values().cloned().collect();
        plugins.iter().map(|p| p.info()).collect()
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.read().keys().cloned().collect()
    }

    /// The submit-time check: `UnknownType` or `InvalidInput`. A panicking
    /// `validate` becomes `Panicked` instead of taking the caller down.
    pub fn validate(&self, task_type: &str, payload: &Value) -> Result<(), PluginError> {
        let plugin = self.get(task_type).ok_or_else(|| PluginError::UnknownType(task_type.to_owned()))?;
        match std::panic::catch_unwind(AssertUnwindSafe(|| plugin.validate(payload))) {
            Ok(result) => result.map_err(PluginError::InvalidInput),
            Err(panic) => {
                metrics::panicked(task_type);
                let message = panic_message(panic.as_ref());
                error!(plugin = task_type, panic = %message, "plugin panicked in validate");
                Err(PluginError::Panicked(message))
            }
        }
    }

    /// What a node needs to run this task besides the plugin: see
    /// [`Plugin::requirements`]. Empty for an unknown type or a bad payload
    /// (which [`Registry::validate`] refuses).
    pub fn requirements(&self, task_type: &str, payload: &Value) -> Vec<String> {
        let Some(plugin) = self.get(task_type) else { return Vec::new() };
        std::panic::catch_unwind(AssertUnwindSafe(|| plugin.requirements(payload))).unwrap_or_default()
    }

    /// Runs the task on tokio's blocking pool with a timeout (which includes
    /// any wait for a blocking thread). The payload is validated again first,
    /// since it may have been stored by an older build.
    ///
    /// A panicking plugin becomes [`PluginError::Panicked`]; the process and
    /// other tasks are unaffected. On timeout `ctx.cancel` is set and
    /// [`PluginError::Timeout`] returned; so it is when this future is
    /// dropped before the plugin returns, since nobody wants the result then.
    pub async fn execute(
        &self,
        task_type: &str,
        payload: Value,
        ctx: TaskContext,
        timeout: Duration,
    ) -> Result<Value, PluginError> {
        let plugin = self.get(task_type).ok_or_else(|| PluginError::UnknownType(task_type.to_owned()))?;
        let (task_id, attempt) = (ctx.task_id.clone(), ctx.attempt);
        let started = Instant::now();
        let result = run_bounded(plugin, payload, ctx, timeout).await;
        let took = started.elapsed();
        metrics::run_finished(task_type, &result, took);
        let took_ms = took.as_millis() as u64;
        match &result {
            Ok(_) => debug!(plugin = task_type, %task_id, attempt, took_ms, "plugin run succeeded"),
            Err(PluginError::Panicked(message)) => {
                metrics::panicked(task_type);
                error!(plugin = task_type, %task_id, attempt, took_ms, panic = %message, "plugin panicked");
            }
            Err(e @ PluginError::Timeout(_)) => {
                warn!(plugin = task_type, %task_id, attempt, took_ms, error = %e, "plugin run timed out")
            }
            Err(e) => debug!(plugin = task_type, %task_id, attempt, took_ms, error = %e, "plugin run failed"),
        }
        result
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<dyn Plugin>>> {
        // No plugin code runs under the lock, so a poisoned lock still holds
        // a consistent map.
        self.plugins.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<dyn Plugin>>> {
        self.plugins.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("plugins", &self.names()).finish()
    }
}

async fn run_bounded(
    plugin: Arc<dyn Plugin>,
    payload: Value,
    ctx: TaskContext,
    timeout: Duration,
) -> Result<Value, PluginError> {
    ctx.cancel.check()?;
    let guard = CancelOnDrop(Some(ctx.cancel.clone()));
    let handle = tokio::task::spawn_blocking(move || {
        plugin.validate(&payload).map_err(PluginError::InvalidInput)?;
        plugin.run(&payload, &ctx)
    });
    let result = match tokio::time::timeout(timeout, handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => match join_error.try_into_panic() {
            Ok(panic) => Err(PluginError::Panicked(panic_message(panic.as_ref()))),
            // A blocking task is only ever cancelled by a runtime shutdown.
            Err(_) => Err(PluginError::failed_retryable("the node is shutting down")),
        },
        Err(_elapsed) => return Err(PluginError::Timeout(timeout)), // the guard sets the token
    };
    guard.disarm();
    result
}

/// Sets the token when dropped armed: on timeout, and when the caller drops
/// the `execute` future, so a cooperative plugin stops working for nobody.
struct CancelOnDrop(Option<CancelToken>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.cancel();
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A name that can be a task type: 1 to 64 of `a-z 0-9 _ - .`, starting with a letter.
pub(crate) fn check_task_type(name: &str) -> Result<(), RegisterError> {
    check_name(name)
}

fn check_name(name: &str) -> Result<(), RegisterError> {
    let invalid = |reason| Err(RegisterError::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return invalid("must be 1 to 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid("must start with a lowercase ASCII letter");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')) {
        return invalid("may contain only a-z, 0-9, `_`, `-` and `.`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_task_types() {
        for ok in ["echo", "a", "openai.chat", "my-plugin_2", &"x".repeat(64)] {
            assert_eq!(check_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "Echo", "2fast", "has space", "ünicode", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn builtins_are_listed_in_name_order() {
        let names: Vec<_> = builtins().iter().map(|p| p.info().name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn the_pipeline_does_not_keep_its_registry_alive() {
        let registry = Registry::with_builtins();
        let pipeline = registry.get("pipeline").expect("with_builtins registers `pipeline`");
        let map = Arc::downgrade(&registry.plugins);
        drop(registry);
        assert!(map.upgrade().is_none(), "a reference cycle keeps the plugin map alive");
        drop(pipeline);
    }

    #[test]
    fn panic_message_reads_str_and_string_payloads() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42u8), "non-string panic payload");
    }
}
