//! The `pipeline` built-in: chains of built-ins, submit-time validation,
//! step failures, cancellation, size limits and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synod_plugins::{
    MAX_PIPELINE_STEPS, MAX_STEP_OUTPUT_BYTES, PluginError, Registry, TaskContext, hashing_vector, words,
};

use crate::util::{FnPlugin, GENEROUS, MetricLog, ctx, execute_recorded, must_execute, must_fail, vector_of};

/// A registry with the built-ins and a `count` step that counts its runs
/// and returns its input.
fn with_counter() -> (Registry, Arc<AtomicUsize>) {
    let registry = Registry::with_builtins();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    registry
        .register(FnPlugin::new("count", move |p, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(p.clone())
        }))
        .expect("free name");
    (registry, runs)
}

/// The types of a pipeline result's `steps`.
fn step_types(out: &Value) -> Vec<String> {
    let steps = out["steps"].as_array().unwrap_or_else(|| panic!("no `steps` array in {out}"));
    steps.iter().map(|s| s["type"].as_str().unwrap_or_else(|| panic!("no `type` in {s}")).to_owned()).collect()
}

fn must_refuse(registry: &Registry, payload: &Value) -> String {
    match registry.validate("pipeline", payload) {
        Err(PluginError::InvalidInput(message)) => message,
        other => panic!("{payload}: expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn normalize_then_vectorize_gives_the_vector_of_the_normalized_text() {
    let registry = Registry::with_builtins();
    let payload = json!({
        "input": {"text": "  ＨＥＬＬＯ \t WORLD "},
        "steps": [
            {"type": "normalize"},
            {"type": "vectorize", "payload": {"dimension": 64, "collection": "docs", "id": "doc-1"}}
        ]
    });
    registry.validate("pipeline", &payload).expect("a valid pipeline");
    let out = must_execute(&registry, "pipeline", payload).await;
    assert_eq!(step_types(&out), ["normalize", "vectorize"]);
    assert_eq!(out["steps"][0]["output"], json!({"text": "hello world"}));
    assert_eq!(out["steps"][1]["output"], out["output"], "the last step's output is the result's");
    let last = &out["output"];
    assert_eq!(vector_of(last), hashing_vector("hello world", 64));
    assert_eq!((last["dimension"].clone(), last["model"].clone()), (json!(64), json!("hashing-v1")));
    assert_eq!(
        (last["text"].clone(), last["collection"].clone(), last["id"].clone()),
        (json!("hello world"), json!("docs"), json!("doc-1"))
    );
}

#[tokio::test]
async fn normalize_then_tokenize_gives_the_words() {
    let registry = Registry::with_builtins();
    let payload = json!({
        "input": {"text": "Ｈｅｌｌｏ,   Wörld!"},
        "steps": [{"type": "normalize", "payload": {"form": "nfkc"}}, {"type": "tokenize"}]
    });
    let out = must_execute(&registry, "pipeline", payload).await;
    assert_eq!(out["output"], json!({"tokens": ["hello", "wörld"], "count": 2}));
    assert_eq!(out["steps"][0]["output"], json!({"text": "hello, wörld!"}));
    assert_eq!(step_types(&out), ["normalize", "tokenize"]);
}

#[tokio::test]
async fn a_steps_payload_fields_win_over_its_input() {
    let registry = Registry::with_builtins();
    let payload = json!({
        "input": {"text": "from input"},
        "steps": [
            {"type": "normalize", "payload": {"text": "FROM  STEP"}},
            {"type": "normalize", "payload": {"text": "Second  Step", "lowercase": false}}
        ]
    });
    let out = must_execute(&registry, "pipeline", payload).await;
    assert_eq!(out["steps"][0]["output"], json!({"text": "from step"}));
    assert_eq!(out["output"], json!({"text": "Second Step"}));
}

#[tokio::test]
async fn tokenize_then_vectorize_is_refused_naming_the_carried_field() {
    let registry = Registry::with_builtins();
    let payload = json!({"input": {"text": "hello world"}, "steps": [{"type": "tokenize"}, {"type": "vectorize"}]});
    // Only the first step's input is known at submit time.
    assert_eq!(registry.validate("pipeline", &payload), Ok(()));
    let err = must_fail(&registry, "pipeline", payload).await;
    let PluginError::InvalidInput(message) = &err else { panic!("expected InvalidInput, got {err:?}") };
    for part in [
        "steps[1] (`vectorize`) refused its input: unknown field `count`",
        "`count` comes from the output of steps[0] (`tokenize`)",
        "`vectorize` cannot follow `tokenize`",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    assert!(!err.retryable());
}

#[tokio::test]
async fn a_later_steps_own_bad_payload_is_refused_at_run_time() {
    let registry = Registry::with_builtins();
    let payload = json!({
        "input": {"text": "x"},
        "steps": [{"type": "normalize"}, {"type": "vectorize", "payload": {"dimension": 0}}]
    });
    assert_eq!(registry.validate("pipeline", &payload), Ok(()));
    let err = must_fail(&registry, "pipeline", payload).await;
    let PluginError::InvalidInput(message) = &err else { panic!("expected InvalidInput, got {err:?}") };
    assert!(message.starts_with("steps[1] (`vectorize`) refused its input"), "{message}");
    assert!(message.contains("`dimension` must be an integer in 1..=4096, got 0"), "{message}");
    assert!(!message.contains("comes from"), "`dimension` is the step's own: {message}");
}

/// (payload, a part of the expected message)
fn refused() -> Vec<(Value, String)> {
    let echo = json!({"type": "echo"});
    vec![
        (json!([]), "payload must be a JSON object, got an array".into()),
        (json!({"input": {}}), "missing field `steps`".into()),
        (json!({"steps": []}), format!("`steps` must hold 1 to {MAX_PIPELINE_STEPS} steps, got 0")),
        (json!({"steps": vec![echo.clone(); MAX_PIPELINE_STEPS + 1]}), "must hold 1 to 16 steps, got 17".into()),
        (json!({"steps": {"type": "echo"}}), "`steps` must be an array, got an object".into()),
        (json!({"steps": [echo], "output": {}}), "unknown field `output` (expected: steps, input)".into()),
        (json!({"steps": [{"type": "echo"}], "input": "text"}), "`input` must be a JSON object, got a string".into()),
        (json!({"steps": [{"type": "echo"}], "input": [1]}), "`input` must be a JSON object, got an array".into()),
        (
            json!({"steps": [{"type": "echo"}, {"type": "frobnicate"}]}),
            "steps[1]: unknown task type `frobnicate`".into(),
        ),
        (json!({"steps": [{"type": "pipeline"}]}), "steps[0]: a pipeline cannot run `pipeline` (no nesting)".into()),
        (
            json!({"steps": [{"type": "echo"}, {"type": "pipeline"}]}),
            "steps[1]: a pipeline cannot run `pipeline`".into(),
        ),
        (json!({"steps": ["echo"]}), "steps[0]: a step must be a JSON object, got a string".into()),
        (json!({"steps": [{"kind": "echo"}]}), "steps[0]: unknown field `kind` (expected: type, payload)".into()),
        (json!({"steps": [{"payload": {}}]}), "steps[0]: missing field `type`".into()),
        (json!({"steps": [{"type": 7}]}), "steps[0]: `type` must be a string".into()),
        (json!({"steps": [{"type": "echo", "payload": 1}]}), "steps[0]: `payload` must be a JSON object".into()),
        // The first step's merged payload goes through that plugin's validate.
        (json!({"steps": [{"type": "normalize"}]}), "steps[0] (`normalize`): missing field `text`".into()),
        (
            json!({"steps": [{"type": "normalize"}], "input": {"text": 5}}),
            "steps[0] (`normalize`): `text` must be a string, got a number".into(),
        ),
        (
            json!({"steps": [{"type": "normalize", "payload": {"form": "nfd"}}], "input": {"text": "a"}}),
            r#"steps[0] (`normalize`): `form` must be "nfc" or "nfkc""#.into(),
        ),
        (
            json!({"steps": [{"type": "sleep", "payload": {"ms": 5}}], "input": {"text": "a"}}),
            "steps[0] (`sleep`): unknown field `text` (expected: ms)".into(),
        ),
    ]
}

#[test]
fn malformed_pipelines_are_refused_at_submit_time() {
    let registry = Registry::with_builtins();
    for (payload, expected) in refused() {
        let message = must_refuse(&registry, &payload);
        assert!(message.contains(&expected), "{payload}: {message:?} lacks {expected:?}");
    }
}

#[test]
fn an_unknown_step_type_lists_the_registered_ones_but_not_pipeline() {
    let message = must_refuse(&Registry::with_builtins(), &json!({"steps": [{"type": "embed"}]}));
    assert_eq!(
        message,
        "steps[0]: unknown task type `embed` (registered: echo, fail, normalize, sleep, tokenize, vectorize)"
    );
}

#[test]
fn well_formed_pipelines_are_accepted() {
    let registry = Registry::with_builtins();
    let accepted = [
        json!({"steps": [{"type": "echo"}]}),
        json!({"steps": [{"type": "normalize", "payload": {"text": "no input needed"}}]}),
        json!({"steps": vec![json!({"type": "echo"}); MAX_PIPELINE_STEPS], "input": {"a": 1}}),
        json!({"steps": [{"type": "sleep", "payload": {"ms": 1}}, {"type": "echo"}], "input": {}}),
        json!({"steps": [{"type": "fail"}]}),
        // Only the first step is checked at submit time.
        json!({"steps": [{"type": "echo"}, {"type": "vectorize"}], "input": {"a": 1}}),
    ];
    for payload in accepted {
        assert_eq!(registry.validate("pipeline", &payload), Ok(()), "{payload}");
    }
}

#[tokio::test]
async fn sixteen_steps_run_in_order() {
    let (registry, runs) = with_counter();
    let mut steps = vec![json!({"type": "count"}); MAX_PIPELINE_STEPS - 1];
    steps.push(json!({"type": "normalize"}));
    let out = must_execute(&registry, "pipeline", json!({"steps": steps, "input": {"text": " A  B "}})).await;
    assert_eq!(runs.load(Ordering::SeqCst), MAX_PIPELINE_STEPS - 1);
    assert_eq!(out["output"], json!({"text": "a b"}));
    assert_eq!(out["steps"].as_array().map(Vec::len), Some(MAX_PIPELINE_STEPS));
}

#[tokio::test]
async fn a_failing_middle_step_reports_its_index_and_keeps_its_retry_judgement() {
    let (registry, runs) = with_counter();
    for retryable in [false, true] {
        let payload = json!({
            "input": {},
            "steps": [
                {"type": "echo"},
                {"type": "fail", "payload": {"message": "upstream said no", "retryable": retryable}},
                {"type": "count"}
            ]
        });
        let err = must_fail(&registry, "pipeline", payload).await;
        assert_eq!(err, PluginError::Failed { message: "steps[1] (`fail`): upstream said no".into(), retryable });
        assert_eq!(err.retryable(), retryable);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no step runs after a failed one");
}

#[tokio::test]
async fn a_custom_steps_failure_is_reported_the_same_way() {
    let (registry, runs) = with_counter();
    registry.register(FnPlugin::new("flaky", |_, _| Err(PluginError::failed_retryable("503")))).expect("free name");
    let payload = json!({"steps": [{"type": "count"}, {"type": "count"}, {"type": "flaky"}, {"type": "count"}]});
    let err = must_fail(&registry, "pipeline", payload).await;
    assert_eq!(err, PluginError::failed_retryable("steps[2] (`flaky`): 503"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_step_is_contained_and_named() {
    let registry = Registry::with_builtins();
    let payload =
        json!({"steps": [{"type": "echo"}, {"type": "fail", "payload": {"message": "kaboom", "panic": true}}]});
    let err = must_fail(&registry, "pipeline", payload).await;
    assert_eq!(err, PluginError::Panicked("steps[1] (`fail`): kaboom".into()));
    assert!(!err.retryable());
    let out = must_execute(&registry, "pipeline", json!({"steps": [{"type": "echo"}], "input": {"ok": 1}})).await;
    assert_eq!(out["output"], json!({"ok": 1}), "the registry still works");
}

#[tokio::test]
async fn a_step_that_cancels_stops_the_pipeline_before_the_next_step() {
    let (registry, runs) = with_counter();
    registry
        .register(FnPlugin::new("cancel-self", |p, ctx| {
            ctx.cancel.cancel();
            Ok(p.clone())
        }))
        .expect("free name");
    let payload = json!({"steps": [{"type": "count"}, {"type": "cancel-self"}, {"type": "count"}]});
    let err = must_fail(&registry, "pipeline", payload).await;
    assert_eq!(err, PluginError::Cancelled);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the step before the cancel ran");
}

#[tokio::test]
async fn cancelling_during_a_step_stops_the_pipeline() {
    let (registry, runs) = with_counter();
    let ctx = ctx();
    let token = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
    });
    let started = Instant::now();
    let payload = json!({"steps": [{"type": "sleep", "payload": {"ms": 10_000}}, {"type": "count"}]});
    let err = registry.execute("pipeline", payload, ctx, GENEROUS).await.expect_err("cancelled");
    assert_eq!(err, PluginError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5), "returned after {:?}", started.elapsed());
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_steps_share_the_tasks_timeout() {
    let (registry, runs) = with_counter();
    // `sleep` cannot follow `sleep` (it refuses `slept_ms`); `nap` passes its input on.
    registry
        .register(FnPlugin::new("nap", |p, _| {
            std::thread::sleep(Duration::from_millis(60));
            Ok(p.clone())
        }))
        .expect("free name");
    let ctx = TaskContext::new("t-timeout", "acme", 1);
    let token = ctx.cancel.clone();
    let payload = json!({"steps": [
        {"type": "nap"},
        {"type": "nap"},
        {"type": "sleep", "payload": {"ms": 10_000}},
        {"type": "count"}
    ]});
    let err = registry.execute("pipeline", payload, ctx, Duration::from_millis(300)).await.expect_err("times out");
    assert_eq!(err, PluginError::Timeout(Duration::from_millis(300)));
    assert!(token.is_cancelled());
    // The running sleep sees the token and the pipeline stops before `count`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_non_object_output_cannot_feed_the_next_step() {
    let registry = Registry::with_builtins();
    registry.register(FnPlugin::new("listy", |_, _| Ok(json!([1, 2])))).expect("free name");
    let err = must_fail(&registry, "pipeline", json!({"steps": [{"type": "listy"}, {"type": "echo"}]})).await;
    assert_eq!(
        err,
        PluginError::InvalidInput(
            "steps[0] (`listy`) returned an array, not a JSON object, so it cannot feed steps[1] (`echo`)".into()
        )
    );
    // As the last step it may return anything.
    let out = must_execute(&registry, "pipeline", json!({"steps": [{"type": "echo"}, {"type": "listy"}]})).await;
    assert_eq!(out["output"], json!([1, 2]));
}

#[tokio::test]
async fn an_intermediate_over_4_mib_is_refused() {
    // U+FDFA is one character of 3 bytes whose NFKC form is 18 characters
    // of 33 bytes: `normalize` alone turns 400 KB into more than 4 MiB.
    let text = "\u{FDFA}".repeat(133_000);
    assert!(text.len() < 1024 * 1024);
    let registry = Registry::with_builtins();
    let payload = json!({"input": {"text": text}, "steps": [{"type": "normalize"}, {"type": "tokenize"}]});
    assert_eq!(registry.validate("pipeline", &payload), Ok(()));
    let err = must_fail(&registry, "pipeline", payload).await;
    assert_eq!(
        err,
        PluginError::InvalidInput(format!(
            "steps[0] (`normalize`) returned more than the limit of {MAX_STEP_OUTPUT_BYTES} bytes as JSON for one \
             step's output"
        ))
    );
    // A smaller input of the same kind passes.
    let small = json!({"input": {"text": "\u{FDFA}"}, "steps": [{"type": "normalize"}, {"type": "tokenize"}]});
    let out = must_execute(&registry, "pipeline", small).await;
    assert_eq!(out["output"]["count"], json!(words("\u{FDFA}").len()));
}

#[tokio::test]
async fn the_whole_result_is_bounded_too() {
    let registry = Registry::with_builtins();
    // 3 MiB per output: one step gives a result of 6 MiB (the last output
    // appears twice), two give 9 MiB, over the 8 MiB limit.
    registry
        .register(FnPlugin::new("blob", |_, _| Ok(json!({"blob": "x".repeat(3 * 1024 * 1024)}))))
        .expect("free name");
    let out = must_execute(&registry, "pipeline", json!({"steps": [{"type": "blob"}]})).await;
    assert_eq!(out["output"]["blob"].as_str().map(str::len), Some(3 * 1024 * 1024));
    let err = must_fail(&registry, "pipeline", json!({"steps": [{"type": "blob"}, {"type": "blob"}]})).await;
    let PluginError::InvalidInput(message) = &err else { panic!("expected InvalidInput, got {err:?}") };
    assert!(message.contains("larger than the limit of 8388608 bytes as JSON (after steps[1] (`blob`))"), "{message}");
}

#[test]
fn only_the_pipelines_run_is_counted_not_its_steps() {
    let registry = Registry::with_builtins();
    let log = MetricLog::default();
    let ok = json!({"input": {"text": "a b"}, "steps": [{"type": "normalize"}, {"type": "tokenize"}]});
    execute_recorded(&log, &registry, "pipeline", ok).expect("normalize → tokenize works");
    assert_eq!(
        log.lines(),
        [
            "synod_plugin_runs_total{outcome=ok,plugin=pipeline} +1",
            "synod_plugin_run_seconds{plugin=pipeline} observed",
        ]
    );

    let log = MetricLog::default();
    let failing = json!({"steps": [{"type": "echo"}, {"type": "fail"}]});
    execute_recorded(&log, &registry, "pipeline", failing).expect_err("fail fails");
    assert_eq!(
        log.lines(),
        [
            "synod_plugin_runs_total{outcome=failed,plugin=pipeline} +1",
            "synod_plugin_run_seconds{plugin=pipeline} observed",
        ]
    );

    let log = MetricLog::default();
    let panicking = json!({"steps": [{"type": "fail", "payload": {"panic": true}}]});
    execute_recorded(&log, &registry, "pipeline", panicking).expect_err("fail panics");
    assert_eq!(
        log.lines(),
        [
            "synod_plugin_runs_total{outcome=panicked,plugin=pipeline} +1",
            "synod_plugin_run_seconds{plugin=pipeline} observed",
            "synod_plugin_panics_total{plugin=pipeline} +1",
        ]
    );
}

#[test]
fn the_pipeline_does_not_outlive_its_registry() {
    let registry = Registry::with_builtins();
    let pipeline = registry.get("pipeline").expect("with_builtins registers `pipeline`");
    let payload = json!({"steps": [{"type": "echo"}]});
    assert_eq!(pipeline.validate(&payload), Ok(()));
    drop(registry);
    let err = pipeline.validate(&payload).expect_err("the registry is gone");
    assert!(err.contains("registry is gone"), "{err}");
}

#[test]
fn the_pipeline_is_listed_as_a_builtin() {
    let info = Registry::with_builtins().list().into_iter().find(|i| i.name == "pipeline").expect("listed");
    assert_eq!(info.kind, "builtin");
    assert!(info.description.contains("output"), "{info:?}");
}
