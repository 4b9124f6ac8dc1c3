//! The `pipeline` built-in: several plugins in one task, each step's output
//! the next step's input.
//!
//! ```text
//!  validate (submit time)            run (on the task's blocking thread)
//!   shape, 1..=16 steps               for each step i:
//!   every type registered,              cancel set? ───────────────► Cancelled
//!     none `pipeline`                   payload = prev output (or input)
//!   steps[0] payload = input              + the step's `payload` (step wins)
//!     + its `payload`, checked          plugin.validate ─ bad ──────► InvalidInput "steps[i] …"
//!     by that plugin's validate         plugin.run ─ error ─────────► same error, "steps[i] …"
//!                                                  panic ─────────► Panicked "steps[i] …"
//!                                       output over 4 MiB ─────────► InvalidInput
//!                                     {"output": last, "steps": [...]}
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tracing::debug;

use crate::payload::{Fields, json_len, type_name};
use crate::registry::{WeakRegistry, panic_message};
use crate::{MAX_NAME_LEN, Plugin, PluginError, PluginInfo, Registry, TaskContext};

/// The task type of the pipeline built-in; never a step's type.
const PIPELINE: &str = "pipeline";
/// Most steps in one pipeline.
pub const MAX_PIPELINE_STEPS: usize = 16;
/// Largest output of one step, as compact JSON.
pub const MAX_STEP_OUTPUT_BYTES: usize = 4 * 1024 * 1024;
/// Largest pipeline result (every step's output, and the last one again),
/// as compact JSON.
pub const MAX_PIPELINE_RESULT_BYTES: usize = 8 * 1024 * 1024;

/// Built-in `pipeline`: runs registered plugins one after another in one
/// task, each step's output being the next step's input.
///
/// Payload:
/// ```json
/// {"input": {"text": "  Hello   WORLD "},
///  "steps": [{"type": "normalize"},
///            {"type": "vectorize", "payload": {"dimension": 64, "collection": "docs", "id": "doc-1"}}]}
/// ```
/// - `steps` (required): 1 to 16 objects with `type` (a registered task
///   type other than `pipeline`: no nesting) and optionally `payload` (an
///   object of extra fields for that step)
/// - `input` (object, default `{}`): the first step's input
///
/// Step `i` runs with the output of step `i - 1` (for the first step:
/// `input`), which must be a JSON object, with the step's `payload` fields
/// added; a field in both takes the step's value. A step's `payload` can add
/// and override fields, never remove them.
///
/// Output: the last step's output, and every step's:
/// ```json
/// {"output": {"vector": [...], "dimension": 64, ...},
///  "steps": [{"type": "normalize", "output": {"text": "hello world"}},
///            {"type": "vectorize", "output": {"vector": [...], "dimension": 64, ...}}]}
/// ```
///
/// Checks: at submit time the shape, every step's type, and the first
/// step's payload (by that plugin's own validation). The later steps' input
/// exists only at run time, so they are validated then; a refusal there is
/// `InvalidInput` naming the step, as in ``steps[1] (`vectorize`) refused
/// its input: ...`` (steps are numbered from 0). A step's failure is returned with the step in its message
/// and the step's retry judgement. Cancellation is checked before each step;
/// the whole pipeline runs under the task's one timeout. A step's output may
/// be at most 4 MiB as JSON, the whole result at most 8 MiB. Steps run by
/// calling the plugins directly, so `synod_plugin_*` metrics count the
/// pipeline's run, not its steps'.
///
/// The built-ins check their fields strictly, and a step gets *all* of the
/// previous output, so only some chains work:
/// - `normalize` → `tokenize`, `normalize` → `vectorize` (put `dimension`,
///   `collection`, `id`, `metadata` in the `vectorize` step's `payload`),
///   `normalize` → `normalize`: `normalize` outputs just `{"text"}`.
/// - anything → `echo` (within its 1 MiB), and `echo` → whatever accepts
///   `echo`'s input.
/// - not `tokenize` → anything but `echo` (`tokens` and `count` are
///   unknown fields elsewhere), not `vectorize` → anything but `echo`
///   (`vector`, `model`, ...), and `sleep` and `fail` only where their
///   input has none but their own fields (first, or after a step like `echo`
///   that passes such an input on). Such a chain fails at
///   run time with a message naming the carried-over field and the step it
///   came from.
pub struct PipelinePlugin {
    // Weak: the registry owns this plugin; a strong handle would be a cycle.
    registry: WeakRegistry,
}

impl PipelinePlugin {
    /// A pipeline that runs the plugins of `registry`, looked up when a
    /// payload is validated or run (so plugins registered later are found).
    /// It does not keep `registry` alive.
    pub fn new(registry: &Registry) -> Self {
        PipelinePlugin { registry: registry.downgrade() }
    }
}

impl std::fmt::Debug for PipelinePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelinePlugin").finish_non_exhaustive()
    }
}

const REGISTRY_GONE: &str = "the plugin registry is gone (the node is shutting down)";

/// A parsed pipeline payload.
struct Spec<'a> {
    steps: Vec<Step<'a>>,
    input: Option<&'a Map<String, Value>>,
}

struct Step<'a> {
    task_type: &'a str,
    payload: Option<&'a Map<String, Value>>,
}

impl Spec<'_> {
    fn parse(payload: &Value) -> Result<Spec<'_>, String> {
        let f = Fields::parse(payload, &["steps", "input"])?;
        let input = match f.get("input") {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => return Err(format!("`input` must be a JSON object, got {}", type_name(other))),
        };
        let steps = match f.get("steps") {
            None => return Err(format!("missing field `steps` (an array of 1 to {MAX_PIPELINE_STEPS} steps)")),
            Some(Value::Array(steps)) => steps,
            Some(other) => return Err(format!("`steps` must be an array, got {}", type_name(other))),
        };
        if steps.is_empty() || steps.len() > MAX_PIPELINE_STEPS {
            return Err(format!("`steps` must hold 1 to {MAX_PIPELINE_STEPS} steps, got {}", steps.len()));
        }
        let steps = steps.iter().enumerate().map(|(i, s)| Step::parse(s).map_err(|e| format!("steps[{i}]: {e}")));
        Ok(Spec { steps: steps.collect::<Result<_, _>>()?, input })
    }
}

impl Step<'_> {
    fn parse(step: &Value) -> Result<Step<'_>, String> {
        if !step.is_object() {
            return Err(format!("a step must be a JSON object, got {}", type_name(step)));
        }
        let f = Fields::parse(step, &["type", "payload"])?;
        let task_type = f.required_str("type", MAX_NAME_LEN)?;
        if task_type == PIPELINE {
            return Err("a pipeline cannot run `pipeline` (no nesting)".to_owned());
        }
        let payload = match f.get("payload") {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => return Err(format!("`payload` must be a JSON object, got {}", type_name(other))),
        };
        Ok(Step { task_type, payload })
    }
}

/// The steps' plugins, in step order.
fn resolve(registry: &Registry, spec: &Spec<'_>) -> Result<Vec<Arc<dyn Plugin>>, String> {
    let mut plugins = Vec::with_capacity(spec.steps.len());
    for (i, step) in spec.steps.iter().enumerate() {
        let Some(plugin) = registry.get(step.task_type) else {
            let known: Vec<_> = registry.names().into_iter().filter(|n| n != PIPELINE).collect();
            return Err(format!(
                "steps[{i}]: unknown task type `{}` (registered: {})",
                step.task_type,
                known.join(", ")
            ));
        };
        plugins.push(plugin);
    }
    Ok(plugins)
}

/// `base` with `extra`'s fields added; `extra` wins.
fn merge(mut base: Map<String, Value>, extra: Option<&Map<String, Value>>) -> Map<String, Value> {
    for (k, v) in extra.into_iter().flatten() {
        base.insert(k.clone(), v.clone());
    }
    base
}

impl Plugin for PipelinePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(PIPELINE, "runs plugins one after another, each step's output the next step's input")
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        let spec = Spec::parse(payload)?;
        let registry = self.registry.upgrade().ok_or(REGISTRY_GONE)?;
        let plugins = resolve(&registry, &spec)?;
        let first = merge(spec.input.cloned().unwrap_or_default(), spec.steps[0].payload);
        plugins[0].validate(&Value::Object(first)).map_err(|e| format!("steps[0] (`{}`): {e}", spec.steps[0].task_type))
    }

    fn run(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError> {
        let spec = Spec::parse(payload).map_err(PluginError::InvalidInput)?;
        let registry = self.registry.upgrade().ok_or_else(|| PluginError::failed_retryable(REGISTRY_GONE))?;
        let plugins = resolve(&registry, &spec).map_err(PluginError::InvalidInput)?;
        let mut outputs: Vec<(&str, Value)> = Vec::with_capacity(spec.steps.len());
        let mut spent = 0usize;
        for (i, (step, plugin)) in spec.steps.iter().zip(&plugins).enumerate() {
            ctx.cancel.check()?;
            let base = match outputs.last() {
                None => spec.input.cloned().unwrap_or_default(),
                Some((_, Value::Object(prev))) => prev.clone(),
                Some((prev_type, other)) => {
                    return Err(PluginError::InvalidInput(format!(
                        "steps[{}] (`{prev_type}`) returned {}, not a JSON object, so it cannot feed steps[{i}] (`{}`)",
                        i - 1,
                        type_name(other),
                        step.task_type
                    )));
                }
            };
            // The previous output's fields the step's payload does not replace.
            let carried: Vec<String> = if i == 0 {
                Vec::new()
            } else {
                base.keys().filter(|k| !step.payload.is_some_and(|p| p.contains_key(*k))).cloned().collect()
            };
            let input = Value::Object(merge(base, step.payload));
            let started = Instant::now();
            let out = run_step(plugin.as_ref(), &input, ctx).map_err(|e| match e {
                StepError::Refused(message) => PluginError::InvalidInput(refusal(&spec, i, &carried, &message)),
                StepError::Run(e) => at_step(e, i, step.task_type),
            })?;
            let Some(len) = json_len(&out, MAX_STEP_OUTPUT_BYTES) else {
                return Err(PluginError::InvalidInput(format!(
                    "steps[{i}] (`{}`) returned more than the limit of {MAX_STEP_OUTPUT_BYTES} bytes as JSON \
                     for one step's output",
                    step.task_type
                )));
            };
            spent += len;
            // The last output appears twice in the result.
            let result_len = if i + 1 == spec.steps.len() { spent + len } else { spent };
            if result_len > MAX_PIPELINE_RESULT_BYTES {
                return Err(PluginError::InvalidInput(format!(
                    "the pipeline's result would be larger than the limit of {MAX_PIPELINE_RESULT_BYTES} bytes \
                     as JSON (after steps[{i}] (`{}`))",
                    step.task_type
                )));
            }
            let took_ms = started.elapsed().as_millis() as u64;
            debug!(task_id = %ctx.task_id, step = i, plugin = step.task_type, took_ms, bytes = len, "pipeline step done");
            outputs.push((step.task_type, out));
        }
        let last = outputs.last().map(|(_, out)| out.clone()).expect("a pipeline has at least one step: parsed");
        let steps: Vec<Value> = outputs.into_iter().map(|(t, out)| json!({"type": t, "output": out})).collect();
        Ok(json!({"output": last, "steps": steps}))
    }
}

enum StepError {
    /// The step's plugin refused its input in `validate`.
    Refused(String),
    Run(PluginError),
}

/// Validates and runs one step; a panic in either stays in this step, so
/// its message can name the step.
fn run_step(plugin: &dyn Plugin, input: &Value, ctx: &TaskContext) -> Result<Value, StepError> {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        plugin.validate(input).map_err(StepError::Refused)?;
        plugin.run(input, ctx).map_err(StepError::Run)
    }));
    outcome.unwrap_or_else(|panic| Err(StepError::Run(PluginError::Panicked(panic_message(panic.as_ref())))))
}

/// A step's error with the step named in its message; variant and retry
/// judgement unchanged.
fn at_step(e: PluginError, i: usize, task_type: &str) -> PluginError {
    let at = |message: String| format!("steps[{i}] (`{task_type}`): {message}");
    match e {
        PluginError::InvalidInput(m) => PluginError::InvalidInput(at(m)),
        PluginError::Failed { message, retryable } => PluginError::Failed { message: at(message), retryable },
        PluginError::Panicked(m) => PluginError::Panicked(at(m)),
        // No message of their own to extend.
        e @ (PluginError::Timeout(_) | PluginError::Cancelled | PluginError::UnknownType(_)) => e,
    }
}

/// Why step `i` refused its input, saying where a carried-over field came
/// from: the usual cause is a chain of built-ins that does not fit.
fn refusal(spec: &Spec<'_>, i: usize, carried: &[String], message: &str) -> String {
    let task_type = spec.steps[i].task_type;
    if i == 0 {
        return format!("steps[0] (`{task_type}`): {message}");
    }
    let prev = spec.steps[i - 1].task_type;
    let unknown = message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(field, _)| field)
        .filter(|field| carried.iter().any(|c| c == field));
    match unknown {
        Some(field) => format!(
            "steps[{i}] (`{task_type}`) refused its input: {message}; `{field}` comes from the output of \
             steps[{}] (`{prev}`): a step gets all of the previous step's output, so `{task_type}` cannot follow \
             `{prev}` (see the pipeline docs for the chains that work)",
            i - 1
        ),
        None => format!(
            "steps[{i}] (`{task_type}`) refused its input (the output of steps[{}] (`{prev}`) with the step's \
             payload): {message}",
            i - 1
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(payload: &Value) -> Spec<'_> {
        Spec::parse(payload).expect("a valid pipeline payload")
    }

    #[test]
    fn merge_lets_the_step_win() {
        let base = json!({"text": "a", "keep": 1});
        let extra = json!({"text": "b", "dimension": 8});
        let merged = merge(base.as_object().cloned().expect("object"), extra.as_object());
        assert_eq!(Value::Object(merged), json!({"text": "b", "keep": 1, "dimension": 8}));
        let merged = merge(Map::new(), None);
        assert!(merged.is_empty());
    }

    #[test]
    fn parse_reads_steps_and_input() {
        let payload = json!({"steps": [{"type": "normalize"}, {"type": "vectorize", "payload": {"dimension": 8}}],
                             "input": {"text": "x"}});
        let s = spec(&payload);
        let types: Vec<_> = s.steps.iter().map(|s| s.task_type).collect();
        assert_eq!(types, ["normalize", "vectorize"]);
        assert!(s.steps[0].payload.is_none());
        assert_eq!(s.steps[1].payload.map(|p| p.len()), Some(1));
        assert_eq!(s.input.map(|i| i.len()), Some(1));
        assert!(spec(&json!({"steps": [{"type": "echo"}]})).input.is_none(), "`input` is optional");
    }

    #[test]
    fn parse_refusals_name_the_step() {
        let cases = [
            (json!({"steps": [{"type": "echo"}, 5]}), "steps[1]: a step must be a JSON object, got a number"),
            (json!({"steps": [{"payload": {}}]}), "steps[0]: missing field `type`"),
            (json!({"steps": [{"type": "echo", "x": 1}]}), "steps[0]: unknown field `x` (expected: type, payload)"),
            (json!({"steps": [{"type": "echo", "payload": []}]}), "steps[0]: `payload` must be a JSON object"),
            (json!({"steps": [{"type": "pipeline"}]}), "steps[0]: a pipeline cannot run `pipeline`"),
        ];
        for (payload, expected) in cases {
            let err = Spec::parse(&payload).err().unwrap_or_else(|| panic!("{payload} should be refused"));
            assert!(err.contains(expected), "{payload}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn refusal_blames_a_carried_over_field() {
        let payload = json!({"steps": [{"type": "tokenize"}, {"type": "vectorize"}]});
        let s = spec(&payload);
        let carried = ["count".to_owned(), "tokens".to_owned()];
        let m = refusal(&s, 1, &carried, "unknown field `count` (expected: text)");
        assert!(m.starts_with("steps[1] (`vectorize`) refused its input: unknown field `count`"), "{m}");
        assert!(m.contains("`count` comes from the output of steps[0] (`tokenize`)"), "{m}");
        assert!(m.contains("`vectorize` cannot follow `tokenize`"), "{m}");

        // A field from the step's own payload is the step's own mistake.
        let m = refusal(&s, 1, &carried, "unknown field `model` (expected: text)");
        assert!(!m.contains("comes from"), "{m}");
        assert!(m.contains("refused its input (the output of steps[0] (`tokenize`)"), "{m}");

        let m = refusal(&s, 0, &[], "missing field `text` (a string)");
        assert_eq!(m, "steps[0] (`tokenize`): missing field `text` (a string)");
    }

    #[test]
    fn at_step_keeps_the_variant_and_the_retry_judgement() {
        let e = at_step(PluginError::failed_retryable("503"), 2, "embed");
        assert_eq!(e, PluginError::Failed { message: "steps[2] (`embed`): 503".into(), retryable: true });
        let e = at_step(PluginError::failed_permanent("400"), 0, "embed");
        assert!(!e.retryable());
        assert_eq!(at_step(PluginError::Cancelled, 1, "x"), PluginError::Cancelled);
        let e = at_step(PluginError::Panicked("boom".into()), 1, "x");
        assert_eq!(e, PluginError::Panicked("steps[1] (`x`): boom".into()));
    }

    #[test]
    fn a_dropped_registry_is_reported_not_panicked_on() {
        let registry = Registry::with_builtins();
        let pipeline = PipelinePlugin::new(&registry);
        drop(registry);
        let payload = json!({"steps": [{"type": "echo"}]});
        assert_eq!(pipeline.validate(&payload), Err(REGISTRY_GONE.to_owned()));
        let err = pipeline.run(&payload, &TaskContext::new("t", "acme", 1)).expect_err("no registry");
        assert_eq!(err, PluginError::failed_retryable(REGISTRY_GONE));
    }
}
