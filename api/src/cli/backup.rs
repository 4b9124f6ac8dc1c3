//! `synod backup FILE` (a REST client of `GET /cluster/backup`) and
//! `synod restore FILE --data-dir D` (local: no node runs).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::admin::Client;

/// Left in a data dir by `synod restore`: what was restored. The node that
/// starts on it starts a new cluster with that state and removes it.
pub const RESTORED_MARKER: &str = "restored-backup.json";

/// What `synod restore` left in `data_dir`, if it did and no node has
/// started on it since.
pub fn restored_backup(data_dir: &Path) -> anyhow::Result<Option<Value>> {
    let file = data_dir.join(RESTORED_MARKER);
    match std::fs::read(&file) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("{} is damaged", file.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Downloads a backup into `file` (through `file.part`), showing progress
/// on stderr, then checks it whole before renaming it into place.
pub(super) async fn backup(client: &Client, file: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let url = format!("{}/cluster/backup", client.base);
    let mut req = client.http.get(&url).timeout(Duration::from_secs(24 * 3600));
    for (k, v) in &client.always {
        req = req.header(*k, v);
    }
    let mut resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        bail!(
            "{status} {}: {}",
            v["error"]["code"].as_str().unwrap_or("error"),
            v["error"]["message"].as_str().unwrap_or("")
        );
    }
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (index, digest) = (header("x-synod-backup-index"), header("x-synod-backup-digest"));
    let total = resp.content_length();
    let part = file.with_file_name(format!(
        "{}.part",
        file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into())
    ));
    let mut out = std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    let tty = std::io::stderr().is_terminal();
    let (mut got, mut shown) = (0u64, Instant::now());
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    while let Some(chunk) = resp.chunk().await.context("receiving the backup")? {
        out.write_all(&chunk).with_context(|| format!("writing {}", part.display()))?;
        got += chunk.len() as u64;
        if shown.elapsed() >= Duration::from_millis(if tty { 200 } else { 2000 }) {
            shown = Instant::now();
            let of = total.map(|t| format!(" of {:.1} MiB", mib(t))).unwrap_or_default();
            let rate = mib(got) / started.elapsed().as_secs_f64().max(1e-3);
            match tty {
                true => eprint!("\rbackup: {:.1} MiB{of} ({rate:.1} MiB/s)   ", mib(got)),
                false => eprintln!("backup: {:.1} MiB{of} ({rate:.1} MiB/s)", mib(got)),
            }
        }
    }
    if tty {
        eprintln!();
    }
    out.sync_all().with_context(|| format!("syncing {}", part.display()))?;
    drop(out);
    if let Some(t) = total
        && t != got
    {
        bail!("the backup stopped after {got} of {t} bytes; {} is incomplete", part.display());
    }
    let about = synod_store::read_backup(&part).with_context(|| format!("checking {}", part.display()))?;
    let named = format!("{:016x}", about.digest);
    if digest.as_deref().is_some_and(|d| d != named) {
        bail!("the node named digest {digest:?}, the file holds {named}");
    }
    std::fs::rename(&part, file).with_context(|| format!("renaming into {}", file.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    super::admin::print(&json!({
        "file": file.display().to_string(),
        "applied_index": index.and_then(|i| i.parse::<u64>().ok()),
        "digest": named,
        "records": about.records,
        "bytes": about.bytes,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    }));
    Ok(())
}

/// Loads the backup in `file` into a new store in `data_dir` and leaves the
/// marker that makes the node started there begin a new cluster with it.
pub fn restore(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    if data_dir.join("node_id").exists() || restored_backup(data_dir)?.is_some() {
        bail!("{} already holds a node (or a restore): restore into a new data dir", data_dir.display());
    }
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} is not empty: restore into a new data dir", data_dir.display());
    }
    let about = synod_store::read_backup(file).with_context(|| format!("checking {}", file.display()))?;
    let index = match &about.applied {
        Some(b) => synod_raft::RaftNode::log_index(b)?,
        None => 0,
    };
    // Marked before anything is loaded: a restore cut off halfway leaves a
    // data dir that no node starts on.
    let marker = data_dir.join(RESTORED_MARKER);
    let write_marker = |v: &Value| -> anyhow::Result<()> {
        let tmp = marker.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(v)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &marker).with_context(|| format!("writing {}", marker.display()))?;
        std::fs::File::open(data_dir)?.sync_all()?;
        Ok(())
    };
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    write_marker(&json!({"complete": false, "file": file.display().to_string()}))?;
    let store = synod_store::Store::open(data_dir, &synod_store::StoreOptions::default())
        .with_context(|| format!("opening a store in {}", data_dir.display()))?;
    let restored = store.restore_backup(file).with_context(|| format!("restoring {}", file.display()))?;
    store.flush()?;
    drop(store);
    let report = json!({
        "complete": true,
        "file": file.display().to_string(),
        "data_dir": data_dir.display().to_string(),
        "applied_index": index,
        "digest": format!("{:016x}", restored.digest),
        "records": restored.records,
        "bytes": restored.bytes,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    write_marker(&report)?;
    super::admin::print(&report);
    eprintln!(
        "restored: start a node on {} (synod serve --data-dir {0}, without --join): it starts a new cluster \
         with this state; the other nodes join it and receive the state",
        data_dir.display()
    );
    Ok(())
}
