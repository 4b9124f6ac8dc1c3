//! Plugins that run as long-lived child processes: code that cannot be WASM
//! (a Python model with torch, a binary tool).
//!
//! The protocol is newline-delimited JSON on the worker's stdin and stdout,
//! one request at a time per process:
//!
//! ```text
//!  stdin   {"id": 7, "task_id": "…", "attempt": 1, "payload": {…}}
//!  stdout  {"id": 7, "result": …}                           success
//!          {"id": 7, "error": "message", "retryable": false} failure (retryable defaults to false)
//!  other stdout lines (not JSON, or another id) go to the node's log; stderr too.
//!  stdin closed ─► the worker exits (the node stopped or dropped it)
//! ```
//!
//! Each plugin version has a [`Pool`] of up to `workers` processes:
//!
//! ```text
//!  call ─► an idle worker, or start one (after the crash backoff) ─► write the request
//!       ─► wait for its line, polling the deadline and the task's cancel token:
//!            result / error ─► the worker goes back to the pool
//!            process exited ─► crash: backoff 100 ms·2ⁿ (≤ 10 s), task fails retryable
//!            deadline / cancel / a line over the output cap ─► the process group is killed
//!  keeper thread (current version): keeps `workers` processes started while the
//!  executable exists, restarting crashed ones after the backoff
//! ```
//!
//! The executable must sit in the node's `plugins.dir` (a manifest names it
//! relative to that folder; `..` and links out of it are refused), so only
//! an admin with access to the node's disk decides what can run. A node
//! where it is missing does not advertise the plugin ([`SubprocessPlugin::ready`]).
//! Workers get a clean environment: `PATH`, `HOME`, `LANG`, `LC_ALL`,
//! `TMPDIR`, `PYTHONUNBUFFERED=1`, `SYNOD_PLUGIN_NAME`, `SYNOD_PLUGIN_VERSION`;
//! their working directory is `plugins.dir`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::payload::json_len;
use crate::{PluginError, TaskContext};

/// How often a waiting call checks its deadline and cancel token.
const POLL: Duration = Duration::from_millis(20);
/// First and longest wait before restarting a crashed worker.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Longest stderr line logged as is (longer ones are cut).
const MAX_LOG_LINE: usize = 4096;
/// Most arguments, and bytes per argument, a manifest may give.
const MAX_ARGS: usize = 64;
const MAX_ARG_LEN: usize = 4096;
/// Variables a worker inherits from the node; everything else is dropped
/// (the node's own settings and secrets stay out of the plugin).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];

/// What an admin sends to load a subprocess plugin (`"kind": "subprocess"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubprocessManifest {
    /// The task type it serves.
    pub name: String,
    /// The admin's version label; the sha256 of this manifest is its identity.
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The executable, relative to `plugins.dir` (`embed.py`, `bin/tool`).
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Processes kept per node (default 1; ceiling `plugins.subprocess_max_workers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Wall-clock limit of one task; its process is killed past it (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Largest payload, as compact JSON (default and ceiling: the node's payload limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Option<u64>,
}

/// The node's side of subprocess plugins (config `plugins.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubprocessLimits {
    /// `plugins.dir`: where executables must be; `None` runs none.
    pub dir: Option<PathBuf>,
    pub max_workers: u32,
    /// Longest result line a worker may write.
    pub max_output_bytes: usize,
    pub max_payload_bytes: u64,
    pub default_timeout: Duration,
}

impl Default for SubprocessLimits {
    fn default() -> Self {
        SubprocessLimits {
            dir: None,
            max_workers: 4,
            max_output_bytes: 1 << 20,
            max_payload_bytes: 1 << 20,
            default_timeout: Duration::from_secs(30),
        }
    }
}

/// Checks a manifest against the node's limits; does not look for the
/// executable (a node without it loads the plugin and does not advertise it).
pub fn check_subprocess_manifest(m: &SubprocessManifest, limits: &SubprocessLimits) -> Result<(), String> {
    crate::wasm::check_labels(&m.name, &m.version, &m.description)?;
    check_command(&m.command)?;
    if m.args.len() > MAX_ARGS || m.args.iter().any(|a| a.len() > MAX_ARG_LEN || a.contains('\0')) {
        return Err(format!("`args`: at most {MAX_ARGS}, each under {MAX_ARG_LEN} bytes without NUL"));
    }
    crate::wasm::within("workers", m.workers.map(u64::from), u64::from(limits.max_workers))?;
    crate::wasm::within("timeout_ms", m.timeout_ms, u64::MAX)?;
    crate::wasm::within("max_payload_bytes", m.max_payload_bytes, limits.max_payload_bytes)?;
    Ok(())
}

/// A command is a relative path of plain names: no `/…`, no `..`, no `.`.
fn check_command(command: &str) -> Result<(), String> {
    let plain = command.len() <= 255
        && !command.contains(['\0', '\\'])
        && command.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`command` {command:?} must be a path inside plugins.dir, like `embed.py` or `bin/tool` (no `/` at the start, no `..`)"
        ))
    }
}

/// Where `command` is, when it is an executable file inside `dir`.
fn resolve(dir: Option<&Path>, command: &str) -> Result<PathBuf, String> {
    let dir = dir.ok_or("plugins.dir is not set on this node")?;
    let root = dir.canonicalize().map_err(|e| format!("plugins.dir {}: {e}", dir.display()))?;
    let exe = root.join(command).canonicalize().map_err(|e| format!("{command} in {}: {e}", root.display()))?;
    if !exe.starts_with(&root) {
        return Err(format!("{command} leads out of plugins.dir (to {})", exe.display()));
    }
    let meta = exe.metadata().map_err(|e| format!("{}: {e}", exe.display()))?;
    if !meta.is_file() || !is_executable(&meta) {
        return Err(format!("{} is not an executable file", exe.display()));
    }
    Ok(exe)
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}

/// One version's processes, and how to start more.
pub struct Pool {
    manifest: SubprocessManifest,
    sha256: String,
    dir: Option<PathBuf>,
    workers: usize,
    timeout: Duration,
    max_output: usize,
    max_payload: u64,
    state: Mutex<PoolState>,
    changed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Worker>,
    /// Processes started or being started: idle, busy and starting.
    live: usize,
    /// Crashes since the last success; sets the backoff.
    crashes: u32,
    not_before: Option<Instant>,
    stopped: bool,
    next_request: u64,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Line>,
}

enum Line {
    Text(String),
    TooLong,
    Closed,
}

impl Worker {
    /// Kills the worker's process group (so a script's own children go
    /// too) and reaps it.
    fn kill(mut self) {
        #[cfg(unix)]
        {
            use nix::sys::signal::{Signal, killpg};
            use nix::unistd::Pid;
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("manifest", &self.manifest).field("sha256", &self.sha256).finish()
    }
}

impl Pool {
    fn new(manifest: SubprocessManifest, sha256: String, limits: &SubprocessLimits) -> Pool {
        Pool {
            workers: manifest.workers.unwrap_or(1).clamp(1, limits.max_workers.max(1)) as usize,
            timeout: manifest.timeout_ms.map_or(limits.default_timeout, Duration::from_millis),
            max_payload: manifest.max_payload_bytes.unwrap_or(limits.max_payload_bytes),
            max_output: limits.max_output_bytes,
            dir: limits.dir.clone(),
            manifest,
            sha256,
            state: Mutex::new(PoolState::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The executable, when this node has it.
    pub fn executable(&self) -> Result<PathBuf, String> {
        resolve(self.dir.as_deref(), &self.manifest.command)
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        match json_len(payload, self.max_payload as usize) {
            Some(_) => Ok(()),
            None => Err(format!("the payload is larger than this plugin's limit of {} bytes", self.max_payload)),
        }
    }

    /// Starts one process. The caller has counted it in `live`.
    fn spawn(&self) -> Result<Worker, String> {
        let exe = self.executable()?;
        let mut cmd = Command::new(&exe);
        cmd.args(&self.manifest.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .env("PYTHONUNBUFFERED", "1")
            .env("SYNOD_PLUGIN_NAME", &self.manifest.name)
            .env("SYNOD_PLUGIN_VERSION", &self.manifest.version);
        for var in INHERITED_ENV {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the worker's pipes were not set up".to_owned());
        };
        let (tx, lines) = sync_channel(16);
        let (name, pid, max) = (self.manifest.name.clone(), child.id(), self.max_output);
        spawn_thread("synod-subprocess-out", move || read_stdout(stdout, tx, max));
        spawn_thread("synod-subprocess-err", move || log_stderr(&name, pid, stderr));
        info!(plugin = %self.manifest.name, version = %self.manifest.version, pid, "subprocess plugin worker started");
        Ok(Worker { child, stdin, lines })
    }

    /// Counts a crash and schedules the next start after the backoff.
    fn crashed(&self, state: &mut PoolState) {
        state.crashes = state.crashes.saturating_add(1);
        let backoff = BACKOFF_MIN.saturating_mul(1 << (state.crashes - 1).min(10)).min(BACKOFF_MAX);
        state.not_before = Some(Instant::now() + backoff);
    }

    /// Gives back a slot whose worker is gone.
    fn release(&self, crash: bool) {
        let mut state = self.lock();
        state.live = state.live.saturating_sub(1);
        if crash {
            self.crashed(&mut state);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// An idle worker, or a new one when there is room; waits otherwise.
    fn acquire(&self, ctx: &TaskContext, deadline: Instant) -> Result<Worker, PluginError> {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return Err(PluginError::failed_retryable(format!(
                    "plugin {} was replaced or unloaded on this node",
                    self.manifest.name
                )));
            }
            ctx.cancel.check()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(PluginError::Timeout(self.timeout));
            }
            while let Some(mut w) = state.idle.pop() {
                if w.exited() {
                    state.live -= 1;
                    self.crashed(&mut state);
                    drop(state);
                    w.kill();
                    state = self.lock();
                    continue;
                }
                return Ok(w);
            }
            let backoff_over = state.not_before.is_none_or(|t| now >= t);
            if state.live < self.workers && backoff_over {
                state.live += 1;
                drop(state);
                return self.spawn().map_err(|e| {
                    self.release(true);
                    PluginError::failed_retryable(format!("plugin {}: {e}", self.manifest.name))
                });
            }
            state = self.changed.wait_timeout(state, POLL).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Runs one task in a worker, under the plugin's timeout.
    fn call(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError> {
        let deadline = Instant::now() + self.timeout;
        let mut worker = self.acquire(ctx, deadline)?;
        let id = {
            let mut state = self.lock();
            state.next_request += 1;
            state.next_request
        };
        let request = json!({"id": id, "task_id": ctx.task_id, "attempt": ctx.attempt, "payload": payload});
        let mut line = serde_json::to_vec(&request).expect("a JSON value serializes");
        line.push(b'\n');
        if worker.stdin.write_all(&line).and_then(|()| worker.stdin.flush()).is_err() {
            return Err(self.lost(worker, "closed its stdin"));
        }
        loop {
            match worker.lines.recv_timeout(POLL) {
                Ok(Line::Text(text)) => {
                    let Some(reply) = self.reply(&text, id) else { continue };
                    self.succeeded_or_answered(worker);
                    return reply;
                }
                Ok(Line::TooLong) => {
                    worker.kill();
                    self.release(false);
                    return Err(PluginError::failed_permanent(format!(
                        "plugin {} wrote a line longer than the output limit of {} bytes",
                        self.manifest.name, self.max_output
                    )));
                }
                Ok(Line::Closed) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.lost(worker, "exited"));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if ctx.cancel.is_cancelled() {
                        worker.kill();
                        self.release(false);
                        return Err(PluginError::Cancelled);
                    }
                    if Instant::now() >= deadline {
                        let pid = worker.child.id();
                        worker.kill();
                        self.release(false);
                        warn!(plugin = %self.manifest.name, pid, task_id = %ctx.task_id, "subprocess plugin timed out; its process was killed");
                        return Err(PluginError::Timeout(self.timeout));
                    }
                }
            }
        }
    }

    /// The answer to request `id` in `text`, or `None` for another line (logged).
    fn reply(&self, text: &str, id: u64) -> Option<Result<Value, PluginError>> {
        let mut v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                info!(plugin = %self.manifest.name, line = %cut(text), "subprocess plugin stdout");
                return None;
            }
        };
        if v["id"].as_u64() != Some(id) {
            info!(plugin = %self.manifest.name, line = %cut(text), "subprocess plugin stdout (not the answer)");
            return None;
        }
        if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
            let message = error.as_str().map_or_else(|| error.to_string(), str::to_owned);
            let message = format!("plugin {}: {message}", self.manifest.name);
            return Some(Err(if v["retryable"].as_bool() == Some(true) {
                PluginError::failed_retryable(message)
            } else {
                PluginError::failed_permanent(message)
            }));
        }
        Some(match v.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(PluginError::failed_permanent(format!(
                "plugin {} answered without `result` or `error`",
                self.manifest.name
            ))),
        })
    }

    /// The worker answered (with a result or an error it chose): it is healthy.
    fn succeeded_or_answered(&self, worker: Worker) {
        let mut state = self.lock();
        state.crashes = 0;
        state.not_before = None;
        if state.stopped {
            state.live -= 1;
            drop(state);
            worker.kill();
        } else {
            state.idle.push(worker);
            drop(state);
        }
        self.changed.notify_all();
    }

    /// The worker died under a task: a crash, retried by the scheduler.
    fn lost(&self, mut worker: Worker, what: &str) -> PluginError {
        let status = exit_status(&mut worker.child);
        let pid = worker.child.id();
        worker.kill();
        self.release(true);
        warn!(plugin = %self.manifest.name, pid, %status, "subprocess plugin worker {what} during a task; it will be restarted");
        PluginError::failed_retryable(format!(
            "plugin {}: its process {what} during the task ({status}); the task will be retried",
            self.manifest.name
        ))
    }

    /// Stops every idle worker and refuses new calls; busy ones are killed
    /// when their call ends.
    fn stop(&self) {
        let idle = {
            let mut state = self.lock();
            state.stopped = true;
            state.live -= state.idle.len();
            std::mem::take(&mut state.idle)
        };
        self.changed.notify_all();
        for w in idle {
            w.kill();
        }
    }

    /// One round of the keeper: reaps idle workers that died, and starts
    /// one when fewer than `workers` live and the backoff is over.
    /// Returns false once the pool is stopped.
    fn keep(&self) -> bool {
        let mut state = self.lock();
        if state.stopped {
            return false;
        }
        let mut dead = Vec::new();
        let mut i = 0;
        while i < state.idle.len() {
            if state.idle[i].exited() {
                dead.push(state.idle.swap_remove(i));
            } else {
                i += 1;
            }
        }
        for _ in &dead {
            state.live -= 1;
            self.crashed(&mut state);
        }
        let now = Instant::now();
        let start = state.live < self.workers && state.not_before.is_none_or(|t| now >= t) && self.executable().is_ok();
        if start {
            state.live += 1;
        }
        drop(state);
        for w in dead {
            warn!(plugin = %self.manifest.name, pid = w.child.id(), "idle subprocess plugin worker exited; restarting it");
            w.kill();
        }
        if start {
            match self.spawn() {
                Ok(w) => {
                    let mut state = self.lock();
                    if state.stopped {
                        // Stopped while it started: nobody would take it.
                        state.live -= 1;
                        drop(state);
                        w.kill();
                        return false;
                    }
                    state.idle.push(w);
                    drop(state);
                    self.changed.notify_all();
                }
                Err(e) => {
                    warn!(plugin = %self.manifest.name, error = %e, "subprocess plugin worker did not start");
                    self.release(true);
                }
            }
        }
        true
    }
}

/// How the process ended, waiting a moment for it to finish exiting.
fn exit_status(child: &mut Child) -> String {
    let until = Instant::now() + Duration::from_millis(500);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => return "still running; killed".to_owned(),
            Err(e) => return e.to_string(),
        }
    }
}

fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_LOG_LINE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.to_owned()).spawn(f) {
        warn!(error = %e, "could not start a thread for a subprocess plugin");
    }
}

/// Forwards the worker's stdout lines, each at most `max` bytes.
fn read_stdout(stdout: impl Read, tx: SyncSender<Line>, max: usize) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut buf = Vec::new();
        let read = (&mut reader).take(max as u64 + 1).read_until(b'\n', &mut buf);
        let line = match read {
            Ok(0) | Err(_) => Line::Closed,
            Ok(_) if buf.last() == Some(&b'\n') => {
                buf.pop();
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            }
            Ok(n) if n > max => Line::TooLong,
            Ok(_) => Line::Text(String::from_utf8_lossy(&buf).into_owned()), // last line, no newline
        };
        let end = matches!(line, Line::Closed | Line::TooLong);
        if tx.send(line).is_err() || end {
            return;
        }
    }
}

fn log_stderr(plugin: &str, pid: u32, stderr: impl Read) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        info!(plugin = %plugin, pid, line = %cut(&line), "subprocess plugin stderr");
    }
}

/// Keeps a pool's processes started until it stops or is dropped.
fn keeper(pool: Weak<Pool>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        if !p.keep() {
            return;
        }
        let state = p.lock();
        let _ = p.changed.wait_timeout(state, Duration::from_millis(250));
    }
}

/// A subprocess plugin as the registry holds it: the current version's
/// pool (kept warm) and the pools of versions it replaced that the cluster
/// still keeps (started on demand), so a task runs the version that was
/// current when it was submitted.
#[derive(Debug)]
pub struct SubprocessPlugin {
    current: Arc<Pool>,
    previous: Vec<Arc<Pool>>,
}

impl SubprocessPlugin {
    /// `versions`: the current manifest and its sha256 first, then the kept
    /// ones, newest first. Starts the current version's workers in the
    /// background once its executable is in `plugins.dir`.
    pub fn new(versions: Vec<(SubprocessManifest, String)>, limits: &SubprocessLimits) -> Result<Self, String> {
        let mut pools = versions.into_iter().map(|(m, sha)| Arc::new(Pool::new(m, sha, limits)));
        let current = pools.next().ok_or("a subprocess plugin needs a version")?;
        let weak = Arc::downgrade(&current);
        spawn_thread("synod-subprocess-keeper", move || keeper(weak));
        Ok(SubprocessPlugin { current, previous: pools.collect() })
    }

    pub fn sha256(&self) -> &str {
        &self.current.sha256
    }

    /// Whether this node can run the current version (its executable is here).
    pub fn ready(&self) -> Result<(), String> {
        self.current.executable().map(|_| ())
    }
}

impl crate::plugin::LoadedVersion for Pool {
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

impl Drop for SubprocessPlugin {
    fn drop(&mut self) {
        for pool in std::iter::once(&self.current).chain(&self.previous) {
            pool.stop();
        }
    }
}

impl crate::Plugin for SubprocessPlugin {
    fn info(&self) -> crate::PluginInfo {
        crate::plugin::loaded_info("subprocess", self.current.as_ref())
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        self.current.validate(payload)
    }

    /// Only nodes whose `plugins.dir` holds the executable get the task.
    fn requirements(&self, _payload: &Value) -> Vec<String> {
        vec![crate::plugin_capability(&self.current.manifest.name, &self.current.sha256)]
    }

    fn run(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError> {
        let pool = crate::plugin::pick_version(&self.current, &self.previous, ctx.plugin_version.as_deref())?;
        pool.validate(payload).map_err(PluginError::InvalidInput)?;
        pool.call(payload, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_must_stay_inside_the_plugins_dir() {
        for ok in ["embed.py", "bin/tool", "a-b_c.sh"] {
            assert_eq!(check_command(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/usr/bin/python3", "../x", "bin/../../x", "./x", "a/./b"] {
            assert!(check_command(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_link_out_of_the_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/bin/sh", dir.path().join("sh")).unwrap();
        let e = resolve(Some(dir.path()), "sh").unwrap_err();
        assert!(e.contains("leads out of plugins.dir"), "{e}");
        assert!(resolve(None, "sh").unwrap_err().contains("plugins.dir is not set"));
        assert!(resolve(Some(dir.path()), "missing").is_err());
    }
}
