//! The [`Plugin`] trait and what a plugin is given to run a task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;

use crate::PluginError;

/// What a plugin says about itself; `GET /plugins/list` shows it.
///
/// Serialized as is, so renaming a field is an API change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    /// The task type this plugin serves (`"vectorize"`); unique in a registry.
    pub name: String,
    /// Where the plugin comes from: `"builtin"` for now; later `"wasm"`,
    /// `"subprocess"`, `"external"`.
    pub kind: String,
    /// Changes when the plugin's output for a payload may change.
    pub version: String,
    /// One sentence for humans.
    pub description: String,
    /// The module's sha256, for a loaded (WASM or subprocess) plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl PluginInfo {
    /// The info of a built-in: versioned with this crate.
    pub(crate) fn builtin(name: &str, description: &str) -> Self {
        PluginInfo {
            name: name.to_owned(),
            kind: "builtin".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: description.to_owned(),
            sha256: None,
        }
    }
}

/// One version of a plugin loaded at run time (a WASM module, a subprocess
/// pool): what [`WasmPlugin`](crate::WasmPlugin) and
/// [`SubprocessPlugin`](crate::SubprocessPlugin) share about versions.
pub(crate) trait LoadedVersion {
    fn name(&self) -> &str;
    /// The admin's version label.
    fn label(&self) -> &str;
    fn description(&self) -> &str;
    fn sha256(&self) -> &str;
}

/// The info of a loaded plugin whose current version is `current`.
pub(crate) fn loaded_info(kind: &str, current: &impl LoadedVersion) -> PluginInfo {
    PluginInfo {
        name: current.name().to_owned(),
        kind: kind.to_owned(),
        version: current.label().to_owned(),
        description: current.description().to_owned(),
        sha256: Some(current.sha256().to_owned()),
    }
}

/// The version a task was submitted under (`wanted`, a sha256; `None` is
/// the current one), or a permanent failure saying it is gone.
pub(crate) fn pick_version<'a, V: LoadedVersion>(
    current: &'a Arc<V>,
    previous: &'a [Arc<V>],
    wanted: Option<&str>,
) -> Result<&'a Arc<V>, PluginError> {
    let Some(sha) = wanted else { return Ok(current) };
    std::iter::once(current).chain(previous).find(|v| v.sha256() == sha).ok_or_else(|| {
        PluginError::failed_permanent(format!(
            "plugin {} version {} is gone (unloaded or replaced too long ago); the current version is {} ({})",
            current.name(),
            &sha[..sha.len().min(12)],
            current.label(),
            &current.sha256()[..current.sha256().len().min(12)]
        ))
    })
}

/// A task type's implementation.
///
/// A plugin is shared by every task of its type and called from many threads
/// at once, so it holds no per-task state.
pub trait Plugin: Send + Sync + 'static {
    /// Name, kind, version and description. Called at registration and for
    /// listings; must be cheap and always return the same name.
    fn info(&self) -> PluginInfo;

    /// Cheap, synchronous check at submit time: malformed payloads are
    /// refused before anything is stored. The message is shown to the caller.
    fn validate(&self, payload: &Value) -> Result<(), String>;

    /// What a node needs, beyond this plugin, to run `payload`: capability
    /// strings such as `model:all-MiniLM-L6-v2`. The scheduler places the
    /// task only on nodes that advertise all of them. Called after
    /// [`Plugin::validate`] accepted the payload.
    fn requirements(&self, _payload: &Value) -> Vec<String> {
        Vec::new()
    }

    /// The work. Runs on a blocking thread; may take long; must be
    /// deterministic where the built-in says so. A long run polls
    /// `ctx.cancel` and returns [`PluginError::Cancelled`] when it is set.
    fn run(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError>;
}

/// The task a plugin runs for.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub task_id: String,
    pub tenant: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The plugin version (module sha256) that was current when the task was
    /// submitted, for plugins loaded at run time; `None` runs the current one.
    pub plugin_version: Option<String>,
    /// Set when the task is no longer wanted (cancel, timeout, lost lease).
    pub cancel: CancelToken,
}

impl TaskContext {
    /// A context with a fresh, unset cancel token.
    pub fn new(task_id: impl Into<String>, tenant: impl Into<String>, attempt: u32) -> Self {
        TaskContext {
            task_id: task_id.into(),
            tenant: tenant.into(),
            attempt,
            plugin_version: None,
            cancel: CancelToken::new(),
        }
    }
}

/// A cheap, cloneable flag: every clone sees the same state, and once set it
/// stays set. Long plugins poll [`CancelToken::is_cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Sets the flag for every clone.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `Err(Cancelled)` once set, for `?` in a plugin's loop.
    pub fn check(&self) -> Result<(), PluginError> {
        if self.is_cancelled() { Err(PluginError::Cancelled) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_is_seen_by_every_clone_and_sticks() {
        let token = CancelToken::new();
        let clone = token.clone();
        assert!(!clone.is_cancelled());
        assert_eq!(clone.check(), Ok(()));
        token.cancel();
        assert!(clone.is_cancelled());
        assert_eq!(clone.check(), Err(PluginError::Cancelled));
        token.cancel();
        assert!(token.is_cancelled());
    }

    #[test]
    fn context_starts_uncancelled() {
        let ctx = TaskContext::new("t-1", "acme", 1);
        assert_eq!((ctx.task_id.as_str(), ctx.tenant.as_str(), ctx.attempt), ("t-1", "acme", 1));
        assert!(!ctx.cancel.is_cancelled());
    }
}
