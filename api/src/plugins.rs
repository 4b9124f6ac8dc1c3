//! Plugins from every interface: the list (built-ins, loaded WASM plugins and
//! the nodes where each is ready), loading and unloading WASM plugins
//! cluster-wide, and the per-node loop that compiles what the store holds.
//!
//! ```text
//!  POST /plugins/load {manifest, module_base64}
//!    ─► admin? ─► WasmModule::load here (ABI, imports, limits): bad ─► 400, nothing stored
//!    ─► LoadPlugin (Raft): record + module blob ─► wait until applied here ─► sync here
//!  every node, every 500 ms and after a snapshot: sync_plugins
//!    store.list_plugins() vs what is compiled ─► compile new versions ─► Registry::replace
//!    ─► unregister plugins no longer in the store ─► capabilities plugin:<name>@<sha256>
//!       (heartbeat) ─► the scheduler places a task only where its version is compiled
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use synod_plugins::{WasmLimits, WasmManifest, WasmModule, WasmPlugin, plugin_capability};
use synod_store::pb::{self, command::Kind, command_result::Outcome};

use crate::auth::AuthContext;
use crate::error::{ApiError, Result};
use crate::service::Node;

/// Replaced versions the cluster keeps for tasks submitted before a reload.
pub const KEEP_PREVIOUS: u32 = 2;

/// `POST /plugins/load`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    pub manifest: WasmManifest,
    /// The module: a `.wasm` binary or `.wat` text, base64-encoded.
    pub module_base64: String,
}

/// One version of a plugin in listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub version: String,
    pub sha256: String,
    pub loaded_at_ms: u64,
    pub size: u64,
}

/// A plugin as `GET /plugins/list` and `GET /plugins/{name}` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginView {
    pub name: String,
    /// `builtin` or `wasm`.
    pub kind: String,
    pub version: String,
    pub description: String,
    /// The current module's sha256 (loaded plugins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Live nodes where the current version is ready to run.
    pub nodes_ready: Vec<u64>,
    /// The manifest (loaded plugins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
    /// Replaced versions still kept, newest first (loaded plugins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<VersionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at_ms: Option<u64>,
}

/// The node's WASM ceilings, from config.
pub fn wasm_limits(cfg: &synod_config::Config) -> WasmLimits {
    let p = &cfg.plugins;
    WasmLimits {
        max_module_bytes: p.wasm_max_module_size.as_u64() as usize,
        max_fuel: p.wasm_fuel,
        max_memory_bytes: p.wasm_max_memory.as_u64(),
        max_output_bytes: p.wasm_max_output.as_u64() as usize,
        max_payload_bytes: cfg.storage.max_payload_size.as_u64(),
        max_timeout: p.wasm_max_timeout.get(),
        allowed_permissions: p.wasm_allowed_permissions.iter().cloned().collect(),
    }
}

impl LoadRequest {
    /// The manifest and the module's bytes.
    pub fn decode(self, node: &Node) -> Result<(WasmManifest, Vec<u8>)> {
        let max = node.cfg.plugins.wasm_max_module_size.as_u64() as usize;
        if self.module_base64.len() > max / 3 * 4 + 8 {
            return Err(too_large(max));
        }
        let module = base64::engine::general_purpose::STANDARD
            .decode(self.module_base64.trim())
            .map_err(|e| ApiError::InvalidArgument(format!("module_base64 is not base64: {e}")))?;
        Ok((self.manifest, module))
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("the module is larger than plugins.wasm_max_module_size ({max} bytes)"))
}

pub async fn do_load_plugin(
    ctx: &AuthContext,
    node: &Node,
    manifest: WasmManifest,
    module: Vec<u8>,
) -> Result<PluginView> {
    ctx.require_admin()?;
    let limits = wasm_limits(&node.cfg);
    if module.len() > limits.max_module_bytes {
        return Err(too_large(limits.max_module_bytes));
    }
    if let Some(p) = node.plugins.get(&manifest.name)
        && p.info().kind == "builtin"
    {
        return Err(ApiError::InvalidArgument(format!("`{}` is a built-in plugin's name", manifest.name)));
    }
    let (checked_manifest, bytes) = (manifest.clone(), module.clone());
    let loaded = tokio::task::spawn_blocking(move || WasmModule::load(checked_manifest, &bytes, &limits))
        .await
        .map_err(|e| ApiError::Internal(format!("checking the module: {e}")))?
        .map_err(|e| ApiError::InvalidArgument(format!("module refused: {e}")))?;
    crate::identity::audit(
        "plugin_loaded",
        &ctx.subject,
        &format!("{} {} sha256 {}", manifest.name, manifest.version, loaded.sha256()),
    );
    let version = pb::PluginVersion {
        version: manifest.version.clone(),
        sha256: loaded.sha256().to_owned(),
        manifest: serde_json::to_vec(&manifest).expect("a manifest serializes"),
        loaded_at_ms: 0,
        size: module.len() as u64,
    };
    let kind = Kind::LoadPlugin(pb::LoadPlugin {
        name: manifest.name.clone(),
        kind: "wasm".into(),
        version: Some(version),
        module,
        keep_previous: KEEP_PREVIOUS,
    });
    let (outcome, index) = node.propose(kind).await?;
    let Outcome::Plugin(rec) = outcome else {
        return Err(ApiError::Internal(format!("unexpected load outcome {outcome:?}")));
    };
    // Ready here before answering, so a task submitted through this node next works.
    wait_applied(node, index, Duration::from_secs(10)).await;
    sync_now(node).await;
    Ok(record_view(node, &rec))
}

pub async fn do_unload_plugin(ctx: &AuthContext, node: &Node, name: &str) -> Result<()> {
    ctx.require_admin()?;
    crate::identity::audit("plugin_unloaded", &ctx.subject, name);
    let (_, index) = node.propose(Kind::UnloadPlugin(pb::UnloadPlugin { name: name.to_owned() })).await?;
    wait_applied(node, index, Duration::from_secs(10)).await;
    sync_now(node).await;
    Ok(())
}

pub fn do_list_plugins(_ctx: &AuthContext, node: &Node) -> Result<Vec<PluginView>> {
    let loaded: BTreeMap<String, pb::PluginRecord> =
        node.raft.store.list_plugins()?.into_iter().map(|r| (r.name.clone(), r)).collect();
    let mut out = Vec::new();
    for info in node.plugins.list() {
        match loaded.get(&info.name) {
            Some(rec) => out.push(record_view(node, rec)),
            None if info.kind == "builtin" => out.push(PluginView {
                nodes_ready: nodes_with(node, |i| i.task_types.contains(&info.name)),
                name: info.name,
                kind: info.kind,
                version: info.version,
                description: info.description,
                sha256: None,
                manifest: None,
                previous: Vec::new(),
                loaded_at_ms: None,
            }),
            None => {} // unloaded from the store, not yet from this node's registry
        }
    }
    // Loaded in the store but not (yet, or not compilable) on this node.
    for (name, rec) in &loaded {
        if !out.iter().any(|p| &p.name == name) {
            out.push(record_view(node, rec));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn do_get_plugin(ctx: &AuthContext, node: &Node, name: &str) -> Result<PluginView> {
    do_list_plugins(ctx, node)?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin {name}")))
}

fn record_view(node: &Node, rec: &pb::PluginRecord) -> PluginView {
    let current = rec.current.clone().unwrap_or_default();
    let manifest: Option<serde_json::Value> = serde_json::from_slice(&current.manifest).ok();
    let description = manifest.as_ref().and_then(|m| m["description"].as_str()).unwrap_or_default().to_owned();
    let capability = plugin_capability(&rec.name, &current.sha256);
    PluginView {
        name: rec.name.clone(),
        kind: rec.kind.clone(),
        version: current.version.clone(),
        description,
        sha256: Some(current.sha256.clone()),
        nodes_ready: nodes_with(node, |i| i.capabilities.contains(&capability)),
        manifest,
        previous: rec
            .previous
            .iter()
            .map(|v| VersionView {
                version: v.version.clone(),
                sha256: v.sha256.clone(),
                loaded_at_ms: v.loaded_at_ms,
                size: v.size,
            })
            .collect(),
        loaded_at_ms: Some(current.loaded_at_ms),
    }
}

/// Live nodes whose registry info passes `has`, in id order.
fn nodes_with(node: &Node, has: impl Fn(&pb::NodeInfo) -> bool) -> Vec<u64> {
    let infos = node.live_infos().unwrap_or_default();
    infos.iter().filter(|i| has(i)).map(|i| i.id).collect::<BTreeSet<u64>>().into_iter().collect()
}

/// Waits (at most `max`) until this node has applied `index`; a timeout only
/// means the sync loop picks the change up a little later.
async fn wait_applied(node: &Node, index: u64, max: Duration) {
    let _ = node.raft.raft.wait(Some(max)).applied_index_at_least(Some(index), "a plugin change").await;
}

/// What this node has compiled: plugin name → module sha256s.
#[derive(Debug, Default)]
pub struct Compiled {
    versions: BTreeMap<String, BTreeSet<String>>,
    /// Versions that failed to compile here, so they are not retried each round.
    failed: BTreeSet<String>,
}

impl Compiled {
    /// `plugin:<name>@<sha256>` for every version compiled here.
    pub fn capabilities(&self) -> Vec<String> {
        self.versions.iter().flat_map(|(name, shas)| shas.iter().map(move |s| plugin_capability(name, s))).collect()
    }
}

/// Runs [`sync_plugins`] on the blocking pool.
pub async fn sync_now(node: &Node) {
    let store = node.raft.store.clone();
    let registry = node.plugins.clone();
    let compiled = node.compiled.clone();
    let limits = wasm_limits(&node.cfg);
    let _ = tokio::task::spawn_blocking(move || sync_plugins(&store, &registry, &compiled, &limits)).await;
}

/// Makes this node's registry match the plugins in its store: compiles new
/// versions, replaces changed plugins, unregisters unloaded ones.
pub fn sync_plugins(
    store: &synod_store::Store,
    registry: &synod_plugins::Registry,
    compiled: &std::sync::Mutex<Compiled>,
    limits: &WasmLimits,
) {
    let records = match store.list_plugins() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading loaded plugins");
            return;
        }
    };
    let mut state = compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let wanted: BTreeSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    let gone: Vec<String> = state.versions.keys().filter(|n| !wanted.contains(n.as_str())).cloned().collect();
    for name in gone {
        registry.unregister(&name);
        state.versions.remove(&name);
        tracing::info!(plugin = %name, "plugin unloaded");
    }
    for rec in &records {
        let shas: BTreeSet<String> = rec.current.iter().chain(&rec.previous).map(|v| v.sha256.clone()).collect();
        if state.versions.get(&rec.name) == Some(&shas) {
            continue;
        }
        let Some(current) = rec.current.as_ref() else { continue };
        if state.failed.contains(&current.sha256) {
            continue;
        }
        let mut modules = Vec::new();
        let mut ok = BTreeSet::new();
        for v in rec.current.iter().chain(&rec.previous) {
            match compile(store, &rec.name, v, limits) {
                Ok(m) => {
                    ok.insert(v.sha256.clone());
                    modules.push(Arc::new(m));
                }
                Err(e) if v.sha256 == current.sha256 => {
                    tracing::error!(plugin = %rec.name, sha256 = %v.sha256, error = %e, "plugin does not load on this node");
                    state.failed.insert(v.sha256.clone());
                    break;
                }
                Err(e) => {
                    tracing::warn!(plugin = %rec.name, sha256 = %v.sha256, error = %e, "older plugin version does not load here")
                }
            }
        }
        if modules.first().is_none_or(|m| m.sha256() != current.sha256) {
            continue;
        }
        let current_module = modules.remove(0);
        let plugin = WasmPlugin::new(current_module, modules);
        match registry.replace(Arc::new(plugin)) {
            Ok(()) => {
                tracing::info!(plugin = %rec.name, version = %current.version, sha256 = %current.sha256, "plugin ready");
                state.versions.insert(rec.name.clone(), ok);
            }
            Err(e) => tracing::error!(plugin = %rec.name, error = %e, "plugin not registered"),
        }
    }
}

fn compile(
    store: &synod_store::Store,
    name: &str,
    v: &pb::PluginVersion,
    limits: &WasmLimits,
) -> std::result::Result<WasmModule, String> {
    let bytes = store
        .plugin_module(name, &v.sha256)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "its module is missing from the store".to_owned())?;
    let manifest: WasmManifest = serde_json::from_slice(&v.manifest).map_err(|e| format!("manifest: {e}"))?;
    WasmModule::load(manifest, &bytes, limits)
}
