//! Histories: every operation a client or worker attempts, as an invocation
//! and then its completion, in the order the harness saw them, written as
//! JSON lines.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What became of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Invoke,
    /// It happened.
    Ok,
    /// It did not happen, for certain (refused before it could take effect).
    Fail,
    /// Indeterminate: it may or may not have happened (timed out or lost
    /// its connection after the request was sent).
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The client or worker that ran it; one operation at a time each.
    pub process: u64,
    pub kind: Kind,
    /// The operation: `submit`, `lease`, `complete`, `read`, ...
    pub f: String,
    pub value: Value,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
}

/// How an HTTP call ended, as the harness saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request never left (connection refused before sending).
    NotSent,
    /// An answer with this status code.
    Status(u16),
    /// Sent, then no answer (timeout, reset).
    NoAnswer,
}

/// The completion kind of a write: certain failures only when the request
/// was never sent or the server said it did nothing (4xx); a 5xx, a 503 or
/// silence after sending is indeterminate, never failed.
pub fn classify(outcome: Outcome) -> Kind {
    match outcome {
        Outcome::NotSent => Kind::Fail,
        Outcome::Status(200..=299) => Kind::Ok,
        Outcome::Status(400..=499) => Kind::Fail,
        Outcome::Status(_) | Outcome::NoAnswer => Kind::Info,
    }
}

/// Records a run's operations as they happen, from many tasks at once;
/// times are nanoseconds since the recorder was made.
#[derive(Debug)]
pub struct Recorder {
    start: std::time::Instant,
    history: std::sync::Mutex<History>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { start: std::time::Instant::now(), history: Default::default() }
    }
}

impl Recorder {
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(&self, process: u64, kind: Kind, f: &str, value: Value) {
        let t = self.now_ns();
        self.history.lock().expect("history lock").push(process, kind, f, value, t);
    }

    /// A copy of everything recorded so far.
    pub fn history(&self) -> History {
        self.history.lock().expect("history lock").clone()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    pub fn push(&mut self, process: u64, kind: Kind, f: &str, value: Value, time_ns: u64) {
        self.ops.push(Op { process, kind, f: f.to_string(), value, time_ns });
    }

    pub fn write_jsonl(&self, path: &Path) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        for op in &self.ops {
            serde_json::to_writer(&mut w, op)?;
            w.write_all(b"\n")?;
        }
        w.flush()
    }

    pub fn read_jsonl(path: &Path) -> std::io::Result<History> {
        let r = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut ops = Vec::new();
        for line in r.lines() {
            let line = line?;
            if !line.trim().is_empty() {
                ops.push(serde_json::from_str(&line).map_err(std::io::Error::other)?);
            }
        }
        Ok(History { ops })
    }
}

/// One hand-written operation for the checkers' tests: (process, kind,
/// f, value).
#[cfg(test)]
pub(crate) type Step = (u64, Kind, &'static str, Value);

/// A history from steps in time order, 10 ns apart.
#[cfg(test)]
pub(crate) fn from_steps(steps: &[Step]) -> History {
    let mut h = History::default();
    for (i, (p, k, f, v)) in steps.iter().enumerate() {
        h.push(*p, *k, f, v.clone(), i as u64 * 10);
    }
    h
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_write_that_timed_out_after_sending_is_indeterminate_never_failed() {
        assert_eq!(classify(Outcome::NoAnswer), Kind::Info);
        assert_eq!(classify(Outcome::Status(503)), Kind::Info);
        assert_eq!(classify(Outcome::Status(500)), Kind::Info);
        assert_eq!(classify(Outcome::Status(400)), Kind::Fail);
        assert_eq!(classify(Outcome::NotSent), Kind::Fail);
        assert_eq!(classify(Outcome::Status(200)), Kind::Ok);
    }

    #[test]
    fn histories_round_trip_as_json_lines() {
        let mut h = History::default();
        h.push(1, Kind::Invoke, "submit", json!({"key": "k1"}), 10);
        h.push(1, Kind::Ok, "submit", json!({"key": "k1", "task": "t1"}), 20);
        let dir = std::env::temp_dir().join(format!("synod-jepsen-history-{}", std::process::id()));
        h.write_jsonl(&dir).unwrap();
        assert_eq!(History::read_jsonl(&dir).unwrap(), h);
        let text = std::fs::read_to_string(&dir).unwrap();
        assert!(text.lines().next().unwrap().contains(r#""kind":"invoke""#), "{text}");
        let _ = std::fs::remove_file(dir);
    }
}
