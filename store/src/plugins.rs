//! Plugins loaded at run time: their records and modules, replicated like
//! everything else so every node (one that joins or restarts later too)
//! finds and compiles them.
//!
//! ```text
//!  LoadPlugin{name, version, module} ─► module blob _sys/plugin-modules/<name>/<sha256>
//!     (a subprocess plugin's "module" is its manifest: the executable is on the nodes)
//!     ─► record _sys/plugins/<name>: current = the new version, previous = the
//!        replaced ones, newest first, at most keep_previous (older modules deleted)
//!  UnloadPlugin{name} ─► record and every module deleted
//!  either ─► queued tasks no node can run any more (of the unloaded type, or
//!            requiring a dropped version) fail, not retried
//! ```
//!
//! apply() checks only what it can check deterministically (names, sizes,
//! a sha256 that is the module's); compiling and checking the module against
//! the ABI is the proposing node's job, before anything is proposed.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::Store;
use crate::error::Result;
use crate::pb::{self, CommandResult, PluginRecord, RejectCode, command_result::Outcome};
use crate::schema::*;
use crate::state_machine::{BatchCtx, ok, rejected};

/// Most replaced versions a plugin keeps.
pub const MAX_KEEP_PREVIOUS: u32 = 8;

fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
}

/// The capability a node advertises for a loaded plugin version; the same
/// string as `synod_plugins::plugin_capability` (the store cannot depend on
/// the plugins crate), which a task's `requires` names.
fn plugin_capability(name: &str, sha256: &str) -> String {
    format!("plugin:{name}@{sha256}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn load(ctx: &mut BatchCtx<'_>, c: pb::LoadPlugin, now: u64) -> Result<CommandResult> {
    let Some(mut version) = c.version else {
        return Ok(rejected(RejectCode::Invalid, "load plugin without a version"));
    };
    if !valid_plugin_name(&c.name) || !matches!(c.kind.as_str(), "wasm" | "subprocess") {
        return Ok(rejected(RejectCode::Invalid, format!("invalid plugin name {:?} or kind {:?}", c.name, c.kind)));
    }
    if version.sha256 != hex(&Sha256::digest(&c.module)) {
        return Ok(rejected(RejectCode::Invalid, "the module's sha256 differs from the version's"));
    }
    version.loaded_at_ms = now;
    version.size = c.module.len() as u64;
    let key = plugin_key(&c.name);
    let old = ctx.get_msg::<PluginRecord>(&key, "plugin record")?;
    if let Some(old) = &old
        && old.current.as_ref().is_some_and(|cur| cur.sha256 == version.sha256 && cur.version == version.version)
    {
        return Ok(CommandResult { outcome: Some(Outcome::Plugin(old.clone())) });
    }
    let keep = c.keep_previous.min(MAX_KEEP_PREVIOUS) as usize;
    let mut previous = Vec::new();
    if let Some(old) = old {
        previous.extend(old.current);
        previous.extend(old.previous);
    }
    // The new version is current, not also a previous one.
    previous.retain(|v| v.sha256 != version.sha256);
    let dropped: Vec<String> = previous.iter().skip(keep).map(|v| v.sha256.clone()).collect();
    previous.truncate(keep);
    for sha in &dropped {
        ctx.delete_blob(plugin_module_key(&c.name, sha));
    }
    if !dropped.is_empty() {
        let gone: Vec<String> = dropped.iter().map(|sha| plugin_capability(&c.name, sha)).collect();
        let error = format!("plugin {} version was dropped (replaced more than {keep} times)", c.name);
        crate::tasks::fail_queued(ctx, now, &error, |e| e.requires.iter().any(|r| gone.contains(r)))?;
    }
    ctx.put_blob(plugin_module_key(&c.name, &version.sha256), &c.module);
    let rec = PluginRecord { name: c.name, kind: c.kind, current: Some(version), previous };
    ctx.put(key, rec.encode_to_vec());
    Ok(CommandResult { outcome: Some(Outcome::Plugin(rec)) })
}

pub(crate) fn unload(ctx: &mut BatchCtx<'_>, c: pb::UnloadPlugin, now: u64) -> Result<CommandResult> {
    let key = plugin_key(&c.name);
    let Some(rec) = ctx.get_msg::<PluginRecord>(&key, "plugin record")? else {
        return Ok(rejected(RejectCode::NotFound, format!("no plugin {} is loaded", c.name)));
    };
    for v in rec.current.iter().chain(&rec.previous) {
        ctx.delete_blob(plugin_module_key(&rec.name, &v.sha256));
    }
    ctx.delete(key);
    let error = format!("plugin {} was unloaded", c.name);
    crate::tasks::fail_queued(ctx, now, &error, |e| e.task_type == c.name)?;
    Ok(ok())
}

impl Store {
    /// Every loaded plugin, by name.
    pub fn list_plugins(&self) -> Result<Vec<PluginRecord>> {
        self.scan(PREFIX_PLUGIN, "plugin record")
    }

    pub fn get_plugin(&self, name: &str) -> Result<Option<PluginRecord>> {
        self.get_decoded(&plugin_key(name), "plugin record")
    }

    /// A module's bytes, when that version is still kept.
    pub fn plugin_module(&self, name: &str, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.get(CF_BLOBS, &plugin_module_key(name, sha256))
    }
}
