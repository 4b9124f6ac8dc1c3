//! Bulk loading from files: `synod vector import` (points from JSON Lines
//! or `.npy`) and `synod task submit --file` (tasks from JSON Lines).
//!
//! Items go out in batches, several requests in flight, and are
//! acknowledged in file order. After each acknowledged batch a progress
//! file beside the input records how many items are stored, so an import
//! that is interrupted (Ctrl-C, `kill -9`, a lost connection) resumes after
//! them. The batches in flight when it stopped are sent again: an upsert by
//! id and a task submit with its line's idempotency key are both
//! idempotent, so nothing is stored twice.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use super::admin::{Client, seg};
use crate::service::vector_form;

/// What one import sends and where.
pub struct Job {
    /// `POST` here, e.g. `/collections/docs/points`.
    pub path: String,
    /// The batch's field: `points` or `tasks`.
    pub field: &'static str,
    /// What the progress file is for (a collection, or the tasks of a tenant).
    pub target: String,
    /// Which life of the target: a collection's creation time (one dropped
    /// and created again under the same name holds none of the points).
    pub incarnation: u64,
    /// What an item is called in progress lines.
    pub noun: &'static str,
    pub batch: usize,
    pub max_bytes: usize,
    pub concurrency: usize,
    pub progress_file: PathBuf,
    /// Ignore a progress file and send everything.
    pub restart: bool,
}

/// The progress file: enough to know it belongs to this input and target.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    target: String,
    #[serde(default)]
    incarnation: u64,
    /// The input's size and sha256: an edited or replaced file does not
    /// resume.
    source_bytes: u64,
    source_sha256: String,
    /// Items stored, counted from the start of the input.
    done: u64,
    total: u64,
}

/// The input's size and sha256.
fn fingerprint(file: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
    let mut hash = sha2::Sha256::new();
    let len = std::io::copy(&mut f, &mut hash).with_context(|| format!("read {}", file.display()))?;
    Ok((len, format!("{:x}", hash.finalize())))
}

/// The default progress file: beside the input.
pub fn progress_file_for(file: &Path, target: &str) -> PathBuf {
    let safe: String = target.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{safe}.synod-progress"));
    file.with_file_name(name)
}

/// Where the items come from.
pub enum Source {
    /// One JSON object per line (blank lines skipped).
    JsonLines(PathBuf),
    /// A 2-D little-endian float32 or float64 array; row `i`'s id is
    /// `ids[i]` or `id_start + i`.
    Npy { file: PathBuf, ids: Option<PathBuf>, id_start: u64 },
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::JsonLines(p) | Source::Npy { file: p, .. } => p,
        }
    }
}

/// Items of the input, in order, each with its 1-based line (or row) for
/// error messages.
type Items = Box<dyn Iterator<Item = anyhow::Result<(u64, Value)>> + Send>;

fn json_lines(path: &Path) -> anyhow::Result<(u64, Items)> {
    let count = std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .try_fold(0u64, |n, l| l.map(|l| n + u64::from(!l.trim().is_empty())))
        .with_context(|| format!("read {}", path.display()))?;
    let lines = std::io::BufReader::new(std::fs::File::open(path)?).lines();
    let items = lines.enumerate().filter_map(|(i, l)| {
        let line = i as u64 + 1;
        match l {
            Err(e) => Some(Err(anyhow::anyhow!("line {line}: {e}"))),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(
                serde_json::from_str::<Value>(&l).map_err(|e| anyhow::anyhow!("line {line}: not JSON: {e}")).and_then(
                    |v| {
                        if v.is_object() { Ok((line, v)) } else { bail!("line {line}: not a JSON object") }
                    },
                ),
            ),
        }
    });
    Ok((count, Box::new(items)))
}

/// The header of a `.npy` file: element size and kind, rows, columns.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    f64: bool,
    rows: u64,
    cols: u64,
    data_offset: u64,
}

fn npy_header(bytes: &[u8]) -> anyhow::Result<NpyHeader> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy file (no \\x93NUMPY magic)");
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => bail!(".npy format version {v} is not supported"),
    };
    let header = bytes.get(start..start + len).context(".npy header is cut short")?;
    let header = std::str::from_utf8(header).context(".npy header is not text")?;
    let field = |name: &str| -> anyhow::Result<&str> {
        let at = header.find(&format!("'{name}'")).with_context(|| format!(".npy header has no {name}"))?;
        let rest = header[at + name.len() + 2..].trim_start().strip_prefix(':').context(".npy header")?;
        Ok(rest.trim_start())
    };
    let descr = field("descr")?;
    let f64 = if descr.starts_with("'<f4'") || descr.starts_with("'float32'") {
        false
    } else if descr.starts_with("'<f8'") || descr.starts_with("'float64'") {
        true
    } else {
        bail!(".npy dtype {}: use little-endian float32 (<f4) or float64 (<f8)", descr.split(',').next().unwrap_or(""));
    };
    if field("fortran_order")?.starts_with("True") {
        bail!(".npy is in Fortran order: save it C-ordered (np.ascontiguousarray)");
    }
    let shape = field("shape")?;
    let inside = shape.strip_prefix('(').and_then(|s| s.split(')').next()).context(".npy shape")?;
    let dims: Vec<u64> =
        inside.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        bail!(".npy shape ({inside}) is not 2-D (rows, dimension)");
    };
    Ok(NpyHeader { f64, rows, cols, data_offset: (start + len) as u64 })
}

fn npy(file: &Path, ids: Option<&Path>, id_start: u64) -> anyhow::Result<(u64, Items)> {
    let mut f = std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?);
    let mut head = vec![0u8; 4096];
    let n = f.get_mut().read(&mut head)?;
    let h = npy_header(&head[..n])?;
    let width = if h.f64 { 8 } else { 4 } as u64;
    let want = h.data_offset + h.rows * h.cols * width;
    let have = std::fs::metadata(file)?.len();
    if have != want {
        bail!("{}: {} bytes, but its header says {} rows of {} ({want} bytes)", file.display(), have, h.rows, h.cols);
    }
    let mut ids: Option<std::io::Lines<std::io::BufReader<std::fs::File>>> = match ids {
        None => None,
        Some(p) => {
            let count = std::io::BufReader::new(std::fs::File::open(p)?).lines().count() as u64;
            if count != h.rows {
                bail!("{}: {count} ids for {} rows", p.display(), h.rows);
            }
            Some(std::io::BufReader::new(std::fs::File::open(p)?).lines())
        }
    };
    let file = std::fs::File::open(file)?;
    let mut reader = std::io::BufReader::new(file);
    std::io::copy(&mut (&mut reader).take(h.data_offset), &mut std::io::sink())?;
    let cols = h.cols as usize;
    let items = (0..h.rows).map(move |row| {
        let mut buf = vec![0u8; cols * width as usize];
        reader.read_exact(&mut buf).with_context(|| format!("row {row}: cut short"))?;
        let vector: Vec<f32> = if h.f64 {
            buf.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()
        } else {
            buf.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
        };
        let id: Value = match &mut ids {
            None => json!(id_start + row),
            Some(lines) => {
                let l = lines.next().context("ids ran out")??;
                let l = l.trim().to_string();
                // A number only when it reads back the same: "007" stays a string.
                match l.parse::<u64>() {
                    Ok(n) if n.to_string() == l => Value::from(n),
                    _ => Value::String(l),
                }
            }
        };
        // The compact form: base64 of the f32s, a third of the numbers'
        // size and no float parsing on the node.
        Ok((row + 1, json!({"id": id, "vector": vector_form::encode(&vector)})))
    });
    Ok((h.rows, Box::new(items)))
}

/// A live progress line on a terminal (rate and time left), plain lines
/// every few seconds otherwise.
pub struct Progress {
    noun: &'static str,
    total: u64,
    done: u64,
    from: u64,
    started: Instant,
    last: Instant,
    tty: bool,
}

impl Progress {
    pub fn new(noun: &'static str, total: u64, from: u64) -> Progress {
        let now = Instant::now();
        Progress { noun, total, done: from, from, started: now, last: now, tty: std::io::stderr().is_terminal() }
    }

    fn rate(&self) -> f64 {
        (self.done - self.from) as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    fn line(&self) -> String {
        let pct = if self.total == 0 { 100.0 } else { self.done as f64 * 100.0 / self.total as f64 };
        let rate = self.rate();
        let eta = if rate > 0.0 { format!("{:.0}s", (self.total - self.done) as f64 / rate) } else { "?".into() };
        format!("{}/{} {} ({pct:.1}%), {rate:.0} {}/s, ETA {eta}", self.done, self.total, self.noun, self.noun)
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if self.tty {
            let filled = (self.done * 30).checked_div(self.total).unwrap_or(30) as usize;
            eprint!("\r[{}{}] {}\x1b[K", "#".repeat(filled), ".".repeat(30 - filled.min(30)), self.line());
            let _ = std::io::stderr().flush();
        } else if self.last.elapsed() >= Duration::from_secs(2) {
            eprintln!("{}", self.line());
            self.last = Instant::now();
        }
    }

    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
        eprintln!(
            "{} {} stored ({} sent now) in {:.1}s, {:.0} {}/s",
            self.done,
            self.noun,
            self.done - self.from,
            self.started.elapsed().as_secs_f64(),
            self.rate(),
            self.noun
        );
    }
}

/// What to do with a failed batch.
enum Failure {
    /// The batch may be sent again (no answer, 429, 503, 504).
    Retry(String),
    /// The server refused it: nothing of it was stored.
    Refused(String),
}

/// How long one batch may take: points given as text are embedded by the
/// node, hundreds per request.
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);

async fn send_once(c: &Client, path: &str, body: &Value) -> Result<Value, Failure> {
    let mut req = c.http.post(format!("{}{path}", c.base)).json(body).timeout(BATCH_TIMEOUT);
    for (k, v) in &c.always {
        req = req.header(*k, v);
    }
    let resp = req.send().await.map_err(|e| Failure::Retry(format!("no answer: {e}")))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(v);
    }
    let said = format!("{status} {}: {}", v["error"]["code"].as_str().unwrap_or("error"), v["error"]["message"]);
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(Failure::Retry(said)),
        _ => Err(Failure::Refused(said)),
    }
}

/// Sends one batch, again after an indeterminate outcome (safe: see the
/// module's comment), at most 8 times with a growing pause.
async fn send(c: &Client, path: &str, body: Value) -> anyhow::Result<Value> {
    let mut pause = Duration::from_millis(200);
    for attempt in 1.. {
        match send_once(c, path, &body).await {
            Ok(v) => return Ok(v),
            Err(Failure::Refused(said)) => bail!("{said}"),
            Err(Failure::Retry(said)) if attempt >= 8 => bail!("{said} (after {attempt} attempts)"),
            Err(Failure::Retry(_)) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
    unreachable!("the loop returns")
}

/// Cuts the items into batches of at most `batch` items and about
/// `max_bytes` of JSON.
fn batches(items: Items, batch: usize, max_bytes: usize) -> impl Iterator<Item = anyhow::Result<Vec<(u64, Value)>>> {
    let mut items = items.peekable();
    std::iter::from_fn(move || {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < batch && (out.is_empty() || bytes < max_bytes) {
            match items.next()? {
                Err(e) => return Some(Err(e)),
                Ok((line, v)) => {
                    bytes += v.to_string().len() + 1;
                    out.push((line, v));
                }
            }
            if items.peek().is_none() {
                break;
            }
        }
        (!out.is_empty()).then_some(Ok(out))
    })
}

/// Runs an import of `source` through `c`. `prepare` turns an input item
/// into what is sent (an id check, an idempotency key); `each` sees every
/// answer item with its line.
pub async fn run(
    c: &Client,
    job: Job,
    source: Source,
    prepare: impl Fn(u64, Value) -> anyhow::Result<Value> + Send + Sync,
    mut each: impl FnMut(u64, &Value),
) -> anyhow::Result<u64> {
    let (source_bytes, source_sha256) = fingerprint(source.path())?;
    let (total, items) = match &source {
        Source::JsonLines(p) => json_lines(p)?,
        Source::Npy { file, ids, id_start } => npy(file, ids.as_deref(), *id_start)?,
    };
    let mut cp = Checkpoint {
        target: job.target.clone(),
        incarnation: job.incarnation,
        source_bytes,
        source_sha256,
        done: 0,
        total,
    };
    if !job.restart
        && let Ok(text) = std::fs::read_to_string(&job.progress_file)
    {
        let old: Checkpoint = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a progress file: remove it", job.progress_file.display()))?;
        if (&old.target, old.source_bytes, &old.source_sha256) != (&cp.target, cp.source_bytes, &cp.source_sha256) {
            bail!(
                "{} records another import ({}, or another version of the file); pass --restart to send \
                 everything, or --progress-file",
                job.progress_file.display(),
                old.target
            );
        }
        if old.incarnation != cp.incarnation {
            eprintln!(
                "{} records an import into an earlier {} (since dropped and created again): sending everything",
                job.progress_file.display(),
                cp.target
            );
        } else if old.done >= total {
            eprintln!(
                "all {total} {} are already stored ({}); --restart sends them again",
                job.noun,
                job.progress_file.display()
            );
            return Ok(0);
        } else {
            eprintln!("resuming: {} of {total} {} are stored; sending the rest", old.done, job.noun);
            cp.done = old.done;
        }
    }
    let skip = cp.done;
    let mut progress = Progress::new(job.noun, total, skip);
    let save = |cp: &Checkpoint| -> anyhow::Result<()> {
        let tmp = job.progress_file.with_extension("synod-progress.tmp");
        std::fs::write(&tmp, serde_json::to_vec(cp)?)
            .with_context(|| format!("write {} (or choose --progress-file)", tmp.display()))?;
        std::fs::rename(&tmp, &job.progress_file)?;
        Ok(())
    };
    save(&cp)?;
    let field = job.field;
    let path = job.path.clone();
    let prepare = &prepare;
    let requests = futures::stream::iter(batches(Box::new(items.skip(skip as usize)), job.batch, job.max_bytes))
        .map(|b| {
            let path = path.clone();
            async move {
                let b = b?;
                let lines: Vec<u64> = b.iter().map(|(l, _)| *l).collect();
                let body: Vec<Value> = b.into_iter().map(|(l, v)| prepare(l, v)).collect::<anyhow::Result<_>>()?;
                let n = body.len() as u64;
                let (first, last) = (lines.first().copied().unwrap_or(0), lines.last().copied().unwrap_or(0));
                let answer = send(c, &path, json!({ field: body }))
                    .await
                    .with_context(|| format!("the batch of lines {first} to {last}"))?;
                Ok::<_, anyhow::Error>((n, lines, answer))
            }
        })
        .buffered(job.concurrency.max(1));
    futures::pin_mut!(requests);
    let mut failed = None;
    while let Some(r) = requests.next().await {
        match r {
            Ok((n, lines, answer)) => {
                if let Some(items) = answer[field].as_array() {
                    for (line, item) in lines.iter().zip(items) {
                        each(*line, item);
                    }
                }
                cp.done += n;
                save(&cp)?;
                progress.advance(n);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    progress.finish();
    if let Some(e) = failed {
        return Err(e.context(format!(
            "stopped with {} of {total} {} stored; run the same command again to resume",
            cp.done, job.noun
        )));
    }
    Ok(cp.done - skip)
}

/// A point of `synod vector import`: an object with `id` and `vector` or
/// `text` (and `metadata`), checked here so a bad line is named by number.
pub fn point(line: u64, v: Value) -> anyhow::Result<Value> {
    let Value::Object(o) = &v else { bail!("line {line}: not an object") };
    if !o.contains_key("id") {
        bail!("line {line}: no \"id\"");
    }
    if !o.contains_key("vector") && !o.contains_key("text") {
        bail!("line {line}: neither \"vector\" nor \"text\"");
    }
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "id" | "vector" | "text" | "metadata")) {
        bail!("line {line}: unknown field {k:?} (a point has id, vector or text, metadata)");
    }
    let mut v = v;
    compact(&mut v);
    Ok(v)
}

/// Rewrites a vector of numbers as base64 of its f32s (the node parses it
/// without a float parser and the body is a third the size). Anything else
/// is left for the node to judge, so a bad vector gets the node's error.
fn compact(point: &mut Value) {
    let Some(slot) = point.get_mut("vector") else { return };
    let Value::Array(items) = slot else { return };
    let floats: Option<Vec<f32>> = items.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
    if let Some(floats) = floats.filter(|f| f.iter().all(|x| x.is_finite())) {
        *slot = Value::String(vector_form::encode(&floats));
    }
}

/// A task of `synod task submit --file`: one without an idempotency key
/// gets one made of `prefix` (the file's path, or --key-prefix), its line
/// number and its text, so sending the line again (a resumed import, the
/// same file with lines appended) finds the task instead of making another,
/// and a line that changed is a new task.
pub fn task(prefix: &str, line: u64, mut v: Value) -> anyhow::Result<Value> {
    let text = v.to_string();
    let Value::Object(o) = &mut v else { bail!("line {line}: not an object") };
    if !o.contains_key("type") {
        bail!("line {line}: no \"type\"");
    }
    o.entry("idempotency_key").or_insert_with(|| {
        let digest = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
        json!(format!("{prefix}-{line}-{}", &digest[..16]))
    });
    Ok(v)
}

/// The default prefix of the keys `task` makes: the input's absolute path,
/// hashed.
pub fn task_key_prefix(file: &Path) -> anyhow::Result<String> {
    let path = std::fs::canonicalize(file).with_context(|| format!("open {}", file.display()))?;
    let digest = format!("{:x}", sha2::Sha256::digest(path.to_string_lossy().as_bytes()));
    Ok(format!("file-{}", &digest[..12]))
}

/// The path of a collection's points, its name percent-encoded.
pub fn points_path(collection: &str) -> String {
    format!("/collections/{}/points", seg(collection))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn npy_rows_come_out_with_row_ids_or_given_ids() {
        let dir = tempfile::tempdir().expect("dir");
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let file = dir.path().join("v.npy");
        std::fs::write(&file, npy_bytes("<f4", "(3, 2)", &data)).expect("write");
        let (n, items) = npy(&file, None, 10).expect("reads");
        let items: Vec<_> = items.map(|r| r.expect("row")).collect();
        assert_eq!(n, 3);
        assert_eq!(items[2].1, json!({"id": 12, "vector": vector_form::encode(&[5.0, 6.0])}));
        let ids = dir.path().join("ids.txt");
        std::fs::write(&ids, "a/b\n7\nc\n").expect("write");
        let (_, items) = npy(&file, Some(&ids), 0).expect("reads");
        let ids: Vec<Value> = items.map(|r| r.expect("row").1["id"].clone()).collect();
        assert_eq!(ids, vec![json!("a/b"), json!(7), json!("c")]);
        // float64 too.
        let data: Vec<u8> = [0.5f64, 1.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&file, npy_bytes("<f8", "(1, 2)", &data)).expect("write");
        let (_, mut items) = npy(&file, None, 0).expect("reads");
        assert_eq!(items.next().expect("a row").expect("ok").1["vector"], json!(vector_form::encode(&[0.5, 1.5])));
    }

    #[test]
    fn npy_files_it_cannot_read_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("v.npy");
        let cases = [
            (npy_bytes("<i4", "(1, 2)", &[0; 8]), "dtype"),
            (npy_bytes("<f4", "(4,)", &[0; 16]), "not 2-D"),
            (npy_bytes("<f4", "(2, 2)", &[0; 8]), "header says"),
            (b"hello".to_vec(), "magic"),
        ];
        for (bytes, says) in cases {
            std::fs::write(&file, bytes).expect("write");
            let e = npy(&file, None, 0).err().expect("refused").to_string();
            assert!(e.contains(says), "{e} does not say {says}");
        }
        let ids = dir.path().join("ids.txt");
        std::fs::write(&ids, "1\n").expect("write");
        std::fs::write(&file, npy_bytes("<f4", "(2, 1)", &[0; 8])).expect("write");
        let e = npy(&file, Some(&ids), 0).err().expect("refused").to_string();
        assert!(e.contains("1 ids for 2 rows"), "{e}");
    }

    #[test]
    fn batches_respect_the_count_and_the_bytes() {
        let items: Items = Box::new((1..=10u64).map(|i| Ok((i, json!({"id": i, "pad": "x".repeat(100)})))));
        let sizes: Vec<usize> = batches(items, 4, usize::MAX).map(|b| b.expect("ok").len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let items: Items = Box::new((1..=10u64).map(|i| Ok((i, json!({"id": i, "pad": "x".repeat(100)})))));
        let sizes: Vec<usize> = batches(items, 100, 250).map(|b| b.expect("ok").len()).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
    }

    #[test]
    fn points_and_tasks_are_checked_and_tasks_get_a_key_per_line() {
        let p = point(3, json!({"id": 1, "vector": [1.0, -2.5]})).expect("ok");
        assert_eq!(p["vector"], json!(vector_form::encode(&[1.0, -2.5])), "sent in the compact form");
        // What the compact form cannot say is sent as it is, for the node to refuse.
        for odd in [json!([1.0, "x"]), json!([1e300]), json!("AAAAAA==")] {
            assert_eq!(point(3, json!({"id": 1, "vector": odd.clone()})).expect("ok")["vector"], odd);
        }
        assert!(point(3, json!({"id": 1, "text": "hi", "metadata": {}})).is_ok());
        let e = point(3, json!({"vector": [1.0]})).expect_err("no id").to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(point(3, json!({"id": 1})).is_err());
        assert!(point(3, json!({"id": 1, "vector": [1.0], "vectr": 1})).is_err());
        let t = task("fp", 9, json!({"type": "echo"})).expect("ok");
        let key = t["idempotency_key"].as_str().expect("a key").to_string();
        assert!(key.starts_with("fp-9-"), "{key}");
        // The same line again: the same key. Another text, or another line: another key.
        assert_eq!(task("fp", 9, json!({"type": "echo"})).expect("ok")["idempotency_key"], key.as_str());
        assert_ne!(task("fp", 9, json!({"type": "echo", "payload": 1})).expect("ok")["idempotency_key"], key.as_str());
        assert_ne!(task("fp", 10, json!({"type": "echo"})).expect("ok")["idempotency_key"], key.as_str());
        let t = task("fp", 9, json!({"type": "echo", "idempotency_key": "mine"})).expect("ok");
        assert_eq!(t["idempotency_key"], "mine");
        assert!(task("fp", 9, json!({"payload": {}})).is_err());
    }
}
