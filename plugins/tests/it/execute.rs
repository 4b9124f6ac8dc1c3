//! Registry::execute: results, plugin failures, panics, timeouts and
//! cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use synod_plugins::{PluginError, Registry, TaskContext};

use crate::util::{FnPlugin, GENEROUS, ctx, must_execute, must_fail};

#[tokio::test]
async fn echo_returns_the_payload() {
    let registry = Registry::with_builtins();
    let payload = json!({"a": [1, 2.5, "three"], "b": {"c": null}});
    assert_eq!(must_execute(&registry, "echo", payload.clone()).await, payload);
}

#[tokio::test]
async fn the_context_reaches_the_plugin() {
    let registry = Registry::new();
    registry
        .register(FnPlugin::new("whoami", |_, ctx| Ok(json!([ctx.task_id, ctx.tenant, ctx.attempt]))))
        .expect("free name");
    let ctx = TaskContext::new("t-42", "globex", 3);
    let out = registry.execute("whoami", json!({}), ctx, GENEROUS).await.expect("whoami succeeds");
    assert_eq!(out, json!(["t-42", "globex", 3]));
}

#[tokio::test]
async fn unknown_type_is_refused_without_running_anything() {
    let registry = Registry::with_builtins();
    let err = must_fail(&registry, "transmogrify", json!({})).await;
    assert_eq!(err, PluginError::UnknownType("transmogrify".into()));
}

#[tokio::test]
async fn payloads_are_validated_again_before_running() {
    let registry = Registry::with_builtins();
    let err = must_fail(&registry, "sleep", json!({"ms": "forever"})).await;
    assert!(matches!(err, PluginError::InvalidInput(ref m) if m.contains("`ms`")), "{err:?}");
}

#[tokio::test]
async fn failures_keep_the_plugins_retry_judgement() {
    let registry = Registry::with_builtins();
    let err = must_fail(&registry, "fail", json!({"message": "upstream 503"})).await;
    assert_eq!(err, PluginError::Failed { message: "upstream 503".into(), retryable: true });
    assert!(err.retryable());
    assert_eq!(err.kind(), "unavailable");

    let err = must_fail(&registry, "fail", json!({"message": "upstream 400", "retryable": false})).await;
    assert_eq!(err, PluginError::Failed { message: "upstream 400".into(), retryable: false });
    assert!(!err.retryable());
    assert_eq!(err.kind(), "failed_precondition");

    let err = must_fail(&registry, "fail", json!({})).await;
    assert_eq!(err, PluginError::failed_retryable("failed on purpose"));
}

#[tokio::test]
async fn a_panic_is_contained_and_the_registry_keeps_working() {
    let registry = Registry::with_builtins();
    let err = must_fail(&registry, "fail", json!({"message": "kaboom", "panic": true})).await;
    assert_eq!(err, PluginError::Panicked("kaboom".into()));
    assert!(!err.retryable());
    assert_eq!(err.kind(), "internal");

    // The same plugin, other plugins, and a second panic all behave.
    assert_eq!(must_execute(&registry, "echo", json!({"still": "alive"})).await, json!({"still": "alive"}));
    let err = must_fail(&registry, "fail", json!({"message": "ordinary"})).await;
    assert_eq!(err, PluginError::failed_retryable("ordinary"));
    let err = must_fail(&registry, "fail", json!({"message": "again", "panic": true})).await;
    assert_eq!(err, PluginError::Panicked("again".into()));
    assert_eq!(must_execute(&registry, "tokenize", json!({"text": "ok then"})).await["count"], 2);
}

#[tokio::test]
async fn a_non_string_panic_payload_is_reported_too() {
    let registry = Registry::new();
    registry.register(FnPlugin::new("odd", |_, _| std::panic::panic_any(17u32))).expect("free name");
    let err = must_fail(&registry, "odd", json!({})).await;
    assert_eq!(err, PluginError::Panicked("non-string panic payload".into()));
}

#[test]
fn a_panicking_validate_is_contained() {
    struct BadValidate;
    impl synod_plugins::Plugin for BadValidate {
        fn info(&self) -> synod_plugins::PluginInfo {
            synod_plugins::PluginInfo {
                name: "bad-validate".into(),
                kind: "test".into(),
                version: "0".into(),
                description: "panics in validate".into(),
                sha256: None,
            }
        }
        fn validate(&self, _: &serde_json::Value) -> Result<(), String> {
            panic!("validate exploded")
        }
        fn run(&self, p: &serde_json::Value, _: &TaskContext) -> Result<serde_json::Value, PluginError> {
            Ok(p.clone())
        }
    }
    let registry = Registry::new();
    registry.register(Arc::new(BadValidate)).expect("free name");
    assert_eq!(registry.validate("bad-validate", &json!({})), Err(PluginError::Panicked("validate exploded".into())));
}

#[tokio::test]
async fn timeout_sets_the_cancel_token_and_returns_timeout() {
    let registry = Registry::with_builtins();
    let ctx = ctx();
    let token = ctx.cancel.clone();
    let started = Instant::now();
    let err = registry
        .execute("sleep", json!({"ms": 10_000}), ctx, Duration::from_millis(100))
        .await
        .expect_err("a ten-second sleep cannot finish in 100 ms");
    assert_eq!(err, PluginError::Timeout(Duration::from_millis(100)));
    assert!(token.is_cancelled(), "the timeout must set the cancel token");
    assert!(started.elapsed() < Duration::from_secs(5), "returned after {:?}", started.elapsed());
    assert!(err.retryable());
    assert_eq!(err.kind(), "indeterminate");
}

#[tokio::test]
async fn a_cooperative_plugin_sees_the_timeout_and_stops() {
    let (stopped_tx, stopped_rx) = mpsc::channel();
    let stopped_tx = std::sync::Mutex::new(stopped_tx);
    let registry = Registry::new();
    registry
        .register(FnPlugin::new("spin", move |_, ctx| {
            let started = Instant::now();
            while !ctx.cancel.is_cancelled() {
                if started.elapsed() > Duration::from_secs(8) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = stopped_tx.lock().expect("not poisoned").send(started.elapsed());
            Err(PluginError::Cancelled)
        }))
        .expect("free name");
    let err = registry.execute("spin", json!({}), ctx(), Duration::from_millis(50)).await.expect_err("times out");
    assert_eq!(err, PluginError::Timeout(Duration::from_millis(50)));
    let ran_for = tokio::task::spawn_blocking(move || stopped_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("the plugin must stop once its token is set");
    assert!(ran_for < Duration::from_secs(5), "the plugin ran for {ran_for:?}");
}

#[tokio::test]
async fn a_cancelled_task_stops_early() {
    let registry = Registry::with_builtins();
    let ctx = ctx();
    let token = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
    });
    let started = Instant::now();
    let err = registry.execute("sleep", json!({"ms": 10_000}), ctx, GENEROUS).await.expect_err("cancelled");
    assert_eq!(err, PluginError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5), "returned after {:?}", started.elapsed());
    assert!(!err.retryable());
}

#[tokio::test]
async fn an_already_cancelled_task_does_not_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let registry = Registry::new();
    registry
        .register(FnPlugin::new("count", move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(json!(null))
        }))
        .expect("free name");
    let ctx = ctx();
    ctx.cancel.cancel();
    let err = registry.execute("count", json!({}), ctx, GENEROUS).await.expect_err("cancelled before start");
    assert_eq!(err, PluginError::Cancelled);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    registry.execute("count", json!({}), crate::util::ctx(), GENEROUS).await.expect("a fresh context runs");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropping_the_execute_future_cancels_the_plugin() {
    let registry = Registry::with_builtins();
    let ctx = ctx();
    let token = ctx.cancel.clone();
    let run = registry.execute("sleep", json!({"ms": 10_000}), ctx, GENEROUS);
    let abandoned = tokio::time::timeout(Duration::from_millis(50), run).await;
    assert!(abandoned.is_err(), "the sleep cannot finish in 50 ms");
    assert!(token.is_cancelled(), "nobody waits for the result any more, so the plugin is told to stop");
}

#[tokio::test]
async fn success_leaves_the_token_alone() {
    let registry = Registry::with_builtins();
    let ctx = ctx();
    let token = ctx.cancel.clone();
    let out = registry.execute("sleep", json!({"ms": 20}), ctx, GENEROUS).await.expect("a short sleep finishes");
    assert_eq!(out, json!({"slept_ms": 20}));
    assert!(!token.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_proceed_in_parallel_on_the_blocking_pool() {
    let registry = Registry::with_builtins();
    let started = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..8 {
        let registry = registry.clone();
        runs.spawn(async move {
            let ctx = TaskContext::new(format!("t-{i}"), "acme", 1);
            registry.execute("sleep", json!({"ms": 300}), ctx, GENEROUS).await
        });
    }
    while let Some(joined) = runs.join_next().await {
        assert_eq!(joined.expect("join"), Ok(json!({"slept_ms": 300})));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(8 * 300), "8 sleeps of 300 ms took {took:?}: they ran one by one");
}
