//! The embedding models of one node ([`Models`]): which are installed under
//! its models directory, loading them, and a dynamic batcher per model so
//! that concurrent requests share one forward pass.
//!
//! ```text
//!  embed(model, texts) ──► job queue ──► batcher thread (one per model):
//!                                          take the first job, then every job already
//!                                          queued, then wait up to max_wait for more,
//!                                          until max_texts texts
//!                                       ─► EmbeddingModel::embed(all texts) ─► each job its rows
//! ```
//!
//! While a pass runs, new jobs queue up and form the next batch, so with
//! `max_wait` 0 a busy model batches by itself and an idle one adds no
//! latency. A model is loaded at its first use (or by [`Models::preload`]);
//! one that fails to load is marked broken, logged, and no longer listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use serde::Serialize;
use tracing::{error, info, warn};

use crate::model::{EmbeddingModel, MANIFEST_FILE, ModelManifest, Tokens, check_model_name};
use crate::{CancelToken, ModelError};

/// How the batcher groups requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most texts in one forward pass (a single larger request still runs whole).
    pub max_texts: usize,
    /// How long the first request of a batch waits for company; 0 batches
    /// only what queued while the previous pass ran.
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_texts: 64, max_wait: Duration::ZERO }
    }
}

/// An installed model as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub dimension: usize,
    pub max_seq_length: usize,
    /// sha256 of `model.safetensors`.
    pub sha256: String,
    pub source: String,
    /// `installed` (not loaded yet), `loaded`, or `broken: <why>`.
    pub state: String,
}

/// Counters of one model's batcher, for tests and `synod-bench embed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Forward passes run (each over one or more requests).
    pub passes: u64,
    /// Requests served.
    pub requests: u64,
    /// Texts embedded.
    pub texts: u64,
}

enum State {
    Installed,
    Loaded(Arc<Loaded>),
    Broken(String),
}

struct Entry {
    manifest: ModelManifest,
    dir: PathBuf,
    /// Held while loading, so two first uses load once.
    state: Mutex<State>,
}

/// A loaded model and the sender to its batcher thread.
struct Loaded {
    model: Arc<EmbeddingModel>,
    jobs: Mutex<mpsc::Sender<Job>>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    passes: AtomicU64,
    requests: AtomicU64,
    texts: AtomicU64,
}

struct Job {
    texts: Vec<String>,
    cancel: Option<CancelToken>,
    reply: mpsc::SyncSender<Result<Vec<Vec<f32>>, ModelError>>,
}

/// The models of one node. Cheap to share behind an `Arc`; every method is
/// safe from any thread and blocks only to load or to embed.
pub struct Models {
    dir: Option<PathBuf>,
    batch: BatchConfig,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").field("dir", &self.dir).field("names", &self.names()).finish()
    }
}

impl Models {
    /// The models installed under `dir` (none when `dir` is `None` or absent).
    pub fn open(dir: Option<PathBuf>, batch: BatchConfig) -> Models {
        let models = Models { dir, batch, entries: RwLock::new(BTreeMap::new()) };
        models.rescan();
        models
    }

    /// A node without models.
    pub fn none() -> Models {
        Models::open(None, BatchConfig::default())
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Picks up models installed or removed since the last scan. A directory
    /// counts once its manifest names it (install writes the manifest, then
    /// renames the directory into place). Returns whether the set changed.
    pub fn rescan(&self) -> bool {
        let Some(dir) = &self.dir else { return false };
        let mut found = BTreeMap::new();
        if let Ok(read) = std::fs::read_dir(dir) {
            for entry in read.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if check_model_name(&name).is_err() || !entry.path().join(MANIFEST_FILE).is_file() {
                    continue; // staging folders start with a dot
                }
                found.insert(name, entry.path());
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let mut changed = false;
        entries.retain(|name, _| {
            let keep = found.contains_key(name);
            changed |= !keep;
            keep
        });
        for (name, path) in found {
            if entries.contains_key(&name) {
                continue;
            }
            match ModelManifest::read(&path) {
                Ok(manifest) if manifest.name == name => {
                    info!(model = %name, dir = %path.display(), "model installed");
                    entries.insert(name, Arc::new(Entry { manifest, dir: path, state: Mutex::new(State::Installed) }));
                    changed = true;
                }
                Ok(manifest) => {
                    warn!(dir = %path.display(), manifest_name = %manifest.name, "model folder and manifest disagree on the name; skipped")
                }
                Err(e) => warn!(dir = %path.display(), error = %e, "unreadable model manifest; skipped"),
            }
        }
        changed
    }

    /// Names of the models this node can run: installed and not broken.
    pub fn names(&self) -> Vec<String> {
        self.entries().into_iter().filter(|(_, e)| !e.is_broken()).map(|(name, _)| name).collect()
    }

    /// Every installed model, broken ones included, with its state.
    pub fn list(&self) -> Vec<ModelInfo> {
        self.entries()
            .into_iter()
            .map(|(name, e)| {
                let state = match &*e.state.lock().unwrap_or_else(PoisonError::into_inner) {
                    State::Installed => "installed".to_owned(),
                    State::Loaded(_) => "loaded".to_owned(),
                    State::Broken(why) => format!("broken: {why}"),
                };
                ModelInfo {
                    name,
                    dimension: e.manifest.dimension,
                    max_seq_length: e.manifest.max_seq_length,
                    sha256: e.manifest.weights_sha256().to_owned(),
                    source: e.manifest.source.clone(),
                    state,
                }
            })
            .collect()
    }

    /// The vector length of an installed model, without loading it.
    pub fn dimension(&self, name: &str) -> Option<usize> {
        self.entry(name).filter(|e| !e.is_broken()).map(|e| e.manifest.dimension)
    }

    /// Loads every installed model now rather than at first use.
    pub fn preload(&self) {
        for (name, _) in self.entries() {
            if let Err(e) = self.loaded(&name) {
                warn!(model = %name, error = %e, "model failed to load");
            }
        }
    }

    /// Vectors of `texts` from model `name`, batched with whatever else this
    /// node is embedding with it. Returns `Cancelled`-free: a cancelled job
    /// is dropped from its batch and answered `Stopped`.
    pub fn embed(
        &self,
        name: &str,
        texts: Vec<String>,
        cancel: Option<CancelToken>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let loaded = self.loaded(name)?;
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job { texts, cancel, reply };
        loaded
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| ModelError::Stopped(name.to_owned()))?;
        answer.recv().map_err(|_| ModelError::Stopped(name.to_owned()))?
    }

    /// The model's tokens of `text`.
    pub fn tokenize(&self, name: &str, text: &str) -> Result<Tokens, ModelError> {
        self.loaded(name)?.model.tokenize(text)
    }

    /// Counters of `name`'s batcher; zero before it is loaded.
    pub fn batch_stats(&self, name: &str) -> BatchStats {
        let Some(entry) = self.entry(name) else { return BatchStats::default() };
        match &*entry.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Loaded(l) => BatchStats {
                passes: l.stats.passes.load(Ordering::Relaxed),
                requests: l.stats.requests.load(Ordering::Relaxed),
                texts: l.stats.texts.load(Ordering::Relaxed),
            },
            _ => BatchStats::default(),
        }
    }

    fn entries(&self) -> Vec<(String, Arc<Entry>)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    fn loaded(&self, name: &str) -> Result<Arc<Loaded>, ModelError> {
        let entry = self.entry(name).ok_or_else(|| ModelError::NotInstalled(name.to_owned()))?;
        let mut state = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &*state {
            State::Loaded(loaded) => return Ok(loaded.clone()),
            State::Broken(_) => return Err(ModelError::NotInstalled(name.to_owned())),
            State::Installed => {}
        }
        let started = Instant::now();
        let model = match EmbeddingModel::load(&entry.dir) {
            Ok(model) => Arc::new(model),
            Err(e) => {
                error!(model = %name, error = %e, "model failed to load; it is no longer offered by this node");
                *state = State::Broken(e.to_string());
                return Err(e);
            }
        };
        let stats = Arc::new(Stats::default());
        let (jobs, queue) = mpsc::channel();
        let thread_model = model.clone();
        let thread_stats = stats.clone();
        let batch = self.batch;
        std::thread::Builder::new()
            .name(format!("embed-{name}"))
            .spawn(move || run_batcher(&thread_model, &queue, batch, &thread_stats))
            .map_err(|e| ModelError::Inference(format!("starting the batcher thread: {e}")))?;
        info!(model = %name, took_ms = started.elapsed().as_millis() as u64, "model loaded");
        let loaded = Arc::new(Loaded { model, jobs: Mutex::new(jobs), stats });
        *state = State::Loaded(loaded.clone());
        Ok(loaded)
    }
}

impl Entry {
    fn is_broken(&self) -> bool {
        matches!(&*self.state.lock().unwrap_or_else(PoisonError::into_inner), State::Broken(_))
    }
}

/// The batcher thread: runs until every sender is gone.
fn run_batcher(model: &EmbeddingModel, queue: &mpsc::Receiver<Job>, batch: BatchConfig, stats: &Stats) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        let mut count = jobs[0].texts.len();
        let deadline = Instant::now() + batch.max_wait;
        while count < batch.max_texts {
            let next = match queue.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match queue.recv_timeout(deadline - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            count += next.texts.len();
            jobs.push(next);
        }
        jobs.retain(|job| {
            let cancelled = job.cancel.as_ref().is_some_and(CancelToken::is_cancelled);
            if cancelled {
                let _ = job.reply.send(Err(ModelError::Stopped(model.name().to_owned())));
            }
            !cancelled
        });
        if jobs.is_empty() {
            continue;
        }
        let texts: Vec<&str> = jobs.iter().flat_map(|j| j.texts.iter().map(String::as_str)).collect();
        let started = Instant::now();
        let result = model.embed(&texts);
        let labels = [("model", model.name().to_owned())];
        counter!("synod_embed_passes_total", &labels).increment(1);
        counter!("synod_embed_texts_total", &labels).increment(texts.len() as u64);
        histogram!("synod_embed_batch_texts", &labels).record(texts.len() as f64);
        histogram!("synod_embed_pass_seconds", &labels).record(started.elapsed().as_secs_f64());
        stats.passes.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        stats.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        match result {
            Ok(vectors) => {
                let mut rows = vectors.into_iter();
                for job in jobs {
                    let mine: Vec<Vec<f32>> = rows.by_ref().take(job.texts.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            // One job's bad text must not fail its batch-mates: run each alone.
            Err(_) if jobs.len() > 1 => {
                for job in jobs {
                    let texts: Vec<&str> = job.texts.iter().map(String::as_str).collect();
                    let _ = job.reply.send(model.embed(&texts));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
