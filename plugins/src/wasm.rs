//! Custom plugins in WebAssembly, run in a sandbox by wasmi.
//!
//! The ABI (version 1), JSON in and JSON out; a module:
//!
//! ```text
//!  exports  memory                              its linear memory
//!           synod_alloc(len: i32) -> i32        room for `len` input bytes; returns the address
//!           synod_run(ptr: i32, len: i32) -> i64
//!                                               the payload (UTF-8 JSON) is at ptr..ptr+len;
//!                                               returns (out_ptr << 32) | out_len, the result
//!                                               as UTF-8 JSON; with bit 63 set, the bytes are
//!                                               an error message instead (the task fails,
//!                                               not retried)
//!  imports  (all optional, module "synod")
//!           log(ptr: i32, len: i32)             a line for the node's log (always granted)
//!           now_ms() -> i64                     wall-clock milliseconds (permission "clock")
//! ```
//!
//! Nothing else is offered: no WASI, so no filesystem, network or
//! environment. A module importing anything outside this table is refused
//! when loaded; one importing a function its manifest was not granted loads,
//! and a call of it fails the task.
//!
//! Every call runs in a fresh instance under limits:
//!
//! ```text
//!  instantiate (memory cap) ─► synod_alloc ─► write payload ─► synod_run, in fuel slices:
//!     out of slice ─► total fuel spent? ─► fail "out of fuel"
//!                  ─► deadline passed / task cancelled? ─► fail "deadline" / Cancelled
//!                  ─► refuel one slice, resume
//!  ─► result pointer and length checked against memory and the output cap ─► JSON
//! ```
//!
//! wasmi (an interpreter) rather than wasmtime, by measurement
//! (`bench/wasm-engines`, release, 2-core EPYC): a task of a small plugin
//! (fresh instance, alloc, run on a 20-byte payload) costs 2.3 µs on wasmi
//! and 29 µs on wasmtime 48; compiling the example takes 0.1–0.9 ms against
//! 2.3–7 ms. wasmtime runs a tight loop 3.8× faster (1,050 against 275 M
//! iterations/s): a plugin that is mostly computation is better off as a
//! subprocess plugin or a built-in.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;
use wasmi::{
    Caller, Config, Engine, ExternType, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, TypedResumableCall,
    ValType,
};

use crate::model::hex;
use crate::payload::json_len;
use crate::{CancelToken, PluginError};

/// The version of the ABI above.
pub const WASM_ABI_VERSION: u32 = 1;
/// Permissions a manifest may ask for.
pub const WASM_PERMISSIONS: &[&str] = &["clock"];
/// Fuel given per slice: how often a running call checks its deadline.
const FUEL_SLICE: u64 = 5_000_000;
/// Longest log line a plugin may write, and lines per call.
const MAX_LOG_LINE: usize = 1024;
const MAX_LOG_LINES: u32 = 100;

/// What an admin sends beside a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmManifest {
    /// The task type it serves.
    pub name: String,
    /// The admin's version label (`1.2.0`); the module's sha256 is its identity.
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Largest payload, as compact JSON (default and ceiling: the node's payload limit).
    #[serde(default)]
    pub max_payload_bytes: Option<u64>,
    /// Fuel (about one per instruction) one call may use (default and
    /// ceiling: `plugins.wasm_fuel`).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Linear memory one call may grow to (default and ceiling: `plugins.wasm_max_memory`).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Wall-clock limit of one call (default and ceiling: `plugins.wasm_max_timeout`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Host functions beyond `log`: `clock` (`now_ms`).
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// The node's ceilings (config `plugins.wasm_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmLimits {
    pub max_module_bytes: usize,
    pub max_fuel: u64,
    pub max_memory_bytes: u64,
    pub max_output_bytes: usize,
    pub max_payload_bytes: u64,
    pub max_timeout: Duration,
    /// Permissions this node grants when a manifest asks.
    pub allowed_permissions: BTreeSet<String>,
}

impl Default for WasmLimits {
    fn default() -> Self {
        WasmLimits {
            max_module_bytes: 16 << 20,
            max_fuel: 1_000_000_000,
            max_memory_bytes: 64 << 20,
            max_output_bytes: 1 << 20,
            max_payload_bytes: 1 << 20,
            max_timeout: Duration::from_secs(30),
            allowed_permissions: ["clock".to_owned()].into(),
        }
    }
}

/// The limits one module runs under: its manifest's, within the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CallLimits {
    fuel: u64,
    memory_bytes: u64,
    timeout: Duration,
    max_output: usize,
    max_payload: u64,
    clock: bool,
}

/// A module that passed the load checks, ready to run.
pub struct WasmModule {
    manifest: WasmManifest,
    sha256: String,
    size: usize,
    engine: Engine,
    module: Module,
    limits: CallLimits,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule").field("manifest", &self.manifest).field("sha256", &self.sha256).finish()
    }
}

/// Per-call state the host functions see.
struct CallState {
    limits: StoreLimits,
    plugin: String,
    log_lines: u32,
}

/// The capability a node advertises for a compiled plugin version, and a
/// task of that version requires: `plugin:<name>@<sha256>`.
pub fn plugin_capability(name: &str, sha256: &str) -> String {
    format!("plugin:{name}@{sha256}")
}

/// Hex sha256 of a module's bytes: its identity.
pub fn module_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Checks a manifest against the node's limits: a name that can be a task
/// type, a version label, permissions this node grants, limits within its ceilings.
pub fn check_manifest(manifest: &WasmManifest, limits: &WasmLimits) -> Result<(), String> {
    check_labels(&manifest.name, &manifest.version, &manifest.description)?;
    for p in &manifest.permissions {
        if !WASM_PERMISSIONS.contains(&p.as_str()) {
            return Err(format!("unknown permission {p:?} (known: {})", WASM_PERMISSIONS.join(", ")));
        }
        if !limits.allowed_permissions.contains(p) {
            return Err(format!("permission {p:?} is not allowed on this cluster (plugins.wasm_allowed_permissions)"));
        }
    }
    within("fuel", manifest.fuel, limits.max_fuel)?;
    within("memory_bytes", manifest.memory_bytes, limits.max_memory_bytes)?;
    within("timeout_ms", manifest.timeout_ms, limits.max_timeout.as_millis() as u64)?;
    within("max_payload_bytes", manifest.max_payload_bytes, limits.max_payload_bytes)?;
    Ok(())
}

/// The name, version label and description every loaded plugin's manifest has.
pub(crate) fn check_labels(name: &str, version: &str, description: &str) -> Result<(), String> {
    crate::registry::check_task_type(name).map_err(|e| e.to_string())?;
    if version.is_empty() || version.len() > 64 || version.chars().any(char::is_control) {
        return Err("`version` must be 1 to 64 printable characters".to_owned());
    }
    if description.len() > 1024 {
        return Err("`description` is longer than 1024 bytes".to_owned());
    }
    Ok(())
}

/// A manifest's optional limit: when given, above 0 and at most `max`.
pub(crate) fn within(what: &str, asked: Option<u64>, max: u64) -> Result<(), String> {
    match asked {
        Some(0) => Err(format!("`{what}` must be greater than 0")),
        Some(n) if n > max => Err(format!("`{what}` is {n}; this cluster allows at most {max}")),
        _ => Ok(()),
    }
}

impl WasmModule {
    /// Compiles `bytes` and checks them against the ABI and `manifest`:
    /// the size limit, the exports and their types, the imports, and one
    /// instantiation under the memory cap (so a module whose initial memory
    /// or start function breaks the limits is refused here, not per task).
    pub fn load(manifest: WasmManifest, bytes: &[u8], limits: &WasmLimits) -> Result<WasmModule, String> {
        check_manifest(&manifest, limits)?;
        if bytes.len() > limits.max_module_bytes {
            return Err(format!(
                "the module is {} bytes; plugins.wasm_max_module_size is {}",
                bytes.len(),
                limits.max_module_bytes
            ));
        }
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, bytes).map_err(|e| format!("not a valid WebAssembly module: {e}"))?;
        check_exports(&module)?;
        check_imports(&module)?;
        let call = CallLimits {
            fuel: manifest.fuel.unwrap_or(limits.max_fuel),
            memory_bytes: manifest.memory_bytes.unwrap_or(limits.max_memory_bytes),
            timeout: manifest.timeout_ms.map_or(limits.max_timeout, Duration::from_millis),
            max_output: limits.max_output_bytes,
            max_payload: manifest.max_payload_bytes.unwrap_or(limits.max_payload_bytes),
            clock: manifest.permissions.iter().any(|p| p == "clock"),
        };
        let loaded =
            WasmModule { sha256: module_sha256(bytes), size: bytes.len(), manifest, engine, module, limits: call };
        let cancel = CancelToken::new();
        loaded.instantiate(&cancel, Instant::now() + call.timeout).map_err(|e| format!("instantiating: {e}"))?;
        Ok(loaded)
    }

    pub fn manifest(&self) -> &WasmManifest {
        &self.manifest
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The payload check at submit: its size against the manifest's limit.
    pub fn validate(&self, payload: &Value) -> Result<(), String> {
        match json_len(payload, self.limits.max_payload as usize) {
            Some(_) => Ok(()),
            None => Err(format!("the payload is larger than this plugin's limit of {} bytes", self.limits.max_payload)),
        }
    }

    /// Runs the module on `payload` in a fresh instance, under the limits.
    pub fn call(&self, payload: &Value, cancel: &CancelToken) -> Result<Value, PluginError> {
        let deadline = Instant::now() + self.limits.timeout;
        let input = serde_json::to_vec(payload).expect("a JSON value serializes");
        let (mut store, instance) = self.instantiate(cancel, deadline)?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| PluginError::failed_permanent("wasm: the module exports no memory"))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&store, "synod_alloc")
            .map_err(|e| PluginError::failed_permanent(format!("wasm: synod_alloc: {e}")))?;
        let run = instance
            .get_typed_func::<(i32, i32), i64>(&store, "synod_run")
            .map_err(|e| PluginError::failed_permanent(format!("wasm: synod_run: {e}")))?;
        let len = i32::try_from(input.len()).map_err(|_| PluginError::InvalidInput("payload too large".into()))?;
        let first = alloc.call_resumable(&mut store, len);
        let ptr = self.drive(&mut store, first, cancel, deadline, "synod_alloc")?;
        memory
            .write(&mut store, ptr as u32 as usize, &input)
            .map_err(|_| PluginError::failed_permanent(format!("wasm: synod_alloc returned {ptr}, outside memory")))?;
        let first = run.call_resumable(&mut store, (ptr, len));
        let packed = self.drive(&mut store, first, cancel, deadline, "synod_run")?;
        let is_error = packed < 0;
        let out_ptr = ((packed as u64 >> 32) & 0x7fff_ffff) as usize;
        let out_len = (packed as u64 & 0xffff_ffff) as usize;
        if out_len > self.limits.max_output {
            return Err(PluginError::failed_permanent(format!(
                "wasm: output of {out_len} bytes exceeds plugins.wasm_max_output ({} bytes)",
                self.limits.max_output
            )));
        }
        let mut out = vec![0u8; out_len];
        memory.read(&store, out_ptr, &mut out).map_err(|_| {
            PluginError::failed_permanent(format!(
                "wasm: output {out_ptr}..+{out_len} lies outside the module's memory"
            ))
        })?;
        if is_error {
            return Err(PluginError::failed_permanent(String::from_utf8_lossy(&out).into_owned()));
        }
        serde_json::from_slice(&out)
            .map_err(|e| PluginError::failed_permanent(format!("wasm: the output is not JSON: {e}")))
    }

    /// A fresh store and instance: the memory cap, the host functions the
    /// manifest was granted (and trapping stand-ins for the others), and the
    /// start function run under the fuel budget.
    fn instantiate(
        &self,
        cancel: &CancelToken,
        deadline: Instant,
    ) -> Result<(Store<CallState>, wasmi::Instance), PluginError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes as usize)
            .memories(1)
            .tables(4)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store =
            Store::new(&self.engine, CallState { limits, plugin: self.manifest.name.clone(), log_lines: 0 });
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel.min(FUEL_SLICE)).map_err(internal)?;
        let mut linker = Linker::<CallState>::new(&self.engine);
        linker
            .func_wrap("synod", "log", |caller: Caller<'_, CallState>, ptr: i32, len: i32| {
                host_log(caller, ptr, len);
            })
            .map_err(internal)?;
        if self.limits.clock {
            linker
                .func_wrap("synod", "now_ms", || -> i64 {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64)
                })
                .map_err(internal)?;
        } else {
            linker
                .func_wrap("synod", "now_ms", || -> Result<i64, wasmi::Error> {
                    Err(wasmi::Error::new(
                        "import synod.now_ms is not granted: the manifest lacks the \"clock\" permission",
                    ))
                })
                .map_err(internal)?;
        }
        if cancel.is_cancelled() || Instant::now() >= deadline {
            return Err(PluginError::Cancelled);
        }
        let instance = linker.instantiate_and_start(&mut store, &self.module).map_err(|e| self.trap(&e))?;
        Ok((store, instance))
    }

    /// Runs a resumable call to its end, one fuel slice at a time, checking
    /// the budget, the deadline and the cancel token between slices.
    fn drive<R: wasmi::WasmResults>(
        &self,
        store: &mut Store<CallState>,
        first: Result<TypedResumableCall<R>, wasmi::Error>,
        cancel: &CancelToken,
        deadline: Instant,
        what: &str,
    ) -> Result<R, PluginError> {
        let mut spent = self.limits.fuel.min(FUEL_SLICE);
        let mut call = first.map_err(|e| self.trap(&e))?;
        loop {
            match call {
                TypedResumableCall::Finished(r) => return Ok(r),
                TypedResumableCall::HostTrap(trap) => {
                    return Err(PluginError::failed_permanent(format!("wasm: {what}: {}", trap.host_error())));
                }
                TypedResumableCall::OutOfFuel(out) => {
                    if spent >= self.limits.fuel {
                        return Err(PluginError::failed_permanent(format!(
                            "wasm: {what} ran out of fuel after {} units (the manifest's fuel limit)",
                            self.limits.fuel
                        )));
                    }
                    if cancel.is_cancelled() {
                        return Err(PluginError::Cancelled);
                    }
                    if Instant::now() >= deadline {
                        return Err(PluginError::failed_permanent(format!(
                            "wasm: {what} passed its wall-clock limit of {:?}",
                            self.limits.timeout
                        )));
                    }
                    let slice = (self.limits.fuel - spent).min(FUEL_SLICE).max(out.required_fuel());
                    spent += slice;
                    store.set_fuel(slice).map_err(internal)?;
                    call = out.resume(&mut *store).map_err(|e| self.trap(&e))?;
                }
            }
        }
    }

    /// A trap or a refused memory growth as the task's error.
    fn trap(&self, e: &wasmi::Error) -> PluginError {
        let message = e.to_string();
        if message.contains("grow") || message.contains("memory") && message.contains("limit") {
            return PluginError::failed_permanent(format!(
                "wasm: memory limit of {} bytes exceeded ({message})",
                self.limits.memory_bytes
            ));
        }
        PluginError::failed_permanent(format!("wasm: trap: {message}"))
    }
}

fn internal(e: impl std::fmt::Display) -> PluginError {
    PluginError::failed_permanent(format!("wasm: {e}"))
}

fn host_log(mut caller: Caller<'_, CallState>, ptr: i32, len: i32) {
    if caller.data().log_lines >= MAX_LOG_LINES {
        return;
    }
    caller.data_mut().log_lines += 1;
    let len = (len.max(0) as usize).min(MAX_LOG_LINE);
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else { return };
    let mut buf = vec![0u8; len];
    if memory.read(&caller, ptr as u32 as usize, &mut buf).is_ok() {
        let plugin = caller.data().plugin.clone();
        info!(plugin = %plugin, line = %String::from_utf8_lossy(&buf), "wasm plugin log");
    }
}

fn check_exports(module: &Module) -> Result<(), String> {
    let mut memory = false;
    let mut alloc = false;
    let mut run = false;
    for export in module.exports() {
        match (export.name(), export.ty()) {
            ("memory", ExternType::Memory(_)) => memory = true,
            ("synod_alloc", ExternType::Func(f)) => {
                if f.params() != [ValType::I32] || f.results() != [ValType::I32] {
                    return Err("synod_alloc must be (i32) -> i32".to_owned());
                }
                alloc = true;
            }
            ("synod_run", ExternType::Func(f)) => {
                if f.params() != [ValType::I32, ValType::I32] || f.results() != [ValType::I64] {
                    return Err("synod_run must be (i32, i32) -> i64".to_owned());
                }
                run = true;
            }
            _ => {}
        }
    }
    let missing: Vec<&str> = [("memory", memory), ("synod_alloc", alloc), ("synod_run", run)]
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the module does not export {} (ABI version {WASM_ABI_VERSION}: see README)", missing.join(", ")))
    }
}

fn check_imports(module: &Module) -> Result<(), String> {
    for import in module.imports() {
        let known = import.module() == "synod" && matches!(import.name(), "log" | "now_ms");
        if !known {
            return Err(format!(
                "the module imports {}.{}, which Synod does not provide (only synod.log and synod.now_ms; no WASI)",
                import.module(),
                import.name()
            ));
        }
    }
    Ok(())
}

/// A WASM plugin as the registry holds it: the current module, and the
/// ones it replaced that the cluster still keeps, so a task runs the version
/// that was current when it was submitted.
#[derive(Debug, Clone)]
pub struct WasmPlugin {
    current: Arc<WasmModule>,
    previous: Vec<Arc<WasmModule>>,
}

impl WasmPlugin {
    pub fn new(current: Arc<WasmModule>, previous: Vec<Arc<WasmModule>>) -> Self {
        WasmPlugin { current, previous }
    }

    pub fn current(&self) -> &Arc<WasmModule> {
        &self.current
    }
}

impl crate::plugin::LoadedVersion for WasmModule {
    fn name(&self) -> &str {
        &self.manifest.name
    }
    fn label(&self) -> &str {
        &self.manifest.version
    }
    fn description(&self) -> &str {
        &self.manifest.description
    }
    fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl crate::Plugin for WasmPlugin {
    fn info(&self) -> crate::PluginInfo {
        crate::plugin::loaded_info("wasm", self.current.as_ref())
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        self.current.validate(payload)
    }

    /// The current version, compiled: a node that has not compiled it yet
    /// (or cannot) does not get the task.
    fn requirements(&self, _payload: &Value) -> Vec<String> {
        vec![plugin_capability(&self.current.manifest.name, &self.current.sha256)]
    }

    fn run(&self, payload: &Value, ctx: &crate::TaskContext) -> Result<Value, PluginError> {
        let module = crate::plugin::pick_version(&self.current, &self.previous, ctx.plugin_version.as_deref())?;
        module.validate(payload).map_err(PluginError::InvalidInput)?;
        module.call(payload, &ctx.cancel)
    }
}
