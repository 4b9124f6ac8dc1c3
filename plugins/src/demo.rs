//! The built-ins for tests, demos and chaos runs: `echo`, `sleep`, `fail`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::payload::{Fields, check_size, type_name};
use crate::{Plugin, PluginError, PluginInfo, TaskContext};

/// Largest `echo` payload, as compact JSON.
const MAX_ECHO_BYTES: usize = 1024 * 1024;
/// Longest `sleep`: ten minutes.
pub const MAX_SLEEP_MS: u64 = 600_000;
/// How often `sleep` looks at its cancel token.
const SLEEP_STEP: Duration = Duration::from_millis(10);
const MAX_MESSAGE_BYTES: usize = 4096;

/// Built-in `echo`: returns its payload unchanged. Deterministic.
///
/// Payload: any JSON object of at most 1 MiB (as compact JSON), e.g.
/// `{"hello": "world"}`. Output: the same object.
#[derive(Debug, Default)]
pub struct EchoPlugin;

impl Plugin for EchoPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin("echo", "returns its payload unchanged")
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        if !payload.is_object() {
            return Err(format!("payload must be a JSON object, got {}", type_name(payload)));
        }
        check_size("payload", payload, MAX_ECHO_BYTES)
    }

    fn run(&self, payload: &Value, _ctx: &TaskContext) -> Result<Value, PluginError> {
        self.validate(payload).map_err(PluginError::InvalidInput)?;
        Ok(payload.clone())
    }
}

/// Built-in `sleep`: waits, checking its cancel token every 10 ms.
///
/// Payload: `{"ms": 1500}` (`ms` required, integer 0..=600000).
///
/// Output: `{"slept_ms": 1500}`; a cancelled or timed-out task ends early
/// with `Cancelled`.
#[derive(Debug, Default)]
pub struct SleepPlugin;

impl SleepPlugin {
    fn parse(payload: &Value) -> Result<u64, String> {
        Fields::parse(payload, &["ms"])?
            .u64_in("ms", 0..=MAX_SLEEP_MS)?
            .ok_or_else(|| "missing field `ms` (an integer)".to_owned())
    }
}

impl Plugin for SleepPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin("sleep", "sleeps for `ms` milliseconds; stops early when cancelled")
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        SleepPlugin::parse(payload).map(drop)
    }

    fn run(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError> {
        let ms = SleepPlugin::parse(payload).map_err(PluginError::InvalidInput)?;
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            ctx.cancel.check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(json!({ "slept_ms": ms }));
            }
            std::thread::sleep(left.min(SLEEP_STEP));
        }
    }
}

/// Built-in `fail`: fails on purpose, to exercise retries and panic
/// containment.
///
/// Payload: `{"message": "boom", "retryable": true, "panic": false}`
/// - `message` (string, at most 4 KiB, default `"failed on purpose"`)
/// - `retryable` (default `true`): whether the failure may be retried
/// - `panic` (default `false`): panic with `message` instead of returning
///
/// Output: none; the task fails with `message`.
#[derive(Debug, Default)]
pub struct FailPlugin;

struct FailArgs<'a> {
    message: &'a str,
    retryable: bool,
    panic: bool,
}

impl FailPlugin {
    fn parse(payload: &Value) -> Result<FailArgs<'_>, String> {
        let f = Fields::parse(payload, &["message", "retryable", "panic"])?;
        Ok(FailArgs {
            message: f.str("message", MAX_MESSAGE_BYTES)?.unwrap_or("failed on purpose"),
            retryable: f.bool("retryable", true)?,
            panic: f.bool("panic", false)?,
        })
    }
}

impl Plugin for FailPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin("fail", "fails (or panics) on purpose, for tests and demos")
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        FailPlugin::parse(payload).map(drop)
    }

    fn run(&self, payload: &Value, _ctx: &TaskContext) -> Result<Value, PluginError> {
        let a = FailPlugin::parse(payload).map_err(PluginError::InvalidInput)?;
        if a.panic {
            panic!("{}", a.message);
        }
        Err(PluginError::Failed { message: a.message.to_owned(), retryable: a.retryable })
    }
}
