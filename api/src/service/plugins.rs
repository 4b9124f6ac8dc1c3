//! Plugins from every interface: the list (built-ins, loaded WASM and
//! subprocess plugins and the nodes where each is ready), loading and
//! unloading plugins cluster-wide, and the per-node loop that makes the
//! registry match what the store holds.
//!
//! ```text
//!  POST /plugins/load {manifest, module_base64}   manifest.kind: wasm (default) | subprocess
//!    ─► admin? ─► checked here: a WASM module compiles against the ABI; a subprocess
//!       manifest fits the limits (its executable need not be here): bad ─► 400, nothing stored
//!    ─► LoadPlugin (Raft): record + blob (the module; a subprocess plugin's manifest)
//!    ─► wait until applied here ─► sync here
//!  every node, every 500 ms: sync_plugins
//!    store.list_plugins() vs what is registered ─► build new versions ─► Registry::replace
//!    ─► unregister plugins no longer in the store
//!    ─► capabilities plugin:<name>@<sha256> for each version compiled here, and for a
//!       subprocess plugin only while its executable is in plugins.dir (heartbeat)
//!    ─► the scheduler places a task only where its version can run
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use synod_plugins::{
    SubprocessLimits, SubprocessManifest, SubprocessPlugin, WasmLimits, WasmManifest, WasmModule, WasmPlugin,
    check_subprocess_manifest, module_sha256, plugin_capability,
};
use synod_store::pb::{self, command::Kind, command_result::Outcome};

use crate::auth::AuthContext;
use crate::error::{ApiError, Result};
use crate::service::Node;

/// Replaced versions the cluster keeps for tasks submitted before a reload.
pub const KEEP_PREVIOUS: u32 = 2;

/// `POST /plugins/load`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// A [`WasmManifest`], or with `"kind": "subprocess"` a [`SubprocessManifest`].
    pub manifest: serde_json::Value,
    /// The module of a WASM plugin: a `.wasm` binary or `.wat` text,
    /// base64-encoded. None for a subprocess plugin.
    #[serde(default)]
    pub module_base64: Option<String>,
}

/// A plugin to load, checked for shape (not yet against the ABI or limits).
#[derive(Debug, Clone)]
pub enum LoadSpec {
    Wasm(WasmManifest, Vec<u8>),
    Subprocess(SubprocessManifest),
}

impl LoadSpec {
    /// From a manifest (its `kind` picks the type) and a module, from any interface.
    pub fn new(mut manifest: serde_json::Value, module: Option<Vec<u8>>) -> Result<LoadSpec> {
        let kind = match manifest.as_object_mut().map(|m| m.remove("kind")) {
            None => return Err(ApiError::InvalidArgument("manifest must be a JSON object".into())),
            Some(None) => "wasm".to_owned(),
            Some(Some(serde_json::Value::String(k))) => k,
            Some(Some(other)) => {
                return Err(ApiError::InvalidArgument(format!("manifest.kind {other} is not a string")));
            }
        };
        let bad = |e: serde_json::Error| ApiError::InvalidArgument(format!("manifest ({kind}): {e}"));
        match (kind.as_str(), module) {
            ("wasm", Some(module)) => Ok(LoadSpec::Wasm(serde_json::from_value(manifest).map_err(bad)?, module)),
            ("wasm", None) => Err(ApiError::InvalidArgument("a WASM plugin needs its module (module_base64)".into())),
            ("subprocess", None) => Ok(LoadSpec::Subprocess(serde_json::from_value(manifest).map_err(bad)?)),
            ("subprocess", Some(_)) => Err(ApiError::InvalidArgument(
                "a subprocess plugin has no module: its executable must be in plugins.dir on the nodes that run it"
                    .into(),
            )),
            (other, _) => Err(ApiError::InvalidArgument(format!("manifest.kind {other:?} is not wasm or subprocess"))),
        }
    }

    fn name(&self) -> &str {
        match self {
            LoadSpec::Wasm(m, _) => &m.name,
            LoadSpec::Subprocess(m) => &m.name,
        }
    }
}

/// One version of a plugin in listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: String,
    pub sha256: String,
    pub loaded_at_ms: u64,
    pub size: u64,
}

/// A plugin as `GET /plugins/list` and `GET /plugins/{name}` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    /// `builtin`, `wasm` or `subprocess`.
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

/// The node's subprocess plugin settings, from config.
pub fn subprocess_limits(cfg: &synod_config::Config) -> SubprocessLimits {
    let p = &cfg.plugins;
    SubprocessLimits {
        dir: p.dir.clone(),
        max_workers: p.subprocess_max_workers,
        max_output_bytes: p.subprocess_max_output.as_u64() as usize,
        max_payload_bytes: cfg.storage.max_payload_size.as_u64(),
        ..SubprocessLimits::default()
    }
}

impl LoadRequest {
    /// The plugin to load, with the module decoded.
    pub fn decode(self, node: &Node) -> Result<LoadSpec> {
        let max = node.cfg.plugins.wasm_max_module_size.as_u64() as usize;
        let module = match self.module_base64 {
            Some(text) if text.len() > max / 3 * 4 + 8 => return Err(too_large(max)),
            Some(text) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| ApiError::InvalidArgument(format!("module_base64 is not base64: {e}")))?,
            ),
            None => None,
        };
        LoadSpec::new(self.manifest, module)
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("the module is larger than plugins.wasm_max_module_size ({max} bytes)"))
}

pub async fn do_load_plugin(ctx: &AuthContext, node: &Node, spec: LoadSpec) -> Result<PluginView> {
    if let Some(p) = node.plugins.get(spec.name())
        && p.info().kind == "builtin"
    {
        return Err(ApiError::InvalidArgument(format!("`{}` is a built-in plugin's name", spec.name())));
    }
    let (name, kind, version, manifest, module) = match spec {
        LoadSpec::Wasm(manifest, module) => {
            let limits = wasm_limits(&node.cfg);
            if module.len() > limits.max_module_bytes {
                return Err(too_large(limits.max_module_bytes));
            }
            let (checked_manifest, bytes) = (manifest.clone(), module.clone());
            tokio::task::spawn_blocking(move || WasmModule::load(checked_manifest, &bytes, &limits))
                .await
                .map_err(|e| ApiError::Internal(format!("checking the module: {e}")))?
                .map_err(|e| ApiError::InvalidArgument(format!("module refused: {e}")))?;
            let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
            (manifest.name, "wasm", manifest.version, json, module)
        }
        LoadSpec::Subprocess(manifest) => {
            check_subprocess_manifest(&manifest, &subprocess_limits(&node.cfg))
                .map_err(|e| ApiError::InvalidArgument(format!("manifest refused: {e}")))?;
            // The manifest is the version's identity and its stored blob.
            let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
            (manifest.name, "subprocess", manifest.version, json.clone(), json)
        }
    };
    let sha256 = module_sha256(&module);
    crate::service::authn::audit("plugin_loaded", &ctx.subject, &format!("{name} {kind} {version} sha256 {sha256}"));
    let size = module.len() as u64;
    let version = pb::PluginVersion { version, sha256, manifest, loaded_at_ms: 0, size };
    let kind = Kind::LoadPlugin(pb::LoadPlugin {
        name,
        kind: kind.into(),
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
    crate::service::authn::audit("plugin_unloaded", &ctx.subject, name);
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
            None if compiled_declared(node, &info.name) => out.push(PluginView {
                nodes_ready: nodes_with(node, |i| {
                    info.sha256.as_ref().is_some_and(|s| i.capabilities.contains(&plugin_capability(&info.name, s)))
                }),
                name: info.name,
                kind: info.kind,
                version: info.version,
                description: info.description,
                sha256: info.sha256,
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

/// An embedding model as `GET /models` shows it: the live nodes that have it
/// installed (and so run tasks needing it), and this node's install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelView {
    pub name: String,
    pub nodes_ready: Vec<u64>,
    /// This node's install (dimension, sha256, state), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub here: Option<serde_json::Value>,
}

pub fn do_list_models(_ctx: &AuthContext, node: &Node) -> Result<Vec<ModelView>> {
    let infos = node.live_infos()?;
    let mut ready: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for info in &infos {
        for name in info.capabilities.iter().filter_map(|c| c.strip_prefix("model:")) {
            ready.entry(name.to_owned()).or_default().insert(info.id);
        }
    }
    let mut here: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for m in node.models.list() {
        ready.entry(m.name.clone()).or_default();
        here.insert(m.name.clone(), serde_json::to_value(&m).map_err(|e| ApiError::Internal(e.to_string()))?);
    }
    Ok(ready
        .into_iter()
        .map(|(name, nodes)| ModelView { here: here.remove(&name), nodes_ready: nodes.into_iter().collect(), name })
        .collect())
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

/// Whether `name` is a subprocess plugin declared in this node's config.
fn compiled_declared(node: &Node, name: &str) -> bool {
    node.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).declared.contains_key(name)
}

/// Live nodes whose registry info passes `has`, in id order.
fn nodes_with(node: &Node, has: impl Fn(&pb::NodeInfo) -> bool) -> Vec<u64> {
    let infos = node.live_infos().unwrap_or_default();
    infos.iter().filter(|i| has(i)).map(|i| i.id).collect::<BTreeSet<u64>>().into_iter().collect()
}

/// Waits (at most `max`) until this node has applied `index`; a timeout only
/// means the sync loop picks the change up a little later.
async fn wait_applied(node: &Node, index: u64, max: Duration) {
    node.raft.wait_applied(index, max).await;
}

/// What this node has built from the store: plugin name → version sha256s,
/// and which subprocess plugins can run here.
#[derive(Debug, Default)]
pub struct Compiled {
    versions: BTreeMap<String, BTreeSet<String>>,
    /// Versions that failed to compile here, so they are not retried each round.
    failed: BTreeSet<String>,
    /// Subprocess plugins (loaded, and declared in this node's config), by
    /// name, with whether their executable is here, as of the last sync.
    subprocess: BTreeMap<String, (Arc<SubprocessPlugin>, bool)>,
    /// Declared in config; kept when the store has no plugin of the name.
    declared: BTreeMap<String, Arc<SubprocessPlugin>>,
}

impl Compiled {
    /// `plugin:<name>@<sha256>` for every version that can run here.
    pub fn capabilities(&self) -> Vec<String> {
        let runnable = |name: &String| self.subprocess.get(name).is_none_or(|(_, ready)| *ready);
        let mut caps: Vec<String> = self
            .versions
            .iter()
            .filter(|(name, _)| runnable(name))
            .flat_map(|(name, shas)| shas.iter().map(move |s| plugin_capability(name, s)))
            .collect();
        for (name, (p, ready)) in &self.subprocess {
            if *ready && !self.versions.contains_key(name) {
                caps.push(plugin_capability(name, p.sha256()));
            }
        }
        caps
    }
}

/// Registers the subprocess plugins declared in `plugins.subprocess`; a
/// declaration that does not fit the limits stops the node with its reason.
pub fn declare_subprocess_plugins(
    cfg: &synod_config::Config,
    registry: &synod_plugins::Registry,
    compiled: &std::sync::Mutex<Compiled>,
) -> anyhow::Result<()> {
    let limits = subprocess_limits(cfg);
    let mut state = compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (i, entry) in cfg.plugins.subprocess.iter().enumerate() {
        let manifest = SubprocessManifest {
            name: entry.name.clone(),
            version: "config".to_owned(),
            description: format!("declared in plugins.subprocess[{i}]"),
            command: entry.command.clone(),
            args: entry.args.clone(),
            workers: Some(entry.workers),
            timeout_ms: Some(entry.timeout.get().as_millis() as u64),
            max_payload_bytes: None,
        };
        check_subprocess_manifest(&manifest, &limits).map_err(|e| anyhow::anyhow!("plugins.subprocess[{i}]: {e}"))?;
        let sha = module_sha256(&serde_json::to_vec(&manifest).expect("a manifest serializes"));
        let plugin = Arc::new(SubprocessPlugin::new(vec![(manifest, sha)], &limits).map_err(anyhow::Error::msg)?);
        registry.register(plugin.clone()).map_err(|e| anyhow::anyhow!("plugins.subprocess[{i}]: {e}"))?;
        let ready = plugin.ready().is_ok();
        state.subprocess.insert(entry.name.clone(), (plugin.clone(), ready));
        state.declared.insert(entry.name.clone(), plugin);
    }
    Ok(())
}

/// Runs [`sync_plugins`] on the blocking pool.
pub async fn sync_now(node: &Node) {
    let store = node.raft.store.clone();
    let registry = node.plugins.clone();
    let compiled = node.compiled.clone();
    let limits = (wasm_limits(&node.cfg), subprocess_limits(&node.cfg));
    let _ = tokio::task::spawn_blocking(move || sync_plugins(&store, &registry, &compiled, &limits)).await;
}

/// Makes this node's registry match the plugins in its store: builds new
/// versions, replaces changed plugins, unregisters unloaded ones, and notes
/// which subprocess plugins have their executable here.
pub fn sync_plugins(
    store: &synod_store::Store,
    registry: &synod_plugins::Registry,
    compiled: &std::sync::Mutex<Compiled>,
    limits: &(WasmLimits, SubprocessLimits),
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
        state.versions.remove(&name);
        state.subprocess.remove(&name);
        match state.declared.get(&name).cloned() {
            Some(declared) => {
                // The config's declaration serves the name again.
                let ready = declared.ready().is_ok();
                let _ = registry.replace(declared.clone());
                state.subprocess.insert(name.clone(), (declared, ready));
            }
            None => {
                registry.unregister(&name);
            }
        }
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
        let built = match rec.kind.as_str() {
            "subprocess" => build_subprocess(rec, &limits.1).map(|p| {
                let ready = p.ready().is_ok();
                state.subprocess.insert(rec.name.clone(), (p.clone(), ready));
                (p as Arc<dyn synod_plugins::Plugin>, shas)
            }),
            _ => build_wasm(store, rec, &limits.0).map(|(p, ok)| (Arc::new(p) as Arc<dyn synod_plugins::Plugin>, ok)),
        };
        let (plugin, ok) = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::error!(plugin = %rec.name, sha256 = %current.sha256, error = %e, "plugin does not load on this node");
                state.failed.insert(current.sha256.clone());
                continue;
            }
        };
        if rec.kind != "subprocess" {
            state.subprocess.remove(&rec.name);
        }
        match registry.replace(plugin) {
            Ok(()) => {
                tracing::info!(plugin = %rec.name, kind = %rec.kind, version = %current.version, sha256 = %current.sha256, "plugin ready");
                state.versions.insert(rec.name.clone(), ok);
            }
            Err(e) => tracing::error!(plugin = %rec.name, error = %e, "plugin not registered"),
        }
    }
    for (name, (plugin, ready)) in state.subprocess.iter_mut() {
        let now = plugin.ready();
        if now.is_ok() != *ready {
            match &now {
                Ok(()) => tracing::info!(plugin = %name, "subprocess plugin's executable found; advertising it"),
                Err(why) => tracing::warn!(plugin = %name, %why, "subprocess plugin cannot run on this node"),
            }
            *ready = now.is_ok();
        }
    }
}

/// A WASM plugin's current version and the kept ones that compile here.
fn build_wasm(
    store: &synod_store::Store,
    rec: &pb::PluginRecord,
    limits: &WasmLimits,
) -> std::result::Result<(WasmPlugin, BTreeSet<String>), String> {
    let current = rec.current.as_ref().ok_or("no current version")?;
    let mut modules = Vec::new();
    let mut ok = BTreeSet::new();
    for v in rec.current.iter().chain(&rec.previous) {
        match compile(store, &rec.name, v, limits) {
            Ok(m) => {
                ok.insert(v.sha256.clone());
                modules.push(Arc::new(m));
            }
            Err(e) if v.sha256 == current.sha256 => return Err(e),
            Err(e) => {
                tracing::warn!(plugin = %rec.name, sha256 = %v.sha256, error = %e, "older plugin version does not load here")
            }
        }
    }
    let current_module = modules.remove(0);
    Ok((WasmPlugin::new(current_module, modules), ok))
}

/// A subprocess plugin of every kept version's manifest. Its executable may
/// be missing here: the plugin is then registered (submits validate) but
/// not advertised.
fn build_subprocess(
    rec: &pb::PluginRecord,
    limits: &SubprocessLimits,
) -> std::result::Result<Arc<SubprocessPlugin>, String> {
    let versions = rec
        .current
        .iter()
        .chain(&rec.previous)
        .map(|v| {
            let m: SubprocessManifest = serde_json::from_slice(&v.manifest).map_err(|e| format!("manifest: {e}"))?;
            Ok((m, v.sha256.clone()))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    SubprocessPlugin::new(versions, limits).map(Arc::new)
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
